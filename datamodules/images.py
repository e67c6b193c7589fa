"""Image-file datamodules for EBGAN's 64x64 runs: a generic image folder, CelebA (aligned) and LSUN.

Images are served as ``(image, 0)`` pairs, ``image`` a float tensor ``(C, H, W)`` in [-1, 1] (the range of a
tanh generator). Preprocessing: an optional centre crop of ``crop_size`` pixels (CelebA's face crop), a resize
of the shorter side to ``image_size``, and a centre crop to ``image_size`` x ``image_size`` (DCGAN practice;
``docs/papers/ebgan.md``). The training loader drops its last incomplete batch, so every batch has the full size (the
pulling-away term needs at least two samples).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .in_memory import split_loader
from .storage import DataFormatError, MissingDataError, data_root

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def image_transform(image_size: int, crop_size: int | None, channels: int) -> Callable[[Image.Image], Tensor]:
    """[centre crop ``crop_size``] -> resize shorter side to ``image_size`` -> centre crop -> [-1, 1] tensor."""
    steps = [v2.CenterCrop(crop_size)] if crop_size else []
    steps += [
        v2.Resize(image_size, antialias=True),
        v2.CenterCrop(image_size),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize([0.5] * channels, [0.5] * channels),
    ]
    return v2.Compose(steps)


class ImageFiles(Dataset):
    """``(transform(image), 0)`` for each file, read with PIL and converted to RGB (3 channels) or L (1)."""

    def __init__(self, files: list[Path], transform: Callable[[Image.Image], Tensor], channels: int) -> None:
        self.files, self.transform, self.mode = files, transform, "RGB" if channels == 3 else "L"

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path = self.files[index]
        try:
            with Image.open(path) as image:
                return self.transform(image.convert(self.mode)), 0
        except OSError as err:
            raise DataFormatError(f"{path}: not a readable image ({err})") from err


def find_images(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (recursively), sorted by path."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class ImageFilesDataModule(pl.LightningDataModule):
    """Base: subclasses set ``self.splits`` (split name -> list of files) in ``setup``.

    Args:
        data_dir: the data root (default ``$ICLR17_DATA_DIR``, else ``./data``).
        image_size: side of the square images served.
        crop_size: centre crop applied before resizing (None: none).
        channels: 3 (RGB) or 1 (grayscale).
        batch_size: global batch size (divided over DDP processes).
        num_workers: DataLoader worker processes (decoding JPEG/WebP is the cost; use several for real runs).
    """

    def __init__(
        self,
        data_dir: str | None = None,
        image_size: int = 64,
        crop_size: int | None = None,
        channels: Literal[1, 3] = 3,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if image_size < 1 or batch_size < 1:
            raise ValueError(f"image_size and batch_size must be positive; got {image_size}, {batch_size}")
        self.root = data_root(data_dir)
        self.image_size, self.crop_size, self.channels = image_size, crop_size, channels
        self.batch_size, self.num_workers = batch_size, num_workers
        self.splits: dict[str, list[Path]] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = None
        if self.splits is not None:
            transform = image_transform(self.image_size, self.crop_size, self.channels)
            dataset = ImageFiles(self.splits[split], transform, self.channels)
        return split_loader(self, split, dataset, self.batch_size, self.num_workers, shuffle=train, drop_last=train)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


class ImageFolderDataModule(ImageFilesDataModule):
    """Every image under ``<data root>/<folder>`` (recursively: .jpg, .jpeg, .png, .webp, .bmp), with a seeded
    validation split of ``val_size`` images; the test split is the validation split.

    Args:
        folder: the image folder, relative to the data root (or absolute).
        val_size: images held out for validation (at least 1).
        seed: seeds the split.
        data_dir: the data root (default ``$ICLR17_DATA_DIR``, else ``./data``).
        image_size: side of the square images served.
        crop_size: centre crop applied before resizing (None: none).
        channels: 3 (RGB) or 1 (grayscale).
        batch_size: global batch size (divided over DDP processes).
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        folder: str = "images",
        val_size: int = 100,
        seed: int = 0,
        data_dir: str | None = None,
        image_size: int = 64,
        crop_size: int | None = None,
        channels: Literal[1, 3] = 3,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(data_dir, image_size, crop_size, channels, batch_size, num_workers)
        self.folder, self.val_size, self.seed = self.root / folder, val_size, seed

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        if not self.folder.is_dir():
            raise MissingDataError(f"image folder {self.folder} does not exist; set `folder` or `data_dir`")
        files = find_images(self.folder)
        if len(files) <= self.val_size:
            raise DataFormatError(f"{self.folder}: {len(files)} images, need more than val_size={self.val_size}")
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(self.seed)).tolist()
        val = [files[i] for i in order[: self.val_size]]
        self.splits = {"train": [files[i] for i in order[self.val_size :]], "val": val, "test": val}


class CelebADataModule(ImageFilesDataModule):
    """CelebA, aligned and cropped version, in torchvision's layout: ``<data root>/celeba/img_align_celeba/
    000001.jpg ... 202599.jpg`` (178x218 JPEG) and ``<data root>/celeba/list_eval_partition.txt`` (lines
    ``<file> <0|1|2>``: train, validation, test). Faces are centre-cropped to ``crop_size`` and resized to
    ``image_size`` (the EBGAN paper's 64x64 CelebA, section 4.3; the 108-pixel crop is DCGAN-era practice, recalled).
    CelebA's terms forbid redistribution: get it from the authors' page.

    Args:
        data_dir: the data root (default ``$ICLR17_DATA_DIR``, else ``./data``).
        image_size: side of the square images served.
        crop_size: centre crop before resizing (178 keeps the whole width; None: none).
        channels: 3 (RGB) or 1 (grayscale).
        batch_size: global batch size (divided over DDP processes).
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        image_size: int = 64,
        crop_size: int | None = 108,
        channels: Literal[1, 3] = 3,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(data_dir, image_size, crop_size, channels, batch_size, num_workers)
        self.folder = self.root / "celeba"

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        partition, images = self.folder / "list_eval_partition.txt", self.folder / "img_align_celeba"
        if not partition.is_file() or not images.is_dir():
            raise MissingDataError(
                f"CelebA: expected {partition} and the folder {images}/ (the aligned-and-cropped JPEGs); "
                "set `data_dir` (or $ICLR17_DATA_DIR) to the data root holding celeba/"
            )
        splits: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
        names = {"0": "train", "1": "val", "2": "test"}
        for line_number, line in enumerate(partition.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2 or fields[1] not in names or not re.fullmatch(r"\d{6}\.jpg", fields[0]):
                raise DataFormatError(f"{partition}:{line_number}: expected '<NNNNNN>.jpg <0|1|2>', got {line!r}")
            splits[names[fields[1]]].append(images / fields[0])
        missing = [str(p) for files in splits.values() for p in files if not p.is_file()]
        if missing:
            raise MissingDataError(f"CelebA: {len(missing)} image(s) listed in {partition} are missing: {missing[:3]}")
        self.splits = splits


class LSUNDataModule(ImageFilesDataModule):
    """LSUN scenes (bedroom for the paper, section 4.3) as *exported images*, not LMDB.

    The official LMDB (``bedroom_train_lmdb/``) needs the ``lmdb`` package, which this project does not depend
    on; export it once with the LSUN tools (github.com/fyu/lsun: ``python data.py export bedroom_train_lmdb
    --out_dir <data root>/lsun/bedroom_train``), which writes each image as ``<key>.webp`` in nested folders named
    by the first six characters of its key. Layout read here: ``<data root>/lsun/<category>_train/**/*.webp`` and
    ``<data root>/lsun/<category>_val/**/*.webp`` (the 300-image official validation set, also the test split).
    Images are resized on the shorter side and centre-cropped to ``image_size``.

    Args:
        category: the LSUN scene category.
        data_dir: the data root (default ``$ICLR17_DATA_DIR``, else ``./data``).
        image_size: side of the square images served.
        crop_size: centre crop before resizing (None: none, the usual choice for LSUN).
        channels: 3 (RGB) or 1 (grayscale).
        batch_size: global batch size (divided over DDP processes).
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        category: str = "bedroom",
        data_dir: str | None = None,
        image_size: int = 64,
        crop_size: int | None = None,
        channels: Literal[1, 3] = 3,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(data_dir, image_size, crop_size, channels, batch_size, num_workers)
        self.category = category
        self.folder = self.root / "lsun"

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        splits = {}
        for split in ("train", "val"):
            folder = self.folder / f"{self.category}_{split}"
            if not folder.is_dir():
                lmdb = self.folder / f"{self.category}_{split}_lmdb"
                hint = f" Found the LMDB {lmdb}: export it with fyu/lsun's data.py export." if lmdb.exists() else ""
                raise MissingDataError(f"LSUN: expected exported images in {folder}/.{hint}")
            splits[split] = find_images(folder)
            if not splits[split]:
                raise DataFormatError(f"LSUN: no images under {folder}/")
        splits["test"] = splits["val"]
        self.splits = splits
