"""``split_loader``, the one DataLoader recipe of the map-style datamodules (tensors, stories, image files)."""

from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

from iclr17.datamodules import BabiDataModule, GaussianMixtureDataModule, ImageFolderDataModule
from iclr17.datamodules.in_memory import split_loader


class _Owner:
    """Stands in for a datamodule: ``split_loader`` reads only its ``trainer`` (None outside a Trainer)."""

    def __init__(self, world_size: int | None = None, rank: int = 0) -> None:
        self.trainer = None if world_size is None else SimpleNamespace(world_size=world_size, global_rank=rank)


def test_under_ddp_an_evaluation_split_is_dealt_out_with_every_example_once():
    data = TensorDataset(torch.arange(11))
    shares = [
        [int(x) for (batch,) in split_loader(_Owner(3, rank), "val", data, 6, 0) for x in batch] for rank in range(3)
    ]
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]  # 11 examples, none repeated, none left out
    assert split_loader(_Owner(), "val", data, 6, 0).sampler.__class__.__name__ == "SequentialSampler"
    train_indices = list(split_loader(_Owner(3), "train", data, 6, 0).sampler)
    assert train_indices == list(range(11))  # training loaders are Lightning's to shard (DistributedSampler)
    with pytest.raises(ValueError, match="the test split has 2 examples, fewer than the 3 processes"):
        split_loader(_Owner(3), "test", TensorDataset(torch.arange(2)), 3, 0)


def test_each_process_loads_its_share_of_the_global_batch_times_the_stack():
    data = TensorDataset(torch.arange(24))
    assert split_loader(_Owner(), "train", data, 8, 0).batch_size == 8
    assert split_loader(_Owner(world_size=2), "train", data, 8, 0).batch_size == 4
    assert split_loader(_Owner(world_size=2), "train", data, None, 0).batch_size == 12  # full batch, split over 2
    loader = split_loader(_Owner(world_size=2), "train", data, 8, 0, drop_last=True, stacked=3)
    assert loader.batch_size == 12 and loader.drop_last and not loader.persistent_workers
    with pytest.raises(ValueError, match="divide evenly over 3"):
        split_loader(_Owner(world_size=3), "train", data, 8, 0)


@pytest.mark.parametrize(
    "datamodule",
    [
        GaussianMixtureDataModule(batch_size=10),
        BabiDataModule(data_dir="nowhere"),
        ImageFolderDataModule(data_dir="nowhere"),
    ],
    ids=["tensors", "stories", "image files"],
)
def test_a_loader_before_setup_names_the_datamodule_and_the_split(datamodule):
    with pytest.raises(RuntimeError, match=rf"{type(datamodule).__name__}: the val split is not set up"):
        datamodule.val_dataloader()
