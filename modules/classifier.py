"""The supervised classifier that the Hessian, Entropy-SGD and halting-time papers share."""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from .objective import ObjectiveModule, WeightedMean


class Classifier(ObjectiveModule):
    """Cross-entropy classification with an injected network and optimizer.

    Logs ``train/loss_step`` (every ``log_every_n_steps``), ``train/loss_epoch``, ``val/loss``, ``val/acc``,
    ``val/acc_best``, ``test/loss`` and ``test/acc``. ``val/acc_best`` is the best validation accuracy of the fit's
    epochs: a ``validate`` after the fit (another evaluation of the final weights) neither logs nor changes it.
    Accuracies and the epoch's training loss are torchmetrics objects, so they are exact under DDP; validation and
    test losses are averaged across processes.

    Example (YAML for ``iclr17 fit``)::

        model:
          class_path: Classifier
          init_args:
            net: {class_path: MNISTFC}
            optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.001}}

    ``loss(batch)`` is the cross-entropy of ``net(x)``; the optimizer, scheduler and ``train/loss_epoch`` (weighted
    by the batch size) are :class:`~iclr17.modules.objective.ObjectiveModule`'s.

    A checkpoint stores ``num_classes`` but not the injected objects: restore with
    ``Classifier.load_from_checkpoint(path, net=...)``, or with the run's saved ``config.yaml``
    (``iclr17 test --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt``).

    Args:
        net: maps a batch of inputs to ``(batch, num_classes)`` logits.
        num_classes: number of classes; checked against the datamodule's ``num_classes`` when it has one.
        optimizer: callable from parameters to an optimizer (None: ``default_optimizer``, Adam with lr 1e-3).
        lr_scheduler: optional callable from an optimizer to a scheduler.
        lr_scheduler_interval: step the scheduler every ``epoch`` or every optimizer ``step``.
        lr_scheduler_frequency: step it every this many intervals.
    """

    default_optimizer = functools.partial(torch.optim.Adam, lr=1e-3)

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 10,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        lr_scheduler_frequency: int = 1,
    ) -> None:
        super().__init__(optimizer, lr_scheduler, lr_scheduler_interval, lr_scheduler_frequency)
        self.save_hyperparameters(ignore=["net", "optimizer", "lr_scheduler"])  # the run's config.yaml has them
        self.net = net
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_loss, self.test_loss = WeightedMean(), WeightedMean()  # exact under DDP
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run remembers its best epoch

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule_classes = getattr(self.trainer.datamodule, "num_classes", None)
        if datamodule_classes is not None and datamodule_classes != self.hparams.num_classes:
            raise ValueError(
                f"model.num_classes={self.hparams.num_classes} but the datamodule has {datamodule_classes} "
                "classes; set --model.num_classes to match"
            )

    def on_train_start(self) -> None:
        if self.trainer.ckpt_path is None:  # the sanity check's validation must not count as the best epoch
            self.val_acc_best.reset()

    def loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        """Mean cross-entropy of ``net(x)`` against ``y``, without side effects."""
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_loss.update(F.cross_entropy(logits, y), len(y))
        self.log("val/loss", self.val_loss, prog_bar=True)
        self.val_acc(logits, y)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking:
            self.val_acc_best(self.val_acc.compute())
            self.log("val/acc_best", self.val_acc_best.compute())

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.test_loss.update(F.cross_entropy(logits, y), len(y))
        self.log("test/loss", self.test_loss)
        self.test_acc(logits, y)
        self.log("test/acc", self.test_acc)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Predicted class of every input in the batch."""
        return self(batch[0]).argmax(dim=-1)
