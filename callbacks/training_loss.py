"""The loss a callback re-evaluates on any LightningModule: the scalar its ``training_step`` returns, with
``self.log`` silenced (HessianSpectrum's and HaltingTime's default ``loss_fn``)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
from torch import Tensor, nn

LossFn = Callable[[nn.Module, Any], Tensor]


def training_step_loss(module: pl.LightningModule, batch: Any) -> Tensor:
    """The loss that ``module.training_step(batch, 0)`` returns (a tensor, or a dict with ``"loss"``)."""
    with _silenced_logging(module):
        output = module.training_step(batch, 0)
    loss = output["loss"] if isinstance(output, dict) else output
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        raise TypeError(
            f"{type(module).__name__}.training_step must return a scalar loss (or a dict with 'loss') to serve as "
            "the callback's loss; pass loss_fn=(module, batch) -> scalar loss otherwise"
        )
    return loss


def require_rerunnable_training_step(callback: str, module: pl.LightningModule, alternatives: str = "") -> None:
    """Refuse a manual-optimization module: its ``training_step`` takes optimizer steps, so re-running it as a
    loss would train the model."""
    if not module.automatic_optimization:
        raise ValueError(
            f"{callback}: {type(module).__name__} uses manual optimization, so its training_step takes optimizer "
            f"steps and cannot serve as the loss; pass loss_fn=(module, batch) -> scalar loss{alternatives}"
        )


@contextmanager
def _silenced_logging(module: pl.LightningModule):
    saved = {name: module.__dict__.get(name) for name in ("log", "log_dict")}
    module.log = module.log_dict = lambda *args, **kwargs: None
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                module.__dict__.pop(name, None)
            else:
                module.__dict__[name] = value
