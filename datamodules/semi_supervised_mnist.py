"""Semi-supervised permutation-invariant MNIST: a seeded, class-balanced labelled subset of the training images,
all of them as unlabelled data, and training batches that pair labelled with unlabelled examples (the Ladder
Network recipe of Rasmus et al., arXiv:1507.02672 section 4.1, and the authors' CuriousAI/ladder ``run.py``;
EBGAN-LN, arXiv:1609.03126 section 4.2, Table 2)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from .in_memory import per_device_batch_size, split_loader
from .mnist import download_mnist, load_mnist
from .storage import data_root

Validation = Literal["none", "train_split"]
NUM_CLASSES = 10


def balanced_labelled_subset(labels: Tensor, num_labelled: int, order: Tensor) -> Tensor:
    """Indices of ``num_labelled / 10`` examples of each class: the first of each class in ``order`` (a seeded
    permutation of the candidates), as the authors' ``make_datastream(balanced_classes=True)``."""
    per_class = num_labelled // NUM_CLASSES
    chosen = []
    for label in range(NUM_CLASSES):
        of_class = order[labels[order] == label]
        if len(of_class) < per_class:
            raise ValueError(
                f"num_labelled={num_labelled} needs {per_class} examples of class {label}, the training images have "
                f"{len(of_class)}"
            )
        chosen.append(of_class[:per_class])
    return torch.cat(chosen)


class PairedExamples(Dataset):
    """Item ``k`` pairs the unlabelled image ``u = k mod n_u`` with the labelled example ``(u + k // n_u) mod n_l``:
    ``(x_labelled, y_labelled, x_unlabelled)``. Every pair is some ``k`` (:func:`pair_index`), so a sampler picks
    the pairing; the first ``n_u`` items, the dataset's length, pair every unlabelled image once with the labelled
    examples in turn (a full pass for measurement callbacks). The unlabelled images carry no labels."""

    def __init__(self, labelled_images: Tensor, labels: Tensor, unlabelled_images: Tensor) -> None:
        self.labelled_images, self.labels, self.unlabelled_images = labelled_images, labels, unlabelled_images

    def __len__(self) -> int:
        return len(self.unlabelled_images)

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor, Tensor]:
        n_unlabelled = len(self.unlabelled_images)
        unlabelled, shift = k % n_unlabelled, k // n_unlabelled
        labelled = (unlabelled + shift) % len(self.labels)
        return self.labelled_images[labelled], self.labels[labelled], self.unlabelled_images[unlabelled]


def pair_index(labelled: Tensor, unlabelled: Tensor, num_labelled: int, num_unlabelled: int) -> Tensor:
    """The items of :class:`PairedExamples` that pair ``labelled[i]`` with ``unlabelled[i]``."""
    return unlabelled + num_unlabelled * ((labelled - unlabelled) % num_labelled)


class PairedSampler(Sampler[int]):
    """One epoch = one pass over the unlabelled examples in a fresh order, each paired with the next labelled
    example of one permutation of the labelled set repeated as often as needed, so that consecutive batches of
    ``batch_size`` pair ``batch_size`` unlabelled with ``batch_size`` labelled examples (the authors'
    ``SemiDataStream``: the labelled stream cycled until the unlabelled one is spent). Yields items of
    :class:`PairedExamples`.

    The orders depend only on ``seed`` and the epoch (``set_epoch``, which Lightning calls), so a run resumed
    at an epoch boundary sees the batches an uninterrupted run sees.
    """

    def __init__(self, num_labelled: int, num_unlabelled: int, seed: int) -> None:
        self.num_labelled, self.num_unlabelled, self.seed, self.epoch = num_labelled, num_unlabelled, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_unlabelled

    def __iter__(self) -> Iterator[int]:
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)[0] % 2**63)
        generator = torch.Generator().manual_seed(seed)
        unlabelled = torch.randperm(self.num_unlabelled, generator=generator)
        labelled = torch.randperm(self.num_labelled, generator=generator)
        labelled = labelled.repeat(-(-self.num_unlabelled // self.num_labelled))[: self.num_unlabelled]
        yield from pair_index(labelled, unlabelled, self.num_labelled, self.num_unlabelled).tolist()


class InOrderShares(DistributedSamplerWrapper):
    """Process ``rank``'s share of ``sampler``'s epoch under DDP: its items ``rank, rank + num_replicas, ...`` in
    order (Lightning's ``DistributedSamplerWrapper`` without the shuffle Lightning itself would give a training
    sampler), so that the processes' k-th batches together are the one-process k-th batch. When ``num_replicas``
    does not divide the epoch, the first items are dealt again to even the shares (``DistributedSampler``'s
    padding). ``set_epoch`` reaches ``sampler`` (lightning-fabric's wrapper passes it on only from 2.6.1)."""

    def __init__(self, sampler: PairedSampler, num_replicas: int, rank: int) -> None:
        super().__init__(sampler, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.paired = sampler

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.paired.set_epoch(epoch)


class SemiSupervisedMNISTDataModule(pl.LightningDataModule):
    """MNIST with ``num_labelled`` labelled training images (exactly ``num_labelled / 10`` of each class) and every
    training image as unlabelled data, flattened to 784 pixels in [0, 1].

    Training batches are ``(x_labelled, y_labelled, x_unlabelled)`` of ``batch_size`` each (:class:`PairedSampler`;
    600 batches an epoch from 60,000 images at 100). The labelled subset is drawn from a permutation seeded by
    ``seed``: the same seed gives the same subset (and the same batches), so a Ladder Network and an EBGAN-LN run
    with one seed train on one subset.

    ``batch_size`` is the global batch (``N`` processes must divide it). Under DDP each process loads
    ``batch_size / N`` pairs, process ``r`` the items ``r, r + N, ...`` of the epoch's order
    (:class:`InOrderShares`), so the processes' k-th batches together are the one-process k-th batch (when ``N``
    does not divide the number of training images, the last batch also repeats the epoch's first pairs). A
    training batch of one example on any process is an error: batch normalisation needs two.

    ``validation="none"`` is the paper-number setting of Table 2 (arXiv:1609.03126) and of the Ladder Network
    authors (``--unlabeled-samples 60000``): all 60,000 training images are used and there is no validation
    split, so model selection cannot be honest; report the last epoch's ``test/error``.
    ``validation="train_split"`` holds ``val_size`` training images out of both the labelled and the unlabelled
    data and validates on them (``val/error``), for honest model selection.
    The test split is the official 10,000 images.

    Args:
        data_dir: the data root, holding ``mnist/MNIST/raw/*.gz`` (default ``$ICLR17_DATA_DIR`` else ``./data``).
        num_labelled: labelled training images, a multiple of 10 (100, 200, 1000 in Table 2).
        batch_size: labelled and unlabelled examples per training batch (100 + 100 in the authors' recipe), over
            all processes; also the evaluation batch size.
        validation: ``none`` (the paper's setting) or ``train_split``.
        val_size: held-out training images with ``validation="train_split"``.
        seed: seeds the split, the labelled subset and the batch orders (independent of the training seed).
        num_workers: DataLoader worker processes.
        download: fetch missing files from the torchvision mirror into ``data_dir`` (checksum-verified).
    """

    num_classes = NUM_CLASSES

    def __init__(
        self,
        data_dir: str | None = None,
        num_labelled: int = 100,
        batch_size: int = 100,
        validation: Validation = "none",
        val_size: int = 10_000,
        seed: int = 0,
        num_workers: int = 0,
        download: bool = False,
    ) -> None:
        super().__init__()
        if num_labelled < NUM_CLASSES or num_labelled % NUM_CLASSES:
            raise ValueError(f"num_labelled must be a positive multiple of {NUM_CLASSES}, got {num_labelled}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 (batch normalisation), got {batch_size}")
        if validation not in ("none", "train_split"):
            raise ValueError(f"validation must be 'none' or 'train_split', got {validation!r}")
        if not 1 <= val_size < 60_000:
            raise ValueError(f"val_size must be between 1 and 59,999, got {val_size}")
        self.save_hyperparameters()
        self.raw_dir = data_root(data_dir) / "mnist" / "MNIST" / "raw"
        self.train_set: PairedExamples | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None
        self.sampler: PairedSampler | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (784,)

    def prepare_data(self) -> None:
        if self.hparams.download:
            download_mnist(self.raw_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        hp = self.hparams
        images, labels, test_images, test_labels = load_mnist(self.raw_dir)
        held_out = hp.val_size if hp.validation == "train_split" else 0
        if held_out >= len(images):
            raise ValueError(f"val_size={hp.val_size} leaves no training images out of {len(images)}")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(hp.seed))
        val_idx, train_idx = order[:held_out], order[held_out:]
        labelled_idx = balanced_labelled_subset(labels, hp.num_labelled, train_idx)
        pixels = images.reshape(len(images), 784).float().div_(255.0)
        self.train_set = PairedExamples(pixels[labelled_idx], labels[labelled_idx], pixels[train_idx])
        self.sampler = PairedSampler(len(labelled_idx), len(train_idx), hp.seed)
        if held_out:
            self.val_set = TensorDataset(pixels[val_idx], labels[val_idx])
        self.test_set = TensorDataset(test_images.reshape(-1, 784).float().div_(255.0), test_labels)

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise RuntimeError(f"{type(self).__name__}: the train split is not set up; call setup() first")
        world_size = self.trainer.world_size if self.trainer is not None else 1
        batch_size = per_device_batch_size(self.hparams.batch_size, self.trainer, len(self.train_set))
        per_process = -(-len(self.train_set) // world_size)
        smallest = per_process % batch_size or batch_size  # the last batch of each process
        if smallest < 2:
            raise ValueError(
                f"{len(self.train_set)} training images in batches of {self.hparams.batch_size} over {world_size} "
                f"process(es) leave a batch of {smallest} on a process; batch normalisation needs at least 2 (change "
                "batch_size or val_size)"
            )
        sampler = self.sampler if world_size == 1 else InOrderShares(self.sampler, world_size, self.trainer.global_rank)
        return DataLoader(
            self.train_set,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.hparams.validation == "none":
            return []  # the paper's setting: no validation split
        return split_loader(self, "val", self.val_set, self.hparams.batch_size, self.hparams.num_workers)

    def test_dataloader(self) -> DataLoader:
        return split_loader(self, "test", self.test_set, self.hparams.batch_size, self.hparams.num_workers)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
