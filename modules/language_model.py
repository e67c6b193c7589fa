"""The LSTM language model of Zaremba et al. 2014, trained with truncated BPTT (Entropy-SGD's PTB and char rows).

Perplexity is ``exp`` of the mean per-token negative log-likelihood (natural log) over every scored token of a
split; for characters the paper's "perplexity per char" is the same quantity, and ``bits_per_char`` is the mean NLL
divided by ``ln 2``. Every batch of a split holds the same number of tokens (the BPTT datamodules serve whole
``batch_size x bptt`` batches only), so that mean is the mean over batches of their per-token NLL, which is what we
sum: each batch counts once. (Weighting each batch by its tokens gives the same number up to rounding; counting
batches keeps the logged values bit for bit what they were, torchmetrics' ``MeanMetric`` with
``nan_strategy="disable"`` having silently ignored the token weights we passed it.) The sums are metric states
(:class:`WeightedMean`), so the values are exact under DDP.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from .objective import ObjectiveModule, WeightedMean
from .step_logging import is_logging_step

State = tuple[Tensor, Tensor]


class LanguageModel(ObjectiveModule):
    """Embedding -> ``num_layers`` LSTM -> linear decoder over the vocabulary (Zaremba et al. 2014).

    Dropout as Zaremba: on the embeddings, between LSTM layers and before the decoder (non-recurrent
    connections only). Every parameter starts uniform in ``[-init_range, init_range]``. The training hidden
    state is carried from one batch to the next and detached (truncated BPTT), so batches must come in time
    order (``PTBDataModule``, ``CharTextDataModule``); it restarts at zero at each epoch's start and whenever the
    batch size changes. Validation and test keep their own states, restarted at each of their epochs.

    ``training_loss(batch)`` (what ``training_step`` returns) is the mean token cross-entropy of ONE minibatch
    ``(inputs, targets)``, both ``(B, bptt)`` (times ``bptt`` with ``train_loss="sum_over_time"``), and advances the
    training state; a manual-optimization subclass that receives ``k`` stacked minibatches
    (``batches_per_step=k``) calls it on each ``batch.chunk(k)`` in order. ``loss(batch)`` is the same objective
    from a zero state and without side effects (what callbacks measure). Gradients are clipped to global norm
    ``grad_clip_norm`` in ``on_before_optimizer_step``, which Lightning runs after every closure call, so the clip
    also applies when an optimizer evaluates its closure several times per step.

    Logs ``train/loss_step`` (logging steps only), ``train/loss_epoch`` and ``train/ppl_epoch``, ``val/loss`` and
    ``val/ppl``, ``test/loss`` and ``test/ppl``, and with ``unit="char"`` also ``{split}/bits_per_char``.

    Defaults are Zaremba's large model, which Entropy-SGD uses for PTB (arXiv:1611.01838 section 5; recalled,
    see ``docs/papers/entropy_sgd.md``): 2 x 1500, dropout 0.65, init 0.04, clip 10, SGD with lr 1; 66,034,000
    parameters. Zaremba's lr and clip are in ``train_loss="sum_over_time"`` units; the default objective is the
    per-token ``mean``, so the configs set ``sum_over_time`` explicitly.

    Example (YAML for ``iclr17 fit``)::

        model:
          class_path: LanguageModel
          init_args: {vocab_size: 10000, hidden_size: 650, dropout: 0.5, init_range: 0.05, grad_clip_norm: 5.0}
        data:
          class_path: PTBDataModule
          init_args: {batch_size: 20, bptt: 35}

    Args:
        vocab_size: number of token ids; checked against the datamodule's ``vocab_size``.
        hidden_size: LSTM units per layer.
        num_layers: stacked LSTM layers.
        embedding_dim: embedding width (None: ``hidden_size``, as Zaremba).
        dropout: drop probability on non-recurrent connections (0 disables it).
        init_range: half-width of the uniform initialisation of every parameter.
        tie_weights: share the embedding and decoder matrices (needs ``embedding_dim == hidden_size``).
        grad_clip_norm: clip gradients to this global L2 norm before every optimizer step (None: no clipping).
        unit: ``char`` adds ``bits_per_char`` to the logged metrics.
        train_loss: the training objective of a minibatch: ``mean``, the mean token NLL; ``sum_over_time``, that
            mean times ``bptt`` (the batch-mean NLL summed over the unrolled steps), which is what Zaremba's and
            char-rnn's code differentiate, so their lr 1 and clip 5 are in these units (plain SGD with lr 1 on
            ``sum_over_time`` equals lr ``bptt`` and clip ``5 / bptt`` on ``mean``). Logged losses are per token.
        optimizer: callable from parameters to an optimizer (None: ``default_optimizer``, SGD with lr 1 and no
            momentum).
        lr_scheduler: optional callable from an optimizer to a scheduler.
        lr_scheduler_interval: step the scheduler every ``epoch`` or every optimizer ``step``.
        lr_scheduler_frequency: step it every this many intervals.
    """

    default_optimizer = functools.partial(torch.optim.SGD, lr=1.0)

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
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        lr_scheduler_frequency: int = 1,
    ) -> None:
        super().__init__(optimizer, lr_scheduler, lr_scheduler_interval, lr_scheduler_frequency)
        embedding_dim = embedding_dim or hidden_size
        if tie_weights and embedding_dim != hidden_size:
            raise ValueError(f"tie_weights needs embedding_dim == hidden_size, got {embedding_dim} and {hidden_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if grad_clip_norm is not None and grad_clip_norm <= 0:
            raise ValueError(f"grad_clip_norm must be positive or None, got {grad_clip_norm}")
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])  # the run's config.yaml has them
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            embedding_dim, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.decoder = nn.Linear(hidden_size, vocab_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -init_range, init_range)
        if tie_weights:
            self.decoder.weight = self.embedding.weight
        # sums of batch NLLs and batch counts; a diverged run's NaN reaches the perplexity instead of being dropped
        # (training's are the base's train_loss_epoch, weighted by epoch_loss_weight)
        self.val_nll, self.test_nll = WeightedMean(), WeightedMean()
        self._states: dict[str, State] = {}

    def forward(self, inputs: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Logits ``(B, T, vocab_size)`` for token ids ``(B, T)``, and the LSTM state after the last step."""
        outputs, state = self.lstm(self.drop(self.embedding(inputs)), state)
        return self.decoder(self.drop(outputs)), state

    def _window_nll(self, batch: tuple[Tensor, Tensor], state: State | None) -> tuple[Tensor, State]:
        """Mean token cross-entropy of the batch run on from ``state`` (None: zero), and the state after it."""
        inputs, targets = batch
        if state is not None and state[0].shape[1] != inputs.shape[0]:
            state = None  # a new batch size starts from zero
        logits, state = self(inputs, state)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)), state

    def _mean_nll(self, stage: str, batch: tuple[Tensor, Tensor]) -> Tensor:
        """Mean token cross-entropy of the batch, continuing (and then replacing) ``stage``'s carried state."""
        nll, state = self._window_nll(batch, self._states.get(stage))
        self._states[stage] = (state[0].detach(), state[1].detach())
        return nll

    def loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        """The training objective of one minibatch ``(inputs, targets)`` with every window started from a zero
        state, without side effects: the loss that measurement callbacks (HessianSpectrum, HaltingTime's
        full-data loss) evaluate, so that measuring never touches the carried training state.

        Our choice: a function of the weights and the batch alone, the same for any subset, order or split over
        processes of the training windows. It reads no context from before the window, so it is usually higher than
        the carried-state loss ``training_step`` returns (whose state is only defined along one pass in order).
        """
        return self._window_nll(batch, None)[0] * self._objective_scale(batch)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = self.trainer.datamodule
        datamodule_vocab = getattr(datamodule, "vocab_size", None)
        if datamodule_vocab is not None and datamodule_vocab != self.hparams.vocab_size:
            raise ValueError(
                f"model.vocab_size={self.hparams.vocab_size} but the datamodule's vocabulary has {datamodule_vocab} "
                "tokens; set --model.vocab_size to match"
            )
        if stage == "fit" and self.automatic_optimization and getattr(datamodule, "batches_per_step", 1) > 1:
            raise ValueError(
                f"data.batches_per_step={datamodule.batches_per_step} stacks consecutive minibatches, but "
                f"{type(self).__name__} trains on one minibatch per step; use a module that splits the batch "
                "(an Entropy-SGD module) or batches_per_step=1"
            )

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._states.pop("train", None)

    def training_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        """The training objective of one minibatch run on from the carried training state, which it advances."""
        return self._mean_nll("train", batch) * self._objective_scale(batch)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """``training_loss(batch)``; logs the per-token NLL as ``train/loss_step`` on logging steps."""
        nll = self._mean_nll("train", batch)
        if is_logging_step(self, batch_idx):
            self.log("train/loss_step", nll, prog_bar=True)  # before the scale, so the value is the NLL itself
        return nll * self._objective_scale(batch)

    def logged_loss(self, loss: Tensor, batch: tuple[Tensor, Tensor]) -> Tensor:
        """Per token: the training objective ``loss`` of ``batch`` without the ``sum_over_time`` factor."""
        return loss / self._objective_scale(batch)

    def epoch_loss_weight(self, batch: tuple[Tensor, Tensor]) -> int:
        """1: each (whole) batch counts once in ``train/loss_epoch``, as in every split (see the module docstring)."""
        return 1

    def _objective_scale(self, batch: tuple[Tensor, Tensor]) -> int:
        return batch[1].shape[1] if self.hparams.train_loss == "sum_over_time" else 1

    def on_train_epoch_end(self) -> None:
        self._log_split("train", self.train_loss_epoch, suffix="_epoch")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.val_nll.update(self._mean_nll("val", batch))

    def on_validation_epoch_end(self) -> None:
        self._log_split("val", self.val_nll)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.test_nll.update(self._mean_nll("test", batch))

    def on_test_epoch_end(self) -> None:
        self._log_split("test", self.test_nll)

    def _log_split(self, stage: str, metric: WeightedMean, suffix: str = "") -> None:
        """Mean NLL, perplexity (and bits per char) of the split's scored tokens in ``metric`` on every process;
        then reset it, and the split's carried state (the next pass over the split starts from zero)."""
        if stage != "train":
            self._states.pop(stage, None)
        if not metric.update_called:
            return
        nll = metric.compute()  # summed over processes
        values = {f"{stage}/loss{suffix}": nll, f"{stage}/ppl{suffix}": nll.exp()}
        if self.hparams.unit == "char":
            values[f"{stage}/bits_per_char{suffix}"] = nll / math.log(2)
        # identical on every process, so sync_dist only silences Lightning's epoch-level DDP warning
        self.log_dict(values, prog_bar=stage == "val", sync_dist=True)
        metric.reset()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.hparams.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(self.parameters(), self.hparams.grad_clip_norm)
