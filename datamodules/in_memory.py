"""Shared base for datamodules whose splits are tensors held in memory."""

from __future__ import annotations

import math

import pytorch_lightning as pl
from torch.utils.data import DataLoader, TensorDataset


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


class InMemoryDataModule(pl.LightningDataModule):
    """Serves ``train_set``, ``val_set`` and ``test_set`` (set by a subclass's ``setup``) as dataloaders.

    ``batch_size`` is the *global* batch: under DDP each of the ``world_size`` processes loads
    ``batch_size / world_size`` samples, so a config means the same optimisation on 1 or N devices.
    ``batch_size=None`` is full-batch: the whole split in one step. ``predict`` serves the test split.

    ``batches_per_step=k`` makes each training batch ``k`` fresh minibatches of ``batch_size`` stacked along
    the first dimension (one loader batch of ``k * batch_size`` samples drawn without replacement; the
    epoch's short last batch is dropped), for optimizers that take several minibatches per step
    (``EntropySGD``: ``L + 1``). Evaluation splits are unaffected.

    Args:
        batch_size: global batch size, or None for full batch.
        num_workers: DataLoader worker processes.
        batches_per_step: minibatches stacked into each training batch.
    """

    def __init__(self, batch_size: int | None = 128, num_workers: int = 0, batches_per_step: int = 1) -> None:
        super().__init__()
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or None (full batch), got {batch_size}")
        if batches_per_step < 1:
            raise ValueError(f"batches_per_step must be a positive integer, got {batches_per_step}")
        self.batch_size = batch_size
        self.batches_per_step = batches_per_step
        self.num_workers = num_workers
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def per_device_batch_size(self, split_size: int) -> int:
        return per_device_batch_size(self.batch_size, self.trainer, split_size)

    def _loader(self, dataset: TensorDataset | None, split: str, shuffle: bool, stacked: int = 1) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}: the {split} split is not set up; call setup() first")
        return DataLoader(
            dataset,
            batch_size=self.per_device_batch_size(len(dataset)) * stacked,
            shuffle=shuffle,
            drop_last=stacked > 1,  # a short last batch would not hold k equal minibatches
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, "train", shuffle=True, stacked=self.batches_per_step)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, "val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test", shuffle=False)
