"""What every single-objective iclr17 module shares: an injected optimizer and scheduler, a side-effect-free
``loss(batch)`` that ``training_step`` calls, and the epoch mean of the training loss.

The measurement contract: ``loss(batch)`` returns the scalar training objective of one batch and has no side
effects (no logging, no state writes, no optimizer steps), so that callbacks (``HessianSpectrum``,
``HaltingTime``) can evaluate it at any time without changing training. ``training_step`` calls it (through
``training_loss``) and adds the logging; a module whose training step does more (a carried BPTT state) overrides
``training_loss`` and keeps ``loss(batch)`` pure.

The hooks a subclass may override, each documented on its method: ``loss`` (required), ``training_loss``,
``logged_loss`` and ``epoch_loss_weight``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics import Metric

from .process_memory import unshare_memory
from .step_logging import is_logging_step


class WeightedMean(Metric):
    """``sum(value * weight) / sum(weight)`` over every update since the last reset; the two sums are the states,
    so under DDP the mean is over every process's updates, exactly. Evaluation losses are logged through it:
    ``self.log(..., sync_dist=True)`` averages each process's sum of batch sizes in an integer tensor, which
    rounds down when the processes hold different numbers of examples (Lightning-AI/pytorch-lightning#21859).

    torchmetrics' ``MeanMetric`` would do, but not as we need it: with ``nan_strategy="disable"`` it replaces the
    weights by ones (torchmetrics 1.9, issue Lightning-AI/torchmetrics#3434), and every other strategy either drops a
    diverged run's NaN or checks for NaN on the host at every update. Here a NaN reaches the result.

    Example:
        >>> mean = WeightedMean()
        >>> mean.update(torch.tensor(3.0), 4)
        >>> mean.update(torch.tensor(1.0), 2)
        >>> mean.compute()  # (3 * 4 + 1 * 2) / 6
        tensor(2.3333)
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("weight", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, value: Tensor, weight: int | Tensor = 1, summed: bool = False) -> None:
        """Add ``weight`` samples of mean ``value``, or, with ``summed``, whose sum is ``value``."""
        self.total += value if summed else value * weight
        self.weight += weight

    def compute(self) -> Tensor:
        return self.total / self.weight


class ObjectiveModule(pl.LightningModule):
    """Base of the single-optimizer modules. Subclasses set the class attribute ``default_optimizer`` (a callable
    from parameters to an optimizer, e.g. ``functools.partial(torch.optim.Adam, lr=1e-3)``) and implement
    ``loss(batch)``.

    Logs ``train/loss_step`` on logging steps and ``train/loss_epoch``, the epoch mean of the training loss
    weighted by ``epoch_loss_weight(batch)`` (a :class:`WeightedMean`: its states are sums, so the mean is exact
    under DDP).

    Args:
        optimizer: callable from parameters to an optimizer (None: the class's ``default_optimizer``).
        lr_scheduler: optional callable from the optimizer to a learning-rate scheduler.
        lr_scheduler_interval: step the scheduler every ``epoch`` or every optimizer ``step``.
        lr_scheduler_frequency: step it every this many intervals.
    """

    default_optimizer: ClassVar[OptimizerCallable]

    def __init__(
        self,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        lr_scheduler_frequency: int = 1,
    ) -> None:
        super().__init__()
        if lr_scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"lr_scheduler_interval must be 'epoch' or 'step', got {lr_scheduler_interval!r}")
        if isinstance(lr_scheduler_frequency, bool) or not isinstance(lr_scheduler_frequency, int):
            raise TypeError(f"lr_scheduler_frequency must be an int, got {lr_scheduler_frequency!r}")
        if lr_scheduler_frequency < 1:
            raise ValueError(f"lr_scheduler_frequency must be >= 1, got {lr_scheduler_frequency}")
        if optimizer is None and getattr(type(self), "default_optimizer", None) is None:
            raise TypeError(f"{type(self).__name__} has no default_optimizer: pass optimizer=")
        self.optimizer_factory = optimizer if optimizer is not None else type(self).default_optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.lr_scheduler_interval, self.lr_scheduler_frequency = lr_scheduler_interval, lr_scheduler_frequency
        self.train_loss_epoch = WeightedMean()  # a diverged run's NaN reaches the log

    def setup(self, stage: str) -> None:
        """Subclasses that override it call ``super().setup(stage)``: it gives this process its own metric states
        (:func:`~iclr17.modules.process_memory.unshare_memory`; ``ddp_spawn`` leaves them shared)."""
        unshare_memory(self)

    def training_loss(self, batch: Any) -> Tensor:
        """The objective training differentiates on ``batch``: ``loss(batch)`` here. A module whose training
        carries state from batch to batch (``LanguageModel``'s truncated BPTT) overrides it to advance that state;
        it never logs. ``training_step`` calls it once per batch, ``EntropySGDTraining`` once per minibatch."""
        return self.loss(batch)

    def logged_loss(self, loss: Tensor, batch: Any) -> Tensor:
        """What the logs show for the training objective ``loss`` of ``batch``: the loss per sample (``loss`` over
        ``epoch_loss_weight(batch)`` when ``loss_is_summed``, else ``loss`` itself; ``LanguageModel`` logs its
        ``sum_over_time`` objective per token)."""
        return loss / self.epoch_loss_weight(batch) if self.loss_is_summed else loss

    @property
    def loss_is_summed(self) -> bool:
        """Whether the training loss of a batch is a sum over its ``epoch_loss_weight(batch)`` samples rather than
        their mean (``train/loss_epoch`` is then the sum of the losses over the number of samples)."""
        return False

    def epoch_loss_weight(self, batch: Any) -> int:
        """How many samples the logged loss of ``batch`` averages over: its weight in ``train/loss_epoch``
        (``len(batch[1])`` here: the targets of an ``(inputs, targets)`` batch)."""
        return len(batch[1])

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """``training_loss(batch)``, logged as ``train/loss_step`` on logging steps."""
        loss = self.training_loss(batch)
        if is_logging_step(self, batch_idx):
            self.log("train/loss_step", self.logged_loss(loss, batch), prog_bar=True)
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_loss_epoch.reset()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # here rather than in training_step, which an optimizer with a closure may call several times per batch
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is None:
            return
        # Lightning divides the returned loss by accumulate_grad_batches before this hook
        loss = loss.detach() * self.trainer.accumulate_grad_batches
        if self.loss_is_summed:  # sum(loss) / sum(n) exactly: (loss / n) * n may differ from loss in the last bit
            self.train_loss_epoch.update(loss, self.epoch_loss_weight(batch), summed=True)
        else:
            self.train_loss_epoch.update(self.logged_loss(loss, batch), self.epoch_loss_weight(batch))

    def on_train_epoch_end(self) -> None:
        if self.train_loss_epoch.update_called:
            # summed over processes by the metric; sync_dist only silences Lightning's epoch-level DDP warning
            self.log("train/loss_epoch", self.train_loss_epoch.compute(), sync_dist=True)

    def configure_optimizers(self) -> Any:
        """The injected optimizer, and the scheduler (if any) stepped every ``lr_scheduler_frequency``
        ``lr_scheduler_interval``s."""
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = {
            "scheduler": self.lr_scheduler_factory(optimizer),
            "interval": self.lr_scheduler_interval,
            "frequency": self.lr_scheduler_frequency,
        }
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
