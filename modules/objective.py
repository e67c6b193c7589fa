"""What every single-objective iclr17 module shares: an injected optimizer and scheduler, a side-effect-free
``loss(batch)`` that ``training_step`` calls, and the epoch mean of the training loss.

The measurement contract: ``loss(batch)`` returns the scalar training objective of one batch and has no side
effects (no logging, no state writes, no optimizer steps), so that callbacks (``HessianSpectrum``,
``HaltingTime``) can evaluate it at any time without changing training. ``training_step`` calls it and adds the
logging; a module whose training step does more (a carried BPTT state, manual optimization) overrides
``training_step`` and keeps ``loss(batch)`` pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import pytorch_lightning as pl
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics import MeanMetric

from .step_logging import is_logging_step


class ObjectiveModule(pl.LightningModule):
    """Base of the single-optimizer modules. Subclasses set ``default_optimizer`` (a callable from parameters to an
    optimizer, e.g. ``functools.partial(torch.optim.Adam, lr=1e-3)``) and implement ``loss(batch)``.

    Logs ``train/loss_step`` on logging steps and ``train/loss_epoch``, the epoch mean of the training loss
    weighted by ``epoch_loss_weight(batch)`` (a torchmetrics ``MeanMetric``, summed over processes under DDP).

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
        if lr_scheduler_frequency < 1:
            raise ValueError(f"lr_scheduler_frequency must be >= 1, got {lr_scheduler_frequency}")
        self.optimizer_factory = optimizer if optimizer is not None else type(self).default_optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.lr_scheduler_interval, self.lr_scheduler_frequency = lr_scheduler_interval, lr_scheduler_frequency
        self.train_loss_epoch = MeanMetric(nan_strategy="disable")  # a diverged run's NaN reaches the log

    def loss(self, batch: Any) -> Tensor:
        """The scalar training objective of ``batch``, without side effects."""
        raise NotImplementedError(f"{type(self).__name__} must define loss(batch)")

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        if is_logging_step(self, batch_idx):
            self.log("train/loss_step", loss, prog_bar=True)
        return loss

    def epoch_loss_weight(self, batch: Any) -> int:
        """How many samples the loss of ``batch`` averages over: its weight in ``train/loss_epoch``."""
        return len(batch[1])

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is None:
            return
        # Lightning divides the returned loss by accumulate_grad_batches before this hook
        value = loss.detach() * self.trainer.accumulate_grad_batches
        self.train_loss_epoch.update(value, self.epoch_loss_weight(batch))

    def on_train_epoch_end(self) -> None:
        if self.train_loss_epoch.update_called:
            # summed over processes by the metric; sync_dist only silences Lightning's epoch-level DDP warning
            self.log("train/loss_epoch", self.train_loss_epoch.compute(), sync_dist=True)
        self.train_loss_epoch.reset()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = {
            "scheduler": self.lr_scheduler_factory(optimizer),
            "interval": self.lr_scheduler_interval,
            "frequency": self.lr_scheduler_frequency,
        }
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
