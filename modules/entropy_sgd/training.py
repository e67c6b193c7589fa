"""Entropy-SGD under Lightning: one optimizer step per training batch of ``L + 1`` fresh minibatches.

Design (ours; ``docs/papers/entropy_sgd.md``): the datamodule stacks ``batches_per_step = L + 1`` fresh
minibatches into each training batch (``MNISTDataModule(batches_per_step=21)``); the module runs manual
optimization and passes :class:`EntropySGD` a closure that takes the next minibatch on every call, so the
Langevin loop sees a fresh minibatch per inner step while ``global_step`` counts outer steps. One Lightning
epoch is therefore one pass over the data, i.e. ``L + 1`` gradient evaluations per outer step ("effective
epochs" counted x (L + 1)); the paper's Table 1 counts them x L, and both are logged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from ..classifier import Classifier
from ..language_model import LanguageModel
from ..step_logging import is_logging_step
from .optim import EntropySGD


def split_minibatches(batch: Any, n: int) -> list[Any]:
    """The ``n`` minibatches stacked along dim 0 of every tensor in ``batch`` (a tensor, tuple, list or dict),
    in order. Raises when a tensor's first dimension is not a multiple of ``n``."""
    if isinstance(batch, Tensor):
        if len(batch) % n:
            raise ValueError(
                f"a training batch of {len(batch)} rows cannot hold {n} equal minibatches: EntropySGD with L = "
                f"{n - 1} needs the datamodule to stack L + 1 = {n} minibatches (batches_per_step: {n})"
            )
        return list(batch.chunk(n))
    if isinstance(batch, (tuple, list)):
        parts = [split_minibatches(b, n) for b in batch]
        return [type(batch)(p[i] for p in parts) for i in range(n)]
    if isinstance(batch, dict):
        parts = {k: split_minibatches(v, n) for k, v in batch.items()}
        return [{k: v[i] for k, v in parts.items()} for i in range(n)]
    raise TypeError(f"cannot split a training batch of type {type(batch).__name__} into minibatches")


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
    """Mixin for a LightningModule whose ``training_step(batch, batch_idx)`` returns the loss of one minibatch:
    the module's training step becomes one :class:`EntropySGD` outer step over the ``L + 1`` minibatches
    stacked in ``batch`` (``inner_batches="fresh"``, the paper), or over one minibatch reused ``L + 1`` times
    (``"same"``, arXiv v1's cheaper variant). Put it first in the bases::

        class EntropyClassifier(EntropySGDTraining, Classifier): ...

    It logs ``train/gamma``, ``train/x_minus_mu_norm`` and ``train/inner_loss`` on logging steps and
    ``train/effective_epoch_xL`` / ``train/effective_epoch_xL1`` at each epoch's end; LR schedulers are
    stepped by their interval (manual optimization leaves that to the module). Validation and checkpoints
    see the outer weights ``x``: between steps the parameters hold ``x``.
    """

    inner_batches: Literal["fresh", "same"] = "fresh"

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

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        n = self.entropy_optimizer().L + 1
        parts = split_minibatches(batch, n) if self.inner_batches == "fresh" else [batch] * n
        minibatches: Iterator[Any] = iter(parts)
        one_minibatch_loss = super().training_step  # the base module's loss of one minibatch

        def closure() -> Tensor:
            loss = one_minibatch_loss(next(minibatches), batch_idx)
            self.manual_backward(loss)
            return loss

        loss = self.optimizers().step(closure=closure)  # Lightning's wrapper: global_step counts outer steps
        self._step_schedulers("step")
        if is_logging_step(self, batch_idx):
            stats = self.entropy_optimizer().diagnostics
            self.log(
                "train/loss_step", self.loss_to_log(loss, parts[0]), prog_bar=True
            )  # at x (the closure's logs saw x')
            self.log("train/gamma", float(stats["gamma"]))
            self.log("train/x_minus_mu_norm", stats["x_minus_mu_norm"])
            self.log("train/inner_loss", stats["inner_loss"])
        return loss

    def loss_to_log(self, loss: Tensor, minibatch: Any) -> Tensor:
        """The logged ``train/loss_step`` for the objective ``loss`` of ``minibatch`` at ``x`` (identity here)."""
        return loss

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


def _entropy_sgd(params: Any) -> torch.optim.Optimizer:
    return EntropySGD(params)


class EntropyClassifier(EntropySGDTraining, Classifier):
    """:class:`Classifier` trained by :class:`EntropySGD` with a fresh minibatch per Langevin step.

    The data must stack ``L + 1`` minibatches per training batch (``batches_per_step: 21`` for L = 20: the fit
    checks it before the first batch, and the ``iclr17`` CLI sets it from the optimizer's ``L``); the logged
    ``train/loss_step`` and ``train/loss_epoch`` are the loss at ``x`` on each step's first minibatch. Everything
    else is :class:`Classifier`'s.

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
        optimizer: callable from parameters to an :class:`EntropySGD` (default: the paper's defaults).
        lr_scheduler: optional callable from the optimizer to a scheduler, stepped every epoch.
        inner_batches: ``fresh`` (a new minibatch per Langevin step, the paper) or ``same`` (one minibatch
            reused L + 1 times; then ``batches_per_step`` must be 1).
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 10,
        optimizer: OptimizerCallable = _entropy_sgd,
        lr_scheduler: LRSchedulerCallable | None = None,
        inner_batches: Literal["fresh", "same"] = "fresh",
    ) -> None:
        super().__init__(net=net, num_classes=num_classes, optimizer=optimizer, lr_scheduler=lr_scheduler)
        self.automatic_optimization = False
        self.inner_batches = inner_batches

    def on_train_batch_end(self, outputs: Any, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        first_minibatch_size = len(batch[1]) // (1 if self.inner_batches == "same" else self.entropy_optimizer().L + 1)
        self.epoch_loss_sum += outputs["loss"] * first_minibatch_size
        self.epoch_samples += first_minibatch_size


def _entropy_adam(params: Any) -> torch.optim.Optimizer:
    return EntropySGD(params, lr=0.01, L=5, eta_prime=0.002, base="adam")


class EntropyLanguageModel(EntropySGDTraining, LanguageModel):
    """:class:`LanguageModel` trained by :class:`EntropySGD` (or Entropy-Adam, ``base: adam``): each training
    batch holds ``L + 1`` consecutive BPTT minibatches (``batches_per_step``), the hidden state runs through
    them in order (at ``x`` for the first, at ``x'`` for the Langevin steps), and gradients are clipped after
    every closure call when ``grad_clip_norm`` is set.

    Args:
        vocab_size: vocabulary size (checked against the datamodule's).
        hidden_size: LSTM width.
        num_layers: LSTM layers.
        embedding_dim: embedding width (None: ``hidden_size``).
        dropout: dropout on embeddings, between layers and before the decoder.
        init_range: uniform initialisation half-width.
        tie_weights: share the embedding and decoder weights.
        grad_clip_norm: global gradient-norm clip after every closure call (None: off).
        unit: ``word`` or ``char`` (chars also log bits per char).
        train_loss: ``mean`` or ``sum_over_time`` (see :class:`LanguageModel`).
        optimizer: callable from parameters to an :class:`EntropySGD` (default: Entropy-Adam, L = 5; the step
            sizes are our assumption: no Entropy-Adam code was released).
        lr_scheduler: optional callable from the optimizer to a scheduler.

    Always a fresh minibatch per Langevin step: the hidden state runs forward through the stacked windows, so
    one window cannot be re-read L + 1 times (``inner_batches="same"`` exists for :class:`EntropyClassifier`).
    """

    def __init__(
        self,
        vocab_size: int = 10_000,
        hidden_size: int = 1500,
        num_layers: int = 2,
        embedding_dim: int | None = None,
        dropout: float = 0.65,
        init_range: float = 0.04,
        tie_weights: bool = False,
        grad_clip_norm: float | None = 10.0,
        unit: Literal["word", "char"] = "word",
        train_loss: Literal["mean", "sum_over_time"] = "mean",
        optimizer: OptimizerCallable = _entropy_adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            embedding_dim=embedding_dim,
            dropout=dropout,
            init_range=init_range,
            tie_weights=tie_weights,
            grad_clip_norm=grad_clip_norm,
            unit=unit,
            train_loss=train_loss,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
        )
        self.automatic_optimization = False

    def loss_to_log(self, loss: Tensor, minibatch: tuple[Tensor, Tensor]) -> Tensor:
        return loss / self._objective_scale(minibatch)  # per token, as LanguageModel logs it
