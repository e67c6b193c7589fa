"""EntNet for the Children's Book Test (paper section 5.3): keys tied to the candidates, attention answers."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from ..objective import ObjectiveModule, WeightedMean
from .nets import DynamicMemory, FeaturePReLU, InputEncoder, SimpleMemory, on_cpu_in_float32

N_CANDIDATES = 10


class EntNetCBT(ObjectiveModule):
    """EntNet on window memories with one slot per candidate (``CBTDataModule`` batches).

    The keys, and the memory's initial values, are the embeddings of the 10 candidate words; the story is
    read window by window with separate input encoders for the gate and for the update; the attention over
    slots, ``softmax_j(q . h_j)``, is the answer distribution (no decoder R). ``simple`` drops U, V, phi and
    the normalisation (W = identity); ``general`` is the full memory. Dropout 0.5 on the embeddings and SGD
    at a fixed 0.001 follow the paper; d, batch size and epochs are not given there (``docs/papers/entnet.md``).
    ``vocab_size`` and ``sentence_length`` left out are read from the datamodule in ``configure_model`` (as
    ``EntNet``). ``loss(batch)`` is the mean negative log-likelihood of the answers (with dropout in training
    mode); ``train/loss_step`` is logged, and no epoch loss.

    Args:
        embedding_dim: d.
        variant: ``simple`` (the paper's best single-pass model) or ``general``.
        vocab_size: words in the vocabulary (default: from the datamodule).
        sentence_length: words per window (default: from the datamodule).
        embedding_dropout: dropout on embedding dimensions.
        gate_bias: learn a gate bias per slot.
        optimizer: callable from parameters to an optimizer (None: ``default_optimizer``, SGD with lr 0.001).
    """

    default_optimizer = partial(torch.optim.SGD, lr=0.001)

    def __init__(
        self,
        embedding_dim: int = 100,
        variant: Literal["simple", "general"] = "simple",
        vocab_size: int | None = None,
        sentence_length: int | None = None,
        embedding_dropout: float = 0.5,
        gate_bias: bool = True,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        super().__init__(optimizer)
        self.save_hyperparameters(ignore=["optimizer"])
        self.val_acc = MulticlassAccuracy(N_CANDIDATES, average="micro")
        self.test_acc = MulticlassAccuracy(N_CANDIDATES, average="micro")
        self.val_loss, self.test_loss = WeightedMean(), WeightedMean()  # exact under DDP
        if vocab_size is not None and sentence_length is not None:
            self._build(vocab_size, sentence_length)

    def _build(self, vocab_size: int, sentence_length: int) -> None:
        hp = self.hparams
        d = hp.embedding_dim
        self.embedding = nn.Embedding(vocab_size, d, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=0.1)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.dropout = nn.Dropout(hp.embedding_dropout)
        encoders = (InputEncoder(sentence_length, d) for _ in range(3))
        self.gate_encoder, self.update_encoder, self.query_encoder = encoders
        if hp.variant == "simple":
            self.memory = SimpleMemory(N_CANDIDATES, gate_bias=hp.gate_bias)
        else:
            self.memory = DynamicMemory(d, N_CANDIDATES, FeaturePReLU(d), gate_bias=hp.gate_bias)
        self.hparams.update(vocab_size=vocab_size, sentence_length=sentence_length)

    def configure_model(self) -> None:
        """Build the layers for the datamodule's vocabulary and window, unless they exist (see ``EntNet``)."""
        if not hasattr(self, "embedding"):
            datamodule = self.trainer.datamodule
            with on_cpu_in_float32():
                self._build(datamodule.vocab_size, datamodule.sentence_length)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Build the layers from the saved shapes first when they do not exist yet: the main process after
        ``ddp_spawn`` only receives the trained weights (see ``EntNet``)."""
        if not hasattr(self, "embedding") and "embedding.weight" in state_dict:
            self._build(state_dict["embedding.weight"].shape[0], state_dict["gate_encoder.mask"].shape[0])
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, story: Tensor, query: Tensor, candidates: Tensor) -> Tensor:
        """Log-probabilities over the 10 candidates, ``(B, 10)``."""
        words = self.dropout(self.embedding(story))
        keys = self.embedding(candidates)
        memory, _ = self.memory(
            self.gate_encoder(words),
            (story != 0).any(-1),
            keys,
            initial=keys,
            update_sentences=self.update_encoder(words),
        )
        q = self.query_encoder(self.dropout(self.embedding(query)))
        return torch.log_softmax(torch.einsum("bd,bmd->bm", q, memory), dim=-1)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The mean negative log-likelihood of the batch's answers among its candidates."""
        return F.nll_loss(self(batch["story"], batch["query"], batch["candidates"]), batch["answer"])

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """No ``train/loss_epoch``: the step loss stays this module's only training log, as its recorded fingerprints
        (``tests/fingerprints``) have it; the base's epoch mean would add a logged value."""

    def on_train_epoch_end(self) -> None:
        """No ``train/loss_epoch`` (see ``on_train_batch_end``)."""

    def _evaluate(self, batch: dict[str, Tensor], split: str, accuracy: MulticlassAccuracy) -> None:
        log_p = self(batch["story"], batch["query"], batch["candidates"])
        loss = getattr(self, f"{split}_loss")
        loss.update(F.nll_loss(log_p, batch["answer"]), len(batch["answer"]))
        self.log(f"{split}/loss", loss)
        accuracy(log_p.argmax(-1), batch["answer"])
        self.log(f"{split}/acc", accuracy, prog_bar=split == "val")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc)
