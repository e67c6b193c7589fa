"""What every measurement callback shares: the loss it evaluates, a measurement mode that leaves no trace, means and
sums over processes, the logging step, and images sent to whichever loggers are attached.

The measurement contract. A callback measures the training loss as ``loss_fn(module, batch)``; by default that
is the module's own ``loss(batch)`` method, which every iclr17 module has (``modules/objective.py``): the scalar
training objective of one batch, free of side effects (no logging, no state writes, no optimizer steps), which
its ``training_step`` calls. A model of your own either defines that method or is given ``loss_fn``; the
callbacks check this in ``setup`` (:func:`check_loss_contract`), so a model without either fails before training
starts, with a message saying how to fix it. Measurement must never change training:
``tests/test_measurement_isolation.py`` fits every exported module with and without the callbacks and compares
the end states bit for bit.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger
from torch import Tensor, nn

from .run_folder import run_folder

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LossFn = Callable[[nn.Module, Any], Tensor]

# ---- the loss -------------------------------------------------------------------------------------------------


def module_loss(module: nn.Module, batch: Any) -> Tensor:
    """The default ``loss_fn``: ``module.loss(batch)``, checked to be a scalar tensor."""
    loss = module.loss(batch)
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        raise TypeError(
            f"{type(module).__name__}.loss(batch) must return a scalar tensor to be measured; it returned "
            f"{type(loss).__name__}{f' of shape {tuple(loss.shape)}' if isinstance(loss, Tensor) else ''}"
        )
    return loss


def check_loss_contract(callback: str, module: nn.Module, loss_fn: LossFn, alternatives: str = "") -> None:
    """Refuse, before training, a module the callback cannot measure: one without a ``loss(batch)`` method when
    no ``loss_fn`` was given. ``alternatives`` names the callback's other ways out (e.g. another loss source)."""
    if loss_fn is not module_loss or _has_loss_method(module):
        return
    name = type(module).__name__
    found = getattr(module, "loss", None)
    if found is None:
        what = "has no loss(batch) method"
    elif inspect.ismethod(found):
        what = f"has a loss({', '.join(inspect.signature(found).parameters)}) method that does not take the batch alone"
    else:
        what = f"has a loss attribute that is a {type(found).__name__}, not a loss(batch) method"
    raise TypeError(
        f"{callback}: {name} {what}. Define {name}.loss(self, batch) -> scalar Tensor (the training objective of "
        "one batch, with no logging and no state changes; training_step may call it), or pass "
        f"loss_fn=<callable (module, batch) -> scalar Tensor> to {callback.split('(')[0]}{alternatives}"
    )


def _has_loss_method(module: nn.Module) -> bool:
    """A ``loss`` method of the module's class that takes the batch alone: not an ``nn.CrossEntropyLoss`` stored
    as ``self.loss``, nor a helper such as ``loss(self, logits, y)``."""
    method = getattr(module, "loss", None)
    if not inspect.ismethod(method):
        return False
    try:
        inspect.signature(method).bind(None)
    except TypeError:
        return False
    return True


# ---- measurement mode -----------------------------------------------------------------------------------------


def forked_rng(module: nn.Module) -> AbstractContextManager[None]:
    """``torch.random.fork_rng`` over the CPU generator and the GPUs that hold the module: all come back as
    they were."""
    devices = sorted({t.device.index or 0 for t in (*module.parameters(), *module.buffers()) if t.is_cuda})
    return torch.random.fork_rng(devices=devices)


@contextmanager
def measurement_mode(module: nn.Module, train: bool = False, grad: bool = False) -> Iterator[None]:
    """Run a measurement on ``module`` that leaves no trace in its flags or the RNG.

    Inside, the module is in eval mode (``train=True``: train mode, e.g. BatchNorm batch statistics and dropout)
    and gradients are off (``grad=True``: on, even under ``Trainer(inference_mode=True)``). On the way out,
    exception or not, every submodule's ``training`` flag is what it was (a model half in eval mode stays so) and
    the RNG of the CPU and of the module's GPUs is as it was, so the training draws the numbers it would have
    drawn without the measurement.
    """
    flags = {m: m.training for m in module.modules()}
    with forked_rng(module), ExitStack() as grad_mode:
        if grad:
            grad_mode.enter_context(torch.inference_mode(False))
            grad_mode.enter_context(torch.enable_grad())
        else:
            grad_mode.enter_context(torch.no_grad())
        module.train(train)
        try:
            yield
        finally:
            for m, was_training in flags.items():
                m.training = was_training


# ---- over processes -------------------------------------------------------------------------------------------


def reduce_over_processes(trainer: pl.Trainer, tensor: Tensor, op: Literal["mean", "sum"]) -> Tensor:
    """The mean or sum of ``tensor`` over the trainer's processes (``trainer.strategy.reduce``; ``tensor``
    itself on one process). Every process must call it, with a tensor of the same shape; ``tensor`` is not
    modified (the strategy reduces in place, so it gets a copy)."""
    return trainer.strategy.reduce(tensor.clone(), reduce_op=op)


# ---- the logging step -----------------------------------------------------------------------------------------


class LoggingStep:
    """The step at which Lightning logs the training scalars, counted by the callback itself: one per training
    batch that ends in an optimizer step (not per optimizer: a GAN's two steps on one batch count once), as
    ``trainer.global_step`` does not. Media logged at this step line up with the scalars of the same batch.

    The owner calls :meth:`batch_end` from ``on_train_batch_end`` (it returns the step of the batch that just
    ended) and :meth:`epoch_end` from ``on_train_epoch_end`` (Lightning steps on an epoch's last batch even when
    it ends a gradient accumulation early), and keeps :meth:`state_dict` in its own, so a resumed run continues
    the count.
    """

    def __init__(self) -> None:
        self.value = 0  # batches that ended in an optimizer step so far: the next batch's step
        self.accumulated = 0  # batches since the last optimizer step

    def batch_end(self, trainer: pl.Trainer) -> int:
        step = self.value
        self.accumulated += 1
        if self.accumulated == trainer.accumulate_grad_batches:
            self.value, self.accumulated = self.value + 1, 0
        return step

    def epoch_end(self, trainer: pl.Trainer) -> None:
        if self.accumulated and not trainer.strategy.handles_gradient_accumulation:
            self.value += 1
        self.accumulated = 0

    def state_dict(self) -> dict[str, int]:
        return {"value": self.value, "accumulated": self.accumulated}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.value, self.accumulated = state_dict["value"], state_dict["accumulated"]


# ---- media ----------------------------------------------------------------------------------------------------


def media_loggers(trainer: pl.Trainer) -> list[Logger]:
    """The attached loggers that take images: wandb and TensorBoard (CSV does not)."""
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger | TensorBoardLogger)]


def log_image(
    trainer: pl.Trainer, key: str, image: Tensor | Figure, step: int, folder: str, always_file: bool = False
) -> Path | None:
    """Send an image to every media logger (wandb ``log_image``, TensorBoard ``add_image`` or ``add_figure``) and
    write it as ``<run folder>/<folder>/<last part of key>_step<step>.png`` when no media logger is attached or
    ``always_file``. Rank 0 only; the written file, if any, is returned (wandb then uploads that file).

    Args:
        trainer: the trainer whose loggers and run folder (``run_folder``) are used.
        key: the logged name, e.g. ``images/samples``.
        image: a ``(C, H, W)`` tensor with values in [0, 1], or a matplotlib figure (the caller closes it).
        step: the step to log at.
        folder: the file's folder inside the run folder.
        always_file: write the file even when a media logger takes the image.
    """
    if not trainer.is_global_zero:
        return None
    loggers = media_loggers(trainer)
    file = None
    if always_file or not loggers:
        file = run_folder(trainer) / folder / f"{key.rpartition('/')[2]}_step{step}.png"
        file.parent.mkdir(parents=True, exist_ok=True)
        _write_png(image, file)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(file) if file is not None else image], step=step)
        elif isinstance(image, Tensor):
            logger.experiment.add_image(key, image, global_step=step)
        else:
            logger.experiment.add_figure(key, image, global_step=step, close=False)
    return file


def log_histogram(trainer: pl.Trainer, key: str, values: Tensor, step: int) -> None:
    """Send a histogram of ``values`` (1-D, on the CPU) to every media logger (wandb ``Histogram``, TensorBoard
    ``add_histogram``); rank 0 only. Files are the caller's: a histogram usually shares a figure with others."""
    if not trainer.is_global_zero:
        return
    for logger in media_loggers(trainer):
        if isinstance(logger, WandbLogger):
            import wandb

            logger.log_metrics({key: wandb.Histogram(values.numpy())}, step=step)
        else:
            logger.experiment.add_histogram(key, values, global_step=step)


def _write_png(image: Tensor | Figure, file: Path) -> None:
    if isinstance(image, Tensor):
        from torchvision.utils import save_image

        save_image(image, file)
    else:
        image.savefig(file, dpi=120)
