"""Models of a user's own, not iclr17's: the measurement callbacks must work on them through ``loss_fn`` and refuse
them, with a clear message, without it."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class UserClassifier(pl.LightningModule):
    """A plain classifier that computes its loss inside ``training_step`` and has no ``loss(batch)`` method."""

    def __init__(self, net: nn.Module | None = None, lr: float = 0.5) -> None:
        super().__init__()
        self.net = net if net is not None else nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 3))
        self.lr = lr

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = F.cross_entropy(self(batch[0]), batch[1])
        self.log("loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class LossAttribute(UserClassifier):
    """Stores a loss object as ``self.loss``: not a ``loss(batch)`` method."""

    def __init__(self) -> None:
        super().__init__()
        self.loss = nn.CrossEntropyLoss()


class LossHelper(UserClassifier):
    """Has a ``loss(logits, y)`` helper of its own: not a ``loss(batch)`` method."""

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y)


class WithLoss(UserClassifier):
    """Follows the contract: ``loss(batch)``, called by ``training_step``."""

    def loss(self, batch: Any) -> Tensor:
        return F.cross_entropy(self(batch[0]), batch[1])

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        self.log("loss", loss)
        return loss


def cross_entropy(module: nn.Module, batch: Any) -> Tensor:
    """The ``loss_fn`` a user passes for :class:`UserClassifier`."""
    return F.cross_entropy(module(batch[0]), batch[1])
