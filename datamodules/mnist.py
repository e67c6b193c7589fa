"""MNIST from the official idx .gz files at ``<data root>/mnist/MNIST/raw/*.gz`` (torchvision's layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import TensorDataset

from .idx import read_idx_gz
from .in_memory import InMemoryDataModule, TrainSampling
from .storage import DataFormatError, data_root, download, require_files

MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {  # name -> SHA-256 of the official file (torchvision's md5s match these files too)
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

Normalization = Literal["none", "unit", "standard", "tanh", "lua"]
ValSource = Literal["train_split", "test"]


def load_mnist_split(raw_dir: Path, split: Literal["train", "t10k"]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 ``(N, 28, 28)`` and labels as int64 ``(N,)``, checked against each other."""
    images_path = raw_dir / f"{split}-images-idx3-ubyte.gz"
    labels_path = raw_dir / f"{split}-labels-idx1-ubyte.gz"
    images, labels = read_idx_gz(images_path), read_idx_gz(labels_path)
    if images.dtype != torch.uint8 or images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        raise DataFormatError(f"{images_path}: expected uint8 images of shape (N, 28, 28), got {images.shape}")
    if labels.dim() != 1 or len(labels) != len(images):
        raise DataFormatError(f"{labels_path}: expected {len(images)} labels, got shape {tuple(labels.shape)}")
    if labels.max() > 9:
        raise DataFormatError(f"{labels_path}: labels must be 0-9, found {int(labels.max())}")
    return images, labels.long()


def download_mnist(raw_dir: Path) -> None:
    """Fetch the four official idx files into ``raw_dir`` (each checked against its SHA-256; present files kept)."""
    for name, sha256 in MNIST_FILES.items():
        download(MNIST_MIRROR + name, raw_dir / name, sha256)


def load_mnist(raw_dir: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(train images, train labels, test images, test labels)`` from the official files in ``raw_dir``; a
    missing file is an error that names it and says how to get them."""
    require_files(
        [raw_dir / name for name in MNIST_FILES],
        "MNIST",
        "They are the four official idx .gz files, in <data root>/mnist/MNIST/raw/; "
        "pass download=true (--data.download=true) to fetch them.",
    )
    return *load_mnist_split(raw_dir, "train"), *load_mnist_split(raw_dir, "t10k")


def normalize(unit_images: torch.Tensor, normalization: Normalization, mean: float, std: float) -> torch.Tensor:
    """Map images in [0, 1] to the requested scale.

    ``none``: raw 0-255 floats (what the Entropy-SGD port fed its nets); ``unit``: [0, 1];
    ``standard``: ``(x - mean) / std`` with the training split's pixel statistics; ``tanh``: [-1, 1];
    ``lua``: ``(x - 126) / 126`` on the 0-255 scale, about [-1, 1.02] (the Entropy-SGD authors' Lua ``utils.lua``).
    """
    if normalization == "none":
        return unit_images * 255.0
    if normalization == "unit":
        return unit_images
    if normalization == "standard":
        return (unit_images - mean) / std
    if normalization == "tanh":
        return unit_images * 2.0 - 1.0
    if normalization == "lua":
        return (unit_images * 255.0 - 126.0) / 126.0
    raise ValueError(f"normalization must be one of none, unit, standard, tanh, lua; got {normalization!r}")


class MNISTDataModule(InMemoryDataModule):
    """MNIST with a seeded train/val split, five normalisations, and a random-inputs variant.

    The validation split is ``val_size`` images drawn (seeded) from the 60,000 training images; the test
    split is the official 10,000. ``val_source="test"`` instead trains on all 60,000 training images and
    VALIDATES ON THE TEST IMAGES (the validation split is the test split), as the Entropy-SGD authors' code did
    (arXiv:1611.01838; ``docs/papers/entropy_sgd.md``): numbers selected on that validation set are not clean
    test numbers. ``inputs="random"`` replaces every image by i.i.d. Gaussian pixels with the
    mean and standard deviation of the training split's pixels and keeps the real labels (the random-input
    ensemble of the halting-time paper; the noise law is our documented assumption, see
    ``docs/papers/halting_time.md``). Nothing is written to ``data_dir`` unless ``download=True``.

    Args:
        data_dir: the data root, holding ``mnist/MNIST/raw/*.gz`` (so torchvision's ``root`` is
            ``<data_dir>/mnist``); default ``$ICLR17_DATA_DIR`` else ``./data``.
        batch_size: global batch size (divided over DDP processes), or None for full batch.
        val_size: number of training images held out for validation (at least 1; unused with
            ``val_source="test"``).
        val_source: ``train_split`` (validate on ``val_size`` held-out training images) or ``test`` (train on
            all 60,000 training images and validate on the 10,000 test images, the authors' setup).
        normalization: ``none`` (0-255), ``unit`` ([0, 1]), ``standard`` (z-score), ``tanh`` ([-1, 1]),
            ``lua`` (``(x - 126) / 126`` on the 0-255 scale, the Entropy-SGD authors' Lua code).
        flatten: serve images as 784-vectors instead of ``(1, 28, 28)``.
        subset_size: keep only this many training images (after the validation split), or None for all.
        inputs: ``mnist`` for the real images, ``random`` for the noise variant.
        seed: seeds the split, the subset and the noise; independent of the training seed.
        num_workers: DataLoader worker processes.
        batches_per_step: fresh minibatches stacked into each training batch (``EntropySGD`` takes L + 1).
        train_sampling: ``shuffle`` (a permutation each epoch) or ``with_replacement`` (i.i.d. uniform draws,
            ``len(train) // batch_size`` minibatches an epoch: 468 of 128 from 60,000, the authors' Lua code).
        download: fetch missing files from the torchvision mirror into ``data_dir`` (checksum-verified).
    """

    num_classes = 10

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int | None = 128,
        val_size: int = 10_000,
        normalization: Normalization = "unit",
        flatten: bool = False,
        subset_size: int | None = None,
        inputs: Literal["mnist", "random"] = "mnist",
        seed: int = 0,
        num_workers: int = 0,
        download: bool = False,
        batches_per_step: int = 1,
        val_source: ValSource = "train_split",
        train_sampling: TrainSampling = "shuffle",
    ) -> None:
        super().__init__(batch_size, num_workers, batches_per_step, train_sampling)
        if normalization not in ("none", "unit", "standard", "tanh", "lua"):
            raise ValueError(f"normalization must be one of none, unit, standard, tanh, lua; got {normalization!r}")
        if val_source not in ("train_split", "test"):
            raise ValueError(f"val_source must be 'train_split' or 'test', got {val_source!r}")
        if not 1 <= val_size < 60_000:
            raise ValueError(f"val_size must be between 1 and 59,999, got {val_size}")
        if subset_size is not None and subset_size < 1:
            raise ValueError(f"subset_size must be a positive integer or None, got {subset_size}")
        self.save_hyperparameters()
        self.raw_dir = data_root(data_dir) / "mnist" / "MNIST" / "raw"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (784,) if self.hparams.flatten else (1, 28, 28)

    def prepare_data(self) -> None:
        if self.hparams.download:
            download_mnist(self.raw_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        hp = self.hparams
        train_images, train_labels, test_images, test_labels = load_mnist(self.raw_dir)
        if hp.val_source == "train_split" and hp.val_size >= len(train_images):
            raise ValueError(f"val_size={hp.val_size} leaves no training images out of {len(train_images)}")

        generator = torch.Generator().manual_seed(hp.seed)
        order = torch.randperm(len(train_images), generator=generator)
        held_out = hp.val_size if hp.val_source == "train_split" else 0
        val_idx, train_idx = order[:held_out], order[held_out:]
        if hp.subset_size is not None:
            train_idx = train_idx[: hp.subset_size]

        splits = {"train": (train_images[train_idx], train_labels[train_idx])}
        if held_out:
            splits["val"] = (train_images[val_idx], train_labels[val_idx])
        splits["test"] = (test_images, test_labels)  # (this order: the random inputs' draws depend on it)
        unit = {name: images.float().div_(255.0) for name, (images, _) in splits.items()}
        mean, std = unit["train"].mean().item(), unit["train"].std().item()
        if hp.inputs == "random":
            unit = {name: torch.randn(x.shape, generator=generator) * std + mean for name, x in unit.items()}

        datasets = {}
        for name, (_, labels) in splits.items():
            images = normalize(unit[name], hp.normalization, mean, std)
            images = images.reshape(len(images), *self.input_shape)
            datasets[name] = TensorDataset(images, labels)
        self.train_set, self.test_set = datasets["train"], datasets["test"]
        self.val_set = datasets["val"] if held_out else self.test_set  # val_source="test": the test images
