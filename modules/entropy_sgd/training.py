"""Entropy-SGD under Lightning: one optimizer step per training batch of ``L + 1`` fresh minibatches.

Design (ours; ``docs/papers/entropy_sgd.md``): the datamodule stacks ``batches_per_step = L + 1`` fresh
minibatches into each training batch (``MNISTDataModule(batches_per_step=21)``); the module runs manual
optimization and passes :class:`EntropySGD` a closure that takes the next minibatch on every call, so the
Langevin loop sees a fresh minibatch per inner step while ``global_step`` counts outer steps. One Lightning
epoch is therefore one pass over the data, i.e. ``L + 1`` gradient evaluations per outer step ("effective
epochs" counted x (L + 1)); the paper's Table 1 counts them x L, and both are logged.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, Literal

import pytorch_lightning as pl
from lightning_utilities import apply_to_collection
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from ..classifier import Classifier
from ..language_model import LanguageModel
from ..step_logging import is_logging_step
from .optim import EntropySGD


def split_minibatches(batch: Any, n: int) -> list[Any]:
    """The ``n`` minibatches stacked along dim 0 of every tensor in ``batch`` (any collection Lightning's
    ``apply_to_collection`` walks: tensors, tuples, lists, dicts, dataclasses), in order; other leaves are shared
    by every minibatch. Raises when a tensor's first dimension is not a multiple of ``n``."""
    apply_to_collection(batch, Tensor, _check_splits, n)
    return [apply_to_collection(batch, Tensor, _chunk, n, i) for i in range(n)]


def _check_splits(tensor: Tensor, n: int) -> None:
    if len(tensor) % n:
        raise ValueError(
            f"a training batch of {len(tensor)} rows cannot hold {n} equal minibatches: EntropySGD with L = "
            f"{n - 1} needs the datamodule to stack L + 1 = {n} minibatches (batches_per_step: {n})"
        )


def _chunk(tensor: Tensor, n: int, i: int) -> Tensor:
    return tensor.chunk(n)[i]


def stacked_minibatches(L: int, inner_batches: Literal["fresh", "same"] = "fresh") -> int:
    """The ``batches_per_step`` the datamodule must stack for :class:`EntropySGD` with ``L`` Langevin steps:
    ``L + 1`` fresh minibatches (one at ``x``, then one per Langevin step), or 1 when ``inner_batches="same"``
    reuses one minibatch. The ``iclr17`` CLI sets the datamodule's ``batches_per_step`` from it."""
    return 1 if inner_batches == "same" else L + 1


def refuse_unsupported(trainer: pl.Trainer) -> None:
    """16-bit mixed precision and gradient accumulation would silently change the algorithm: refuse them."""
    if str(trainer.precision) in ("16-mixed", "16", "16-true"):
        raise ValueError(
            f"Trainer(precision={trainer.precision!r}) is not supported with EntropySGD: the fp16 grad scaler "
            "evaluates the closure once and steps without it, which would skip the Langevin loop; use "
            "precision='32-true' or 'bf16-mixed'"
        )
    if trainer.accumulate_grad_batches != 1:
        raise ValueError(
            f"Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches}) is not supported with EntropySGD: "
            "each closure call must see exactly one minibatch's gradient"
        )


class EntropySGDTraining:
    """Mixin for an :class:`~iclr17.modules.objective.ObjectiveModule` whose ``training_loss(minibatch)`` is the
    objective of one minibatch: the module's training step becomes one :class:`EntropySGD` outer step over the
    ``L + 1`` minibatches stacked in ``batch`` (``inner_batches="fresh"``, the paper), or over one minibatch
    reused ``L + 1`` times (``"same"``, arXiv v1's cheaper variant). Put it first in the bases::

        class EntropyClassifier(EntropySGDTraining, Classifier): ...

    The mixin owns manual optimization (``automatic_optimization`` is False: the training step hands
    EntropySGD a closure that draws the next minibatch on every call). It logs ``train/loss_step`` (the loss at
    ``x`` on the step's first minibatch, through the module's ``logged_loss``), ``train/gamma``,
    ``train/x_minus_mu_norm`` and ``train/inner_loss`` on logging steps and ``train/effective_epoch_xL`` /
    ``train/effective_epoch_xL1`` at each epoch's end; ``train/loss_epoch`` weighs each step's loss by its first
    minibatch (the one hook it overrides: ``epoch_loss_weight``). LR schedulers are stepped by their interval and
    frequency (manual optimization leaves that to the module). Validation and checkpoints see the outer weights
    ``x``: between steps the parameters hold ``x``.
    """

    inner_batches: Literal["fresh", "same"] = "fresh"

    @property
    def automatic_optimization(self) -> bool:
        """False: the training step steps :class:`EntropySGD` with its own closure (manual optimization)."""
        return False

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        if value:
            raise ValueError(f"{type(self).__name__} steps EntropySGD itself: automatic optimization cannot be on")

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit":
            refuse_unsupported(self.trainer)

    def on_fit_start(self) -> None:
        """Check the datamodule's ``batches_per_step`` against the optimizer's ``L`` (the optimizer exists from
        here on), before any batch is drawn."""
        super().on_fit_start()
        datamodule = self.trainer.datamodule
        stacked = getattr(datamodule, "batches_per_step", None)
        L = self.entropy_optimizer().L
        expected = stacked_minibatches(L, self.inner_batches)
        if stacked is not None and stacked != expected:
            needs = (
                "inner_batches='same' reuses one minibatch per step"
                if self.inner_batches == "same"
                else f"EntropySGD with L = {L} takes L + 1 = {expected} fresh minibatches per step"
            )
            raise ValueError(
                f"{type(self).__name__}: {needs}, but {type(datamodule).__name__} stacks batches_per_step = "
                f"{stacked}; set data batches_per_step: {expected} (the iclr17 CLI derives it from L)"
            )

    def entropy_optimizer(self) -> EntropySGD:
        """The :class:`EntropySGD` itself (``self.optimizers()`` is Lightning's wrapper around it)."""
        optimizer = self.optimizers()
        optimizer = getattr(optimizer, "optimizer", optimizer)
        if not isinstance(optimizer, EntropySGD):
            raise TypeError(
                f"{type(self).__name__} trains with EntropySGD; configure_optimizers returned "
                f"{type(optimizer).__name__}"
            )
        return optimizer

    def minibatches(self, batch: Any) -> list[Any]:
        """The ``L + 1`` minibatches of one outer step: ``batch`` split (``fresh``) or repeated (``same``)."""
        n = self.entropy_optimizer().L + 1
        return split_minibatches(batch, n) if self.inner_batches == "fresh" else [batch] * n

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """One EntropySGD outer step; its closure takes the next minibatch's ``training_loss`` on every call."""
        parts = self.minibatches(batch)
        minibatches: Iterator[Any] = iter(parts)

        def closure() -> Tensor:
            loss = self.training_loss(next(minibatches))
            self.manual_backward(loss)
            return loss

        loss = self.optimizers().step(closure=closure)  # Lightning's wrapper: global_step counts outer steps
        self._step_schedulers("step")
        if is_logging_step(self, batch_idx):
            stats = self.entropy_optimizer().diagnostics
            self.log("train/loss_step", self.logged_loss(loss, parts[0]), prog_bar=True)  # at x
            self.log("train/gamma", float(stats["gamma"]))
            self.log("train/x_minus_mu_norm", stats["x_minus_mu_norm"])
            self.log("train/inner_loss", stats["inner_loss"])
        return loss

    def epoch_loss_weight(self, batch: Any) -> int:
        """The weight of the step's first minibatch: the returned loss is the loss at ``x`` on it alone."""
        return super().epoch_loss_weight(self.minibatches(batch)[0])

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self._step_schedulers("epoch")
        L = self.entropy_optimizer().L
        passes = self.trainer.global_step / max(self.trainer.num_training_batches, 1)  # L + 1 minibatches a step
        self.log("train/effective_epoch_xL1", passes)
        self.log("train/effective_epoch_xL", passes * L / (L + 1))

    def _step_schedulers(self, interval: str) -> None:
        count = self.trainer.global_step if interval == "step" else self.current_epoch + 1
        for config in self.trainer.lr_scheduler_configs:
            if config.interval == interval and count % config.frequency == 0:
                config.scheduler.step()


class EntropyClassifier(EntropySGDTraining, Classifier):
    """:class:`Classifier` trained by :class:`EntropySGD` with a fresh minibatch per Langevin step.

    The data must stack ``L + 1`` minibatches per training batch (``batches_per_step: 21`` for L = 20: the fit
    checks it before the first batch, and the ``iclr17`` CLI sets it from the optimizer's ``L``); the logged
    ``train/loss_step`` and ``train/loss_epoch`` are the loss at ``x`` on each step's first minibatch. Everything
    else is :class:`Classifier`'s, and ``optimizer=None`` is :class:`EntropySGD` with the paper's defaults
    (``default_optimizer``).

    Example (YAML)::

        model:
          class_path: EntropyClassifier
          init_args:
            net: {class_path: MNISTFC}
            optimizer: {class_path: EntropySGD, init_args: {lr: 1.0, L: 20}}
        data:
          class_path: MNISTDataModule
          init_args: {batch_size: 128, batches_per_step: 21}

    Args:
        net: maps a batch of inputs to ``(batch, num_classes)`` logits.
        num_classes: number of classes.
        optimizer: callable from parameters to an :class:`EntropySGD` (None: ``EntropySGD()``, the paper's defaults).
        lr_scheduler: optional callable from the optimizer to a scheduler.
        lr_scheduler_interval: step the scheduler every ``epoch`` or every outer ``step``.
        lr_scheduler_frequency: step it every this many intervals.
        inner_batches: ``fresh`` (a new minibatch per Langevin step, the paper) or ``same`` (one minibatch
            reused L + 1 times; then ``batches_per_step`` must be 1).
    """

    default_optimizer = EntropySGD

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 10,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        lr_scheduler_frequency: int = 1,
        inner_batches: Literal["fresh", "same"] = "fresh",
    ) -> None:
        super().__init__(net, num_classes, optimizer, lr_scheduler, lr_scheduler_interval, lr_scheduler_frequency)
        self.inner_batches = inner_batches


class EntropyLanguageModel(EntropySGDTraining, LanguageModel):
    """:class:`LanguageModel` trained by :class:`EntropySGD` (or Entropy-Adam, ``base: adam``): each training
    batch holds ``L + 1`` consecutive BPTT minibatches (``batches_per_step``), the hidden state runs through
    them in order (at ``x`` for the first, at ``x'`` for the Langevin steps), and gradients are clipped after
    every closure call when ``grad_clip_norm`` is set.

    Its arguments are :class:`LanguageModel`'s; ``optimizer=None`` is Entropy-Adam with L = 5
    (``default_optimizer``; the step sizes are our assumption: no Entropy-Adam code was released,
    ``docs/papers/entropy_sgd.md``).

    Always a fresh minibatch per Langevin step: the hidden state runs forward through the stacked windows, so
    one window cannot be re-read L + 1 times (``inner_batches="same"`` exists for :class:`EntropyClassifier`).
    """

    default_optimizer = functools.partial(EntropySGD, lr=0.01, L=5, eta_prime=0.002, base="adam")
