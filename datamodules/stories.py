"""Encoding, batching and loading shared by the story datamodules (bAbI, the world model): stories of
sentences, a question and a one-word answer, all as word ids with 0 for padding."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler

from .babi_format import BabiExample
from .in_memory import split_loader

if TYPE_CHECKING:
    import pyarrow as pa


PAD, UNK = "<pad>", "<unk>"


def build_vocabulary(examples: list[BabiExample]) -> list[str]:
    """``<pad>`` (id 0), ``<unk>`` (id 1), then every story, question and answer word, sorted."""
    words = set()
    for example in examples:
        words.update(w for sentence in example.story for w in sentence)
        words.update(example.query)
        words.add(example.answer)
    return [PAD, UNK, *sorted(words - {PAD, UNK})]


def encode(
    examples: list[BabiExample],
    index: dict[str, int],
    horizon: int,
    sentence_length: int,
    query_length: int,
    task: int,
) -> tuple[dict[str, list], int]:
    """Encode examples as flat id lists, every sentence padded (or cut) to ``sentence_length`` words.

    Keeps the last ``horizon`` statements. Returns the columns ``story`` (``n_sentences * sentence_length``
    ids), ``query`` (``query_length`` ids), ``answer``, ``task``, and the number of words that were not in
    the vocabulary (mapped to ``<unk>``).
    """
    unknown = 0
    unk = index[UNK]

    def ids(words: tuple[str, ...], length: int) -> list[int]:
        nonlocal unknown
        unknown += sum(1 for w in words if w not in index)
        out = [index.get(w, unk) for w in words[:length]]
        return out + [0] * (length - len(out))

    columns: dict[str, list] = {"story": [], "query": [], "answer": [], "task": []}
    for example in examples:
        columns["story"].append([i for s in example.story[-horizon:] for i in ids(s, sentence_length)])
        columns["query"].append(ids(example.query, query_length))
        columns["answer"].append(ids((example.answer,), 1)[0])
        columns["task"].append(task)
    return columns, unknown


class EncodedStories(Dataset):
    """One encoded split, read column-wise from Arrow without a per-example Python loop.

    Items are ``story`` ``(n_sentences, sentence_length)``, the question ``query`` and every other column
    of the table (``answer``, ``task``, and e.g. CBT's ``candidates``), as tensors.
    """

    def __init__(self, table: pa.Table, sentence_length: int) -> None:
        import pyarrow as pa

        stories = table.column("story").combine_chunks()
        self.tokens = _to_tensor(stories.values, torch.int32)  # int32 halves memory; batches are int64
        self.offsets = _to_tensor(stories.offsets, torch.int64)
        self.columns = {}
        for name in table.column_names:
            column = table.column(name).combine_chunks()
            if name == "story":
                continue
            if pa.types.is_list(column.type):  # a fixed-length list per example
                self.columns[name] = _to_tensor(column.values, torch.int64).view(len(table), -1)
            else:
                self.columns[name] = _to_tensor(column, torch.int64)
        self.sentence_length = sentence_length

    @property
    def tasks(self) -> Tensor:
        return self.columns["task"]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        story = self.tokens[self.offsets[i] : self.offsets[i + 1]].view(-1, self.sentence_length)
        return {"story": story, **{name: column[i] for name, column in self.columns.items()}}


def _to_tensor(arrow_array, dtype: torch.dtype) -> Tensor:
    return torch.tensor(arrow_array.to_numpy(), dtype=dtype)


def pad_batch(rows: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack a batch, padding stories with empty sentences to the longest story: ``(B, T_max, L)``."""
    t_max = max(len(r["story"]) for r in rows)
    story = torch.zeros(len(rows), t_max, rows[0]["story"].shape[1], dtype=torch.long)
    for i, row in enumerate(rows):
        story[i, : len(row["story"])] = row["story"]
    return {"story": story, **{key: torch.stack([r[key] for r in rows]) for key in rows[0] if key != "story"}}


class StoryDataModule(pl.LightningDataModule):
    """Serves ``self.splits`` (``train``, ``val``, ``test``: :class:`EncodedStories`, set by ``setup``) in
    padded batches, with ``vocab``, ``sentence_length`` and ``query_length`` for the model.

    ``batch_size`` is the global batch (divided over DDP processes). ``epoch_sampling="official"`` draws
    floor(train / batch) batches with replacement each epoch (the EntNet authors' code);
    ``permutation`` is one pass over the shuffled training set.
    """

    def __init__(
        self,
        batch_size: int,
        epoch_sampling: Literal["official", "permutation"],
        num_workers: int,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size, self.epoch_sampling, self.num_workers = batch_size, epoch_sampling, num_workers
        self.vocab: list[str] = []
        self.unknown_words: dict[str, int] = {}
        self.sentence_length = self.query_length = 0
        self.splits: dict[str, EncodedStories] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _loader(
        self, split: str, shuffle: bool = False, drop_last: bool = False, sampler: RandomSampler | None = None
    ) -> DataLoader:
        dataset, workers = self.splits.get(split), self.num_workers
        return split_loader(self, split, dataset, self.batch_size, workers, shuffle, drop_last, sampler, pad_batch)

    def train_dataloader(self) -> DataLoader:
        train = self.splits["train"]
        if self.epoch_sampling == "permutation":
            return self._loader("train", shuffle=True)
        n_batches = math.floor(len(train) / self.batch_size)
        if n_batches == 0:
            raise ValueError(
                f"epoch_sampling='official' draws whole batches: {len(train)} training examples are fewer than "
                f"batch_size={self.batch_size}; lower batch_size or use epoch_sampling='permutation'"
            )
        sampler = RandomSampler(train, replacement=True, num_samples=n_batches * self.batch_size)
        return self._loader("train", sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
