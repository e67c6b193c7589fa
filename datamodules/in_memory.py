"""Shared base for datamodules whose splits are tensors held in memory, and the loader every map-style split uses."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

TrainSampling = Literal["shuffle", "with_replacement"]


def per_device_batch_size(batch_size: int | None, trainer: pl.Trainer | None, split_size: int) -> int:
    """Each process's share of a global ``batch_size`` (None: the whole split, full batch)."""
    world_size = trainer.world_size if trainer is not None else 1
    if batch_size is None:
        return max(1, math.ceil(split_size / world_size))
    if batch_size % world_size:
        raise ValueError(
            f"batch_size={batch_size} is the global batch and must divide evenly over {world_size} processes"
        )
    return batch_size // world_size


def split_loader(
    datamodule: pl.LightningDataModule,
    split: str,
    dataset: Dataset | None,
    batch_size: int | None,
    num_workers: int,
    shuffle: bool = False,
    drop_last: bool = False,
    sampler: Sampler | None = None,
    collate_fn: Callable | None = None,
    stacked: int = 1,
) -> DataLoader:
    """The DataLoader of one split of ``datamodule``: each process loads its share of the global ``batch_size``
    (:func:`per_device_batch_size`) times ``stacked``; workers persist between epochs. Under DDP an evaluation
    split (any but ``"train"``) is dealt out without repeats (:func:`evaluation_sampler`).

    Raises:
        RuntimeError: naming the datamodule and the split, if ``dataset`` is None (``setup`` has not run).
    """
    if dataset is None:
        raise RuntimeError(f"{type(datamodule).__name__}: the {split} split is not set up; call setup() first")
    if split != "train" and sampler is None and not shuffle:
        sampler = evaluation_sampler(datamodule, split, dataset)
    return DataLoader(
        dataset,
        batch_size=per_device_batch_size(batch_size, datamodule.trainer, len(dataset)) * stacked,
        shuffle=shuffle,
        sampler=sampler,
        drop_last=drop_last,
        collate_fn=collate_fn,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


def evaluation_sampler(datamodule: pl.LightningDataModule, split: str, dataset: Dataset) -> Sampler | None:
    """Under DDP, this process's share of an evaluation split: examples ``rank, rank + world_size, ...``, so that
    every example is counted exactly once and the synchronised metrics equal one process's. (Lightning's own
    ``DistributedSampler`` pads the split to a multiple of the number of processes with repeated examples, which
    count twice.) The shares may differ by one example and one batch; evaluation steps make no collective calls.
    None in one process.

    Raises:
        ValueError: naming the split, if it has fewer examples than there are processes.
    """
    trainer = datamodule.trainer
    if trainer is None or trainer.world_size == 1:
        return None
    if len(dataset) < trainer.world_size:
        raise ValueError(
            f"{type(datamodule).__name__}: the {split} split has {len(dataset)} examples, fewer than the "
            f"{trainer.world_size} processes; every process needs at least one"
        )
    return UnrepeatedDistributedSampler(dataset, trainer.world_size, trainer.global_rank, shuffle=False)


class WithReplacementSampler(Sampler[int]):
    """``num_samples`` indices drawn independently and uniformly from ``range(dataset_size)`` each epoch (sampling
    with replacement, as the Entropy-SGD authors' Lua ``train.lua`` draws every minibatch).

    Each epoch draws one seed from the global torch RNG (as a shuffling ``RandomSampler`` does), so a seeded run
    repeats its draws. Not a ``RandomSampler`` on purpose: Lightning replaces a ``RandomSampler`` by a
    ``DistributedSampler`` (without replacement) under DDP, whereas it wraps this one, so each process gets its
    share of the same i.i.d. draws.

    Args:
        dataset_size: number of items to draw from.
        num_samples: indices per epoch.
    """

    def __init__(self, dataset_size: int, num_samples: int) -> None:
        if dataset_size < 1 or num_samples < 1:
            raise ValueError(f"dataset_size and num_samples must be positive; got {dataset_size}, {num_samples}")
        self.dataset_size, self.num_samples = dataset_size, num_samples

    def __iter__(self) -> Iterator[int]:
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        generator = torch.Generator().manual_seed(seed)
        yield from torch.randint(self.dataset_size, (self.num_samples,), generator=generator).tolist()

    def __len__(self) -> int:
        return self.num_samples


class InMemoryDataModule(pl.LightningDataModule):
    """Serves ``train_set``, ``val_set`` and ``test_set`` (set by a subclass's ``setup``) as dataloaders.

    ``batch_size`` is the *global* batch: under DDP each of the ``world_size`` processes loads
    ``batch_size / world_size`` samples, so a config means the same optimisation on 1 or N devices.
    ``batch_size=None`` is full-batch: the whole split in one step. ``predict`` serves the test split.

    ``batches_per_step=k`` makes each training batch ``k`` fresh minibatches of ``batch_size`` stacked along
    the first dimension (one loader batch of ``k * batch_size`` samples drawn without replacement; the
    epoch's short last batch is dropped), for optimizers that take several minibatches per step
    (``EntropySGD``: ``L + 1``). Evaluation splits are unaffected.

    ``train_sampling="with_replacement"`` draws every training sample independently and uniformly from the whole
    training split (:class:`WithReplacementSampler`); an epoch has as many steps as a pass without replacement,
    ``len(train_set) // (batch_size * batches_per_step)`` (468 minibatches of 128 from 60,000 images, the count of
    the Entropy-SGD authors' Lua ``train.lua``).

    Args:
        batch_size: global batch size, or None for full batch.
        num_workers: DataLoader worker processes.
        batches_per_step: minibatches stacked into each training batch.
        train_sampling: ``shuffle`` (each epoch a permutation of the training split) or ``with_replacement``
            (i.i.d. uniform draws; needs an integer ``batch_size``).
    """

    def __init__(
        self,
        batch_size: int | None = 128,
        num_workers: int = 0,
        batches_per_step: int = 1,
        train_sampling: TrainSampling = "shuffle",
    ) -> None:
        super().__init__()
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or None (full batch), got {batch_size}")
        if batches_per_step < 1:
            raise ValueError(f"batches_per_step must be a positive integer, got {batches_per_step}")
        if train_sampling not in ("shuffle", "with_replacement"):
            raise ValueError(f"train_sampling must be 'shuffle' or 'with_replacement', got {train_sampling!r}")
        if train_sampling == "with_replacement" and batch_size is None:
            raise ValueError("train_sampling='with_replacement' needs an integer batch_size, not None (full batch)")
        self.batch_size = batch_size
        self.batches_per_step = batches_per_step
        self.train_sampling = train_sampling
        self.num_workers = num_workers
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def train_dataloader(self) -> DataLoader:
        k = self.batches_per_step  # k > 1: the short last batch would not hold k equal minibatches, so it is dropped
        if self.train_sampling == "shuffle" or self.train_set is None:
            return split_loader(
                self, "train", self.train_set, self.batch_size, self.num_workers, True, k > 1, stacked=k
            )
        steps = len(self.train_set) // (self.batch_size * k)
        if steps < 1:
            raise ValueError(
                f"train_sampling='with_replacement': {len(self.train_set)} training samples make no step of "
                f"batch_size * batches_per_step = {self.batch_size * k}"
            )
        sampler = WithReplacementSampler(len(self.train_set), steps * self.batch_size * k)  # global: DDP splits it
        return split_loader(
            self, "train", self.train_set, self.batch_size, self.num_workers, sampler=sampler, stacked=k
        )

    def val_dataloader(self) -> DataLoader:
        return split_loader(self, "val", self.val_set, self.batch_size, self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return split_loader(self, "test", self.test_set, self.batch_size, self.num_workers)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
