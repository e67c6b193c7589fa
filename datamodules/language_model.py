"""Word- and character-level language-model corpora served as truncated-BPTT batches (Zaremba et al. 2014).

The token stream of a split is cut into ``batch_size`` contiguous columns of equal length (the tail that does not
fill a column is dropped). Batch ``i`` holds tokens ``i * bptt ... (i + 1) * bptt - 1`` of every column as inputs and
the same positions shifted by one as targets, both ``(batch_size, bptt)``; batches come in time order, so a model can
carry its hidden state from one batch to the next. Only whole batches are served (``(column length - 1) // bptt`` of
them, as in Zaremba's reader), so the last few tokens of each column are never scored.

Under DDP ``batch_size`` is the global number of columns: process ``r`` of ``W`` gets columns
``r * batch_size / W ... (r + 1) * batch_size / W - 1``, so the processes' batches are disjoint and together are
the single-process batch. The splits are served by an ``IterableDataset``, into which Lightning injects no
``DistributedSampler`` (one would interleave batches across processes and break the time order).

``batches_per_step=k`` makes each *training* batch ``k`` consecutive BPTT minibatches stacked along dim 0 in time
order, ``(k * batch_size, bptt)``, so ``batch.chunk(k)`` gives them back in order (``EntropySGD`` takes ``L + 1``); the
trailing minibatches of an epoch that do not fill ``k`` are dropped. Evaluation splits are unaffected.

Parsing takes well under 2 s (PTB 0.3 s, War and Peace 0.4 s on the 2-core dev machine), so nothing is cached.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from .storage import DataFormatError, data_root, require_files

EOS, UNK = "<eos>", "<unk>"


def bptt_columns(tokens: Tensor, n_columns: int) -> Tensor:
    """``(n_columns, len(tokens) // n_columns)``: row ``c`` is the ``c``-th contiguous piece of the stream."""
    length = len(tokens) // n_columns
    return tokens[: n_columns * length].view(n_columns, length)


def n_bptt_batches(column_length: int, bptt: int) -> int:
    """Whole batches in a column: each needs ``bptt`` inputs and one more token for the last target."""
    return max(column_length - 1, 0) // bptt


def process_columns(columns: Tensor, rank: int, world_size: int) -> Tensor:
    """Process ``rank``'s contiguous block of ``columns.shape[0] / world_size`` columns."""
    if columns.shape[0] % world_size:
        raise ValueError(
            f"{columns.shape[0]} columns (the global batch) must divide evenly over {world_size} processes"
        )
    per_process = columns.shape[0] // world_size
    return columns[rank * per_process : (rank + 1) * per_process]


class BPTTBatches(IterableDataset):
    """``(inputs, targets)`` batches of ``columns``, in time order, ``batches_per_step`` minibatches stacked."""

    def __init__(self, columns: Tensor, bptt: int, batches_per_step: int = 1) -> None:
        self.columns, self.bptt, self.batches_per_step = columns, bptt, batches_per_step
        self.n_minibatches = n_bptt_batches(columns.shape[1], bptt)

    def __len__(self) -> int:
        return self.n_minibatches // self.batches_per_step

    def minibatch(self, i: int) -> tuple[Tensor, Tensor]:
        start = i * self.bptt
        return self.columns[:, start : start + self.bptt], self.columns[:, start + 1 : start + self.bptt + 1]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        k = self.batches_per_step
        for j in range(len(self)):
            inputs, targets = zip(*(self.minibatch(i) for i in range(j * k, (j + 1) * k)), strict=True)
            yield torch.cat(inputs), torch.cat(targets)


class TokenStreamDataModule(pl.LightningDataModule):
    """Serves ``self.tokens`` (``train``, ``val``, ``test`` streams of ids, set by a subclass's ``setup``) as
    BPTT batches; the subclass also sets ``self.vocab`` (id -> token). See the module docstring.

    Args:
        batch_size: global number of columns of the training stream (divided over DDP processes).
        bptt: unrolled time steps per batch.
        eval_batch_size: global number of columns of the validation and test streams (None: ``batch_size``).
        batches_per_step: consecutive minibatches stacked into each training batch.
    """

    def __init__(self, batch_size: int, bptt: int, eval_batch_size: int | None, batches_per_step: int) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("bptt", bptt), ("batches_per_step", batches_per_step)):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be a positive integer or None, got {eval_batch_size}")
        self.batch_size, self.bptt, self.batches_per_step = batch_size, bptt, batches_per_step
        self.eval_batch_size = eval_batch_size or batch_size
        self.vocab: list[str] = []
        self.tokens: dict[str, Tensor] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def num_tokens(self) -> dict[str, int]:
        """Tokens in each split's stream (before cutting it into columns)."""
        return {split: len(tokens) for split, tokens in self.tokens.items()}

    def _check_sizes(self) -> None:
        """Every split must hold at least one whole training step (or evaluation batch)."""
        for split, tokens in self.tokens.items():
            columns = self.batch_size if split == "train" else self.eval_batch_size
            needed = self.batches_per_step if split == "train" else 1
            if n_bptt_batches(len(tokens) // columns, self.bptt) < needed:
                raise ValueError(
                    f"{type(self).__name__}: the {split} split has {len(tokens)} tokens, too few for {needed} "
                    f"batch(es) of {columns} columns x (bptt={self.bptt} + 1) tokens; lower the batch size or bptt"
                )

    def _loader(self, split: str) -> DataLoader:
        if split not in self.tokens:
            raise RuntimeError(f"{type(self).__name__}: the {split} split is not set up; call setup() first")
        train = split == "train"
        columns = bptt_columns(self.tokens[split], self.batch_size if train else self.eval_batch_size)
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        local = process_columns(columns, rank, world_size)
        return DataLoader(BPTTBatches(local, self.bptt, self.batches_per_step if train else 1), batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


def _nonempty(path: Path, tokens: Tensor) -> Tensor:
    if len(tokens) == 0:
        raise DataFormatError(f"{path}: the file holds no tokens")
    return tokens


PTB_FILES = {"train": "ptb.train.txt", "val": "ptb.valid.txt", "test": "ptb.test.txt"}


def read_ptb_lines(path: Path) -> list[list[str]]:
    """Each line's words followed by ``<eos>`` (the Mikolov files are space-separated words, one sentence a line)."""
    with open(path, encoding="utf-8") as f:
        return [[*line.split(), EOS] for line in f]


def ptb_vocabulary(lines: list[list[str]]) -> list[str]:
    """Every word of the training lines, in order of first occurrence (Zaremba's ``data.lua``)."""
    return list(dict.fromkeys(word for line in lines for word in line))


def encode_words(path: Path, lines: list[list[str]], index: dict[str, int]) -> Tensor:
    """Ids of every word; a word outside the vocabulary is an error naming the file and line."""
    ids: list[int] = []
    for line_number, line in enumerate(lines, start=1):
        try:
            ids.extend(index[word] for word in line)
        except KeyError as err:
            raise DataFormatError(
                f"{path}:{line_number}: word {err.args[0]!r} is not in the training vocabulary (the Mikolov files "
                "map every rare word to <unk>, so this file is not from that split)"
            ) from None
    return _nonempty(path, torch.tensor(ids, dtype=torch.long))


class PTBDataModule(TokenStreamDataModule):
    """Penn Treebank, word level, Mikolov's split: ``<data root>/ptb/ptb.{train,valid,test}.txt``.

    ``<eos>`` is appended to every line (Zaremba et al. 2014). The vocabulary is the training file's words in order
    of first occurrence (10,000 with ``<eos>``, which include ``<unk>``); a word of the valid or test file outside it
    is an error, since the Mikolov files have none. Batching: see :mod:`iclr17.datamodules.language_model`.
    Defaults are Zaremba's (recalled, not checked; ``docs/papers/entropy_sgd.md``).

    Args:
        data_dir: the data root, holding ``ptb/ptb.{train,valid,test}.txt`` (default ``$ICLR17_DATA_DIR``,
            else ``./data``).
        batch_size: global number of training columns (Zaremba: 20), divided over DDP processes.
        bptt: unrolled time steps per batch (Zaremba: 35).
        eval_batch_size: global number of validation and test columns (None: ``batch_size``).
        batches_per_step: consecutive minibatches stacked into each training batch (``EntropySGD``: L + 1).
    """

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 20,
        bptt: int = 35,
        eval_batch_size: int | None = None,
        batches_per_step: int = 1,
    ) -> None:
        super().__init__(batch_size, bptt, eval_batch_size, batches_per_step)
        self.save_hyperparameters()
        self.folder = data_root(data_dir) / "ptb"

    def setup(self, stage: str | None = None) -> None:
        if self.tokens:
            return
        paths = {split: self.folder / name for split, name in PTB_FILES.items()}
        require_files(list(paths.values()), "Penn Treebank", "They are Mikolov's simple-examples/data/ptb.*.txt.")
        lines = {split: read_ptb_lines(path) for split, path in paths.items()}
        self.vocab = ptb_vocabulary(lines["train"])
        index = {word: i for i, word in enumerate(self.vocab)}
        self.tokens = {split: encode_words(paths[split], lines[split], index) for split in paths}
        self._check_sizes()


# SHA-256 of a file -> characters of real text it holds (after BOM removal and CRLF -> LF). Our copy of the
# char-rnn War and Peace ends with 8,046 bytes of unrelated text (kaomoji diary lines) after the novel's last
# line, "... a dependence of which we are not\nconscious."; these are dropped.
KNOWN_TRAILERS = {"cea8ccb6e581165e7b0988ab7e28cccc9447af1e0b1278ac8baeb8f359d9ce62": 3_196_213}


def read_text(path: Path, strip_known_trailers: bool = True) -> str:
    """The file as UTF-8 text, without a leading BOM and with CRLF line ends normalised to LF."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    if strip_known_trailers:
        text = text[: KNOWN_TRAILERS.get(hashlib.sha256(raw).hexdigest(), len(text))]
    if not text:
        raise DataFormatError(f"{path}: the file holds no text")
    return text


def split_text(text: str, fractions: tuple[float, float, float]) -> dict[str, str]:
    """Contiguous train / val / test pieces: the first ``floor(f_train * n)`` characters, then
    ``floor(f_val * n)``, then the rest."""
    n_train, n_val = math.floor(fractions[0] * len(text)), math.floor(fractions[1] * len(text))
    return {"train": text[:n_train], "val": text[n_train : n_train + n_val], "test": text[n_train + n_val :]}


class CharTextDataModule(TokenStreamDataModule):
    """A UTF-8 text file at character level (default: War and Peace, the char-rnn copy).

    The file is read as UTF-8; a leading BOM is removed and CRLF line ends become LF (so ``\\r`` is not a
    character of the vocabulary). It is split into contiguous train / val / test pieces (default 90/5/5 of the
    characters; the paper's split is unknown, ``docs/papers/entropy_sgd.md``, so this is our choice).
    The vocabulary is ``<unk>`` (id 0) followed by the training piece's distinct characters in code-point order;
    a character of the val or test piece that the training piece lacks maps to ``<unk>`` (counted in
    ``unknown_chars``). Batching: see :mod:`iclr17.datamodules.language_model`.

    Args:
        data_dir: the data root (default ``$ICLR17_DATA_DIR``, else ``./data``).
        path: the text file, relative to the data root (or absolute).
        split_fractions: train, val and test fractions of the characters (contiguous, in this order).
        strip_known_trailers: drop text known to be appended to a known file (our War and Peace copy has 8,046 bytes
            of unrelated text after the novel; see ``KNOWN_TRAILERS``); other files are read whole.
        batch_size: global number of training columns, divided over DDP processes.
        bptt: unrolled time steps (characters) per batch.
        eval_batch_size: global number of validation and test columns (None: ``batch_size``).
        batches_per_step: consecutive minibatches stacked into each training batch (``EntropySGD``: L + 1).
    """

    def __init__(
        self,
        data_dir: str | None = None,
        path: str = "war_and_peace/warpeace_input.txt",
        split_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
        strip_known_trailers: bool = True,
        batch_size: int = 50,
        bptt: int = 50,
        eval_batch_size: int | None = None,
        batches_per_step: int = 1,
    ) -> None:
        super().__init__(batch_size, bptt, eval_batch_size, batches_per_step)
        if len(split_fractions) != 3 or min(split_fractions) <= 0 or not math.isclose(sum(split_fractions), 1.0):
            raise ValueError(f"split_fractions must be three positive fractions summing to 1, got {split_fractions}")
        self.save_hyperparameters()
        self.path = Path(path) if os.path.isabs(path) else data_root(data_dir) / path
        self.unknown_chars: dict[str, int] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.tokens:
            return
        require_files([self.path], "CharTextDataModule", "Point `path` (relative to the data root) at a UTF-8 text.")
        pieces = split_text(read_text(self.path, self.hparams.strip_known_trailers), self.hparams.split_fractions)
        self.vocab = [UNK, *sorted(set(pieces["train"]))]
        index = {char: i for i, char in enumerate(self.vocab)}
        for split, piece in pieces.items():
            self.tokens[split] = torch.tensor([index.get(char, 0) for char in piece], dtype=torch.long)
            self.unknown_chars[split] = int((self.tokens[split] == 0).sum())
        self._check_sizes()
