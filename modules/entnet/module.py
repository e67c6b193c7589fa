"""Recurrent Entity Network (Henaff et al., ICLR 2017) as a LightningModule, for bAbI-style batches."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn

from ..objective import ObjectiveModule, WeightedMean
from ..step_logging import is_logging_step
from .metrics import PerTaskError
from .nets import DynamicMemory, FeaturePReLU, InputEncoder, OutputModule, on_cpu_in_float32

FAILED_TASK_ERROR = 0.05  # the paper counts a task as failed above 5% test error


def halve_every_25_epochs(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """EntNet's default schedule for bAbI: the learning rate halved every 25 epochs (arXiv:1612.03969 section 5.2).

    A named function rather than a ``functools.partial``: LightningCLI writes a default into the saved
    ``config.yaml`` by its import path, which a partial does not have, and ``lr_scheduler: null`` must keep
    meaning a constant learning rate."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=25, gamma=0.5)


class EntNet(ObjectiveModule):
    """EntNet with the authors' training recipe (arXiv:1612.03969 section 2 and 5.2; ``docs/papers/entnet.md``).

    Batches are dicts with ``story`` ``(B, T, L)``, ``query`` ``(B, Lq)``, ``answer`` ``(B,)`` and ``task``
    ``(B,)`` word ids, id 0 being padding (what ``BabiDataModule`` serves). ``vocab_size``,
    ``sentence_length`` and ``query_length`` may be left out: the layers are then built in ``configure_model``
    from the datamodule's and the sizes saved in the hyperparameters, so checkpoints restore without it.
    ``loss(batch)`` is the training objective of a batch (summed or averaged over its questions, as
    ``loss_reduction`` says), without side effects; ``train/loss_step`` and ``train/loss_epoch`` are per question.

    Keys are extra rows of the word embedding E (``n_slots`` of them) and the memory starts at the keys;
    with ``tied_keys`` the keys are the embeddings of the given words instead (one slot per word). One
    PReLU (slopes initialised to 1) is shared by the memory and the output module.

    Training follows the authors' code: every weight starts from N(0, 0.1) (the story position mask included,
    ``mask_init="official"``; the question mask starts at ones, PReLU slopes at 1); loss summed over the batch
    and the global gradient norm clipped at 40 (with ``loss_reduction="mean"`` use ``max_grad_norm=1.25`` for
    the same step); Adam 0.01 halved every 25 epochs; the padding row of the output matrix R zeroed after every
    step. ``paper_exact=True`` refuses any departure from these.

    Args:
        embedding_dim: d (100 for bAbI, 20 for the world model).
        n_slots: m, memory slots (20 for bAbI); must equal ``len(tied_keys)`` when keys are tied.
        vocab_size: words in the vocabulary, padding and unknown included (default: from the datamodule).
        sentence_length: words per story sentence the position mask covers (default: from the datamodule).
        query_length: words per question the question mask covers (default: from the datamodule).
        n_hops: attention hops in the output module.
        gate_bias: learn a gate bias per slot (the authors' code).
        tied_keys: words whose embeddings are the keys, e.g. the entities of a task (default: free keys).
        mask_init: initial story position mask f of eq. 1: ``official`` (N(0, 0.1), the authors' code) or
            ``ones`` (bag of words at the start, as the public ports do); the question mask starts at ones.
        loss_reduction: ``sum`` (authors' code) or ``mean`` over the batch.
        max_grad_norm: clip of the global gradient L2 norm (None: no clipping).
        paper_exact: refuse anything but the authors' code in the respects above: requires the defaults of
            ``mask_init``, ``loss_reduction`` and ``max_grad_norm``.
        optimizer: callable from parameters to an optimizer (None: ``default_optimizer``, Adam with lr 0.01).
        lr_scheduler: callable from an optimizer to a scheduler (default :func:`halve_every_25_epochs`; None: a
            constant learning rate).
        lr_scheduler_interval: step the scheduler every ``epoch`` or every optimizer ``step`` (the world
            model halves the learning rate every 10,000 updates).
        fused_memory: train the memory with its hand-written backward on the real sentences only (same
            gradients; a bAbI training step 1.5-1.6x (task 1) to 2.1-2.2x (task 2) faster on CPU than autograd's,
            ``RESULTS.md``; differentiable once). Set False for second-order tools such as ``HessianSpectrum``.
    """

    default_optimizer = partial(torch.optim.Adam, lr=0.01)

    def __init__(
        self,
        embedding_dim: int = 100,
        n_slots: int = 20,
        vocab_size: int | None = None,
        sentence_length: int | None = None,
        query_length: int | None = None,
        n_hops: int = 1,
        gate_bias: bool = True,
        tied_keys: list[str] | None = None,
        mask_init: Literal["official", "ones"] = "official",
        loss_reduction: Literal["sum", "mean"] = "sum",
        max_grad_norm: float | None = 40.0,
        paper_exact: bool = False,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = halve_every_25_epochs,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        fused_memory: bool = True,
    ) -> None:
        super().__init__(optimizer, lr_scheduler, lr_scheduler_interval)
        if mask_init not in ("official", "ones"):
            raise ValueError(f"mask_init must be 'official' (the authors' N(0, 0.1)) or 'ones', got {mask_init!r}")
        if paper_exact and (mask_init != "official" or loss_reduction != "sum" or max_grad_norm != 40.0):
            raise ValueError("paper_exact=True uses mask_init='official', loss_reduction='sum' and max_grad_norm=40")
        if tied_keys is not None and len(tied_keys) != n_slots:
            raise ValueError(f"n_slots={n_slots} but tied_keys names {len(tied_keys)} words; they must match")
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.val_task_error = PerTaskError()
        self.log_this_step = False
        self.test_task_error = PerTaskError()
        self.val_loss, self.test_loss = WeightedMean(), WeightedMean()  # exact under DDP
        if None not in (vocab_size, sentence_length, query_length) and tied_keys is None:
            self._build(vocab_size, sentence_length, query_length, key_ids=None)

    def _build(self, vocab_size: int, sentence_length: int, query_length: int, key_ids: list[int] | None) -> None:
        hp = self.hparams
        d, m = hp.embedding_dim, hp.n_slots
        self.n_words = vocab_size
        self.embedding = nn.Embedding(vocab_size + (0 if key_ids is not None else m), d, padding_idx=0)
        self.story_encoder = InputEncoder(sentence_length, d, "normal" if hp.mask_init == "official" else "ones")
        self.query_encoder = InputEncoder(query_length, d, "ones")
        self.prelu = FeaturePReLU(d)
        self.memory = DynamicMemory(d, m, self.prelu, gate_bias=hp.gate_bias, fused=hp.fused_memory)
        self.output = OutputModule(d, self.embedding.num_embeddings, self.prelu, n_hops=hp.n_hops)
        ids = key_ids if key_ids is not None else list(range(vocab_size, vocab_size + m))
        self.register_buffer("key_ids", torch.tensor(ids, dtype=torch.long))
        for name, parameter in self.named_parameters():  # the authors' code: everything N(0, 0.1) but these
            if not name.startswith(("story_encoder.", "query_encoder.", "prelu.")):
                nn.init.normal_(parameter, std=0.1)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
            self.output.R.weight[0].zero_()
        self.hparams.update(vocab_size=vocab_size, sentence_length=sentence_length, query_length=query_length)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.trainer.gradient_clip_val:
            rank_zero_warn("EntNet clips gradients itself (max_grad_norm); Trainer(gradient_clip_val) is ignored")

    def configure_model(self) -> None:
        """Build the layers for the datamodule's vocabulary and lengths, unless they exist (Lightning calls this
        after ``setup`` in every run). They are built on the CPU in float32 whatever the accelerator and precision,
        so the initial weights come from the CPU generator as on any other machine; the strategy moves them."""
        if hasattr(self, "embedding"):
            return
        try:
            datamodule = self.trainer.datamodule
        except RuntimeError:  # load_from_checkpoint calls this without a Trainer: load_state_dict builds the layers
            return
        missing = [a for a in ("vocab_size", "sentence_length", "query_length") if not hasattr(datamodule, a)]
        if missing:
            raise ValueError(f"EntNet needs vocab_size, sentence_length and query_length (datamodule lacks {missing})")
        key_ids = None
        if self.hparams.tied_keys is not None:
            unknown = [w for w in self.hparams.tied_keys if w not in datamodule.vocab]
            if unknown:
                raise ValueError(f"tied_keys words not in the training vocabulary: {unknown}")
            key_ids = [datamodule.vocab.index(w) for w in self.hparams.tied_keys]
        with on_cpu_in_float32():
            self._build(datamodule.vocab_size, datamodule.sentence_length, datamodule.query_length, key_ids)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Build the layers from the saved shapes first when they do not exist yet: ``configure_model`` cannot
        build them for the main process after ``ddp_spawn``, which only receives the trained weights, nor for
        ``load_from_checkpoint`` with ``tied_keys``, whose key word ids only the state dict holds."""
        if not hasattr(self, "embedding") and "embedding.weight" in state_dict:
            rows = state_dict["embedding.weight"].shape[0]
            tied = self.hparams.tied_keys is not None
            vocab_size = rows if tied else rows - self.hparams.n_slots
            key_ids = state_dict["key_ids"].tolist() if tied else None
            sentence_length = state_dict["story_encoder.mask"].shape[0]
            self._build(vocab_size, sentence_length, state_dict["query_encoder.mask"].shape[0], key_ids)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, story: Tensor, query: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits over the vocabulary ``(B, vocab_size)`` and diagnostics (gates, final memory)."""
        sentences = self.story_encoder(self.embedding(story))  # (B, T, d)
        step_mask = (story != 0).any(dim=-1)
        keys = self.embedding(self.key_ids).unsqueeze(0).expand(story.shape[0], -1, -1)
        memory, gates = self.memory(sentences, step_mask, keys, initial=keys)
        logits = self.output(self.query_encoder(self.embedding(query)), memory)
        return logits[:, : self.n_words], {"gates": gates, "memory": memory, "step_mask": step_mask}

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The cross-entropy of the batch's answers, summed or averaged over its questions (``loss_reduction``)."""
        return self._loss_and_diagnostics(batch)[0]

    def _loss_and_diagnostics(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        logits, diagnostics = self(batch["story"], batch["query"])
        return F.cross_entropy(logits, batch["answer"], reduction=self.hparams.loss_reduction), diagnostics

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, diagnostics = self._loss_and_diagnostics(batch)  # loss(batch), with the gates for the diagnostics
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"EntNet: non-finite training loss ({loss.item()}) at step {self.global_step}, epoch "
                f"{self.current_epoch}; lower the learning rate or check max_grad_norm"
            )
        per_question = self.logged_loss(loss.detach(), batch)
        if self.log_this_step:
            real = diagnostics["step_mask"].unsqueeze(-1)
            gates = diagnostics["gates"]
            gate_mean = (gates * real).sum() / (real.sum() * gates.shape[-1]).clamp_min(1)
            self.log("train/loss_step", per_question, prog_bar=True)
            memory_norm = diagnostics["memory"].norm(dim=-1).mean()  # 1 unless some slot was never written
            self.log_dict({"diag/gate_mean": gate_mean, "diag/gate_max": gates.max(), "diag/memory_norm": memory_norm})
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # read by training_step and configure_gradient_clipping, which cannot see batch_idx
        self.log_this_step = is_logging_step(self, batch_idx)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
        parameters = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        max_norm = self.hparams.max_grad_norm if self.hparams.max_grad_norm is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        if self.log_this_step:
            self.log("diag/grad_norm", grad_norm)

    def epoch_loss_weight(self, batch: dict[str, Tensor]) -> int:
        return len(batch["answer"])

    @property
    def loss_is_summed(self) -> bool:
        return self.hparams.loss_reduction == "sum"

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        with torch.no_grad():
            self.output.R.weight[0].zero_()  # the padding word is never an answer (authors' code)

    def _evaluate(self, batch: dict[str, Tensor], split: str, task_error: PerTaskError) -> None:
        logits, _ = self(batch["story"], batch["query"])
        loss = getattr(self, f"{split}_loss")
        loss.update(F.cross_entropy(logits, batch["answer"]), len(batch["answer"]))
        self.log(f"{split}/loss", loss)
        task_error.update(logits.argmax(dim=-1), batch["answer"], batch["task"])

    def _log_task_errors(self, split: str, task_error: PerTaskError) -> None:
        total_error, errors = task_error.compute()
        self.log(f"{split}/error", total_error, sync_dist=True)  # identical on every rank: synced counts
        self.log(
            f"{split}/failed_tasks", float(sum(float(e) > FAILED_TASK_ERROR for e in errors.values())), sync_dist=True
        )
        if len(errors) > 1:
            for task, error in errors.items():
                self.log(f"{split}/error_task{task}", error, sync_dist=True)
        unknown_words = getattr(self.trainer.datamodule, "unknown_words", {}).get(split)
        if unknown_words is not None:  # words of this split missing from the training vocabulary (now <unk>)
            self.log(f"{split}/unknown_words", float(unknown_words))
        task_error.reset()

    def on_validation_epoch_start(self) -> None:
        self.val_task_error.reset()  # counts from an interrupted evaluation never reach this one

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_task_error)

    def on_validation_epoch_end(self) -> None:
        self._log_task_errors("val", self.val_task_error)

    def on_test_epoch_start(self) -> None:
        self.test_task_error.reset()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_task_error)

    def on_test_epoch_end(self) -> None:
        self._log_task_errors("test", self.test_task_error)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self(batch["story"], batch["query"])[0].argmax(dim=-1)
