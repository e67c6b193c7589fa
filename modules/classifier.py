"""The supervised classifier that the Hessian, Entropy-SGD and halting-time papers share."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from .step_logging import is_logging_step


def _adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


class Classifier(pl.LightningModule):
    """Cross-entropy classification with an injected network and optimizer.

    Logs ``train/loss_step`` (every ``log_every_n_steps``), ``train/loss_epoch``, ``val/loss``, ``val/acc``,
    ``val/acc_best``,
    ``test/loss`` and ``test/acc``. Accuracies are torchmetrics objects (one per split), so they are exact
    under DDP; losses are averaged across processes.

    Example (YAML for ``iclr17 fit``)::

        model:
          class_path: Classifier
          init_args:
            net: {class_path: MNISTFC}
            optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.001}}

    A checkpoint stores ``num_classes`` but not the injected objects: restore with
    ``Classifier.load_from_checkpoint(path, net=...)``, or with the run's saved ``config.yaml``
    (``iclr17 test --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt``).

    Args:
        net: maps a batch of inputs to ``(batch, num_classes)`` logits.
        num_classes: number of classes; checked against the datamodule's ``num_classes`` when it has one.
        optimizer: callable from parameters to an optimizer (default Adam, lr 1e-3).
        lr_scheduler: optional callable from an optimizer to a scheduler, stepped every epoch.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 10,
        optimizer: OptimizerCallable = _adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "lr_scheduler"])  # the run's config.yaml has them
        self.net = net
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run remembers its best epoch
        self.epoch_loss_sum, self.epoch_samples = torch.zeros(()), 0

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def setup(self, stage: str) -> None:
        datamodule_classes = getattr(self.trainer.datamodule, "num_classes", None) if self._trainer else None
        if datamodule_classes is not None and datamodule_classes != self.hparams.num_classes:
            raise ValueError(
                f"model.num_classes={self.hparams.num_classes} but the datamodule has {datamodule_classes} "
                "classes; set --model.num_classes to match"
            )

    def on_train_start(self) -> None:
        if self.trainer.ckpt_path is None:  # the sanity check's validation must not count as the best epoch
            self.val_acc_best.reset()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        if is_logging_step(self, batch_idx):
            self.log("train/loss_step", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        # here rather than in training_step, which stays free of side effects (HessianSpectrum re-runs it)
        # Lightning divides the returned loss by accumulate_grad_batches before this hook
        self.epoch_loss_sum += outputs["loss"] * self.trainer.accumulate_grad_batches * len(batch[1])
        self.epoch_samples += len(batch[1])

    def on_train_epoch_start(self) -> None:
        self.epoch_loss_sum, self.epoch_samples = torch.zeros((), device=self.device), 0

    def on_train_epoch_end(self) -> None:
        # every process sees the same number of samples (DistributedSampler), so the mean of means is exact
        self.log("train/loss_epoch", self.epoch_loss_sum / max(self.epoch_samples, 1), sync_dist=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y), prog_bar=True, sync_dist=True)
        self.val_acc(logits, y)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.val_acc_best(self.val_acc.compute())
            self.log("val/acc_best", self.val_acc_best.compute())

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("test/loss", F.cross_entropy(logits, y), sync_dist=True)
        self.test_acc(logits, y)
        self.log("test/acc", self.test_acc)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Predicted class of every input in the batch."""
        return self(batch[0]).argmax(dim=-1)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler_factory(optimizer)}
