"""The loss a callback re-evaluates on any LightningModule (HessianSpectrum's and HaltingTime's default
``loss_fn``): the module's own ``loss(batch)`` method when it has one, else the scalar its ``training_step``
returns, with ``self.log`` silenced.

Measurement must never change training, so the loss a callback calls must be free of side effects: it may not
write module state (a carried recurrent state, a counter, a flag), take optimizer steps or iterate the training
loader. ``training_step`` qualifies when it only computes and logs the loss; a module whose ``training_step``
does more (carries a BPTT state, steps optimizers itself) defines a side-effect-free ``loss(batch)``, as
:class:`~iclr17.modules.LanguageModel` does, or the user passes ``loss_fn``. ``tests/test_measurement_isolation.py``
checks every exported module: a fit with the callbacks ends bit for bit where a fit without them does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
from torch import Tensor, nn

LossFn = Callable[[nn.Module, Any], Tensor]


def training_step_loss(module: pl.LightningModule, batch: Any) -> Tensor:
    """``module.loss(batch)`` if the module defines that method, else the loss that ``module.training_step(batch,
    0)`` returns (a tensor, or a dict with ``"loss"``)."""
    if _has_loss_method(module):
        loss = module.loss(batch)
    else:
        with _silenced_logging(module):
            output = module.training_step(batch, 0)
        loss = output["loss"] if isinstance(output, dict) else output
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        source = "loss(batch)" if _has_loss_method(module) else "training_step"
        raise TypeError(
            f"{type(module).__name__}.{source} must return a scalar loss (or a dict with 'loss') to serve as the "
            "callback's loss; pass loss_fn=(module, batch) -> scalar loss otherwise"
        )
    return loss


def require_rerunnable_training_step(callback: str, module: pl.LightningModule, alternatives: str = "") -> None:
    """Refuse a manual-optimization module without a ``loss(batch)`` method: its ``training_step`` takes
    optimizer steps, so re-running it as a loss would train the model."""
    if not module.automatic_optimization and not _has_loss_method(module):
        raise ValueError(
            f"{callback}: {type(module).__name__} uses manual optimization, so its training_step takes optimizer "
            f"steps and cannot serve as the loss; define {type(module).__name__}.loss(batch) -> scalar loss or "
            f"pass loss_fn=(module, batch) -> scalar loss{alternatives}"
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
