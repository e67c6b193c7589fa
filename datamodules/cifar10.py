"""CIFAR-10 from the official Python pickles at ``<data root>/cifar10/cifar-10-batches-py/`` (torchvision's layout).

Preprocessed the Entropy-SGD / All-CNN way (arXiv:1611.01838 section 5): global contrast
normalisation per image, then ZCA whitening fitted on the training split only (see
:mod:`.cifar10_functional` for the constants and where they come from). The whitening statistics are
computed once and kept in the cache root, keyed by the files' checksums and every option that changes them.
"""

from __future__ import annotations

import codecs
import os
import pickle
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from iclr17.functional.preprocessing import global_contrast_normalize, zca_apply, zca_fit

from .in_memory import InMemoryDataModule
from .storage import (
    DataFormatError,
    atomic_publish,
    cache_entry,
    data_root,
    download,
    extract_archive,
    require_files,
)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# SHA-256 of the official archive (also Keras's file_hash); torchvision checks its MD5, c58f30108f718f92721af3b95e74349a
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
FILES = [*TRAIN_FILES, "test_batch", "batches.meta"]
_CACHE_VERSION = 1

Preprocessing = Literal["none", "standard", "gcn_zca"]

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_ALLOWED_GLOBALS = {  # everything a CIFAR-10 batch pickle may name; anything else is refused, not executed
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes in pickles written by Python 3 at protocol 2
}


class _BatchUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path) -> None:
        super().__init__(file, encoding="latin1")  # Python 2 str -> str; numpy's raw bytes survive latin1
        self.path = path

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataFormatError(f"{self.path}: refusing to load {module}.{name}; a CIFAR-10 batch holds only numpy")
        return _ALLOWED_GLOBALS[module, name]


def read_pickle(path: Path) -> dict:
    """One batch or meta file as a dict with ``str`` keys (Python 2 byte-string keys decoded as latin1)."""
    try:
        with open(path, "rb") as f:
            entry = _BatchUnpickler(f, path).load()
    except DataFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise DataFormatError(f"{path}: not a readable CIFAR-10 pickle (truncated or corrupt?): {err!r}") from err
    if not isinstance(entry, dict):
        raise DataFormatError(f"{path}: expected a pickled dict, got {type(entry).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def load_batch(path: Path) -> tuple[Tensor, Tensor]:
    """Images as uint8 ``(N, 3, 32, 32)`` and labels as int64 ``(N,)``: pixel (c, i, j) is
    ``data[c * 1024 + i * 32 + j]``, so a row-major reshape of the ``(N, 3072)`` array is exact."""
    entry = read_pickle(path)
    for key in ("data", "labels"):
        if key not in entry:
            raise DataFormatError(f"{path}: missing key {key!r}; found {sorted(entry)}")
    data, labels = entry["data"], np.asarray(entry["labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataFormatError(f"{path}: key 'data' must be a uint8 array of shape (N, 3072), got {shape}")
    if labels.shape != (len(data),):
        raise DataFormatError(f"{path}: key 'labels' must hold {len(data)} labels, got shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataFormatError(f"{path}: labels must be 0-9, found {labels.min()}..{labels.max()}")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels.astype(np.int64))


def load_label_names(path: Path) -> list[str]:
    names = read_pickle(path).get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DataFormatError(f"{path}: key 'label_names' must be a list of the 10 class names, got {names!r}")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


class CIFAR10DataModule(InMemoryDataModule):
    """CIFAR-10 with a seeded train/val split and the Entropy-SGD preprocessing (GCN then ZCA); no augmentation.

    The validation split is ``val_size`` images drawn (seeded) from the 50,000 training images (the authors
    validated on the test set; ``docs/papers/entropy_sgd.md``); the test split is the official 10,000.
    Preprocessing (the authors' ``process_cifar.py``):

    - ``gcn_zca`` (default, the paper's): :func:`global_contrast_normalize` per image, then ZCA whitening
      (:func:`zca_fit`) fitted on the training split after the validation images are removed and applied to
      all three splits. Defaults are those of the authors' ``process_cifar.py`` (GCN by the ``ddof=1`` std,
      scale 1, no bias; ZCA ``1 / (s + 1e-5)`` on singular values); pylearn2's (scale 55 on the norm, ZCA
      ``1 / sqrt(lambda + 0.1)``) is ``gcn_scale=55, gcn_divisor=norm, zca_eps=0.1, zca_eps_on=eigenvalue``.
      The ZCA mean and matrix are cached under ``<cache root>/cifar10/``.
    - ``standard``: pixels in [0, 1], z-scored per channel with the training split's channel statistics.
    - ``none``: pixels in [0, 1].

    Nothing is written to ``data_dir`` unless ``download=True``.

    Args:
        data_dir: the data root, holding ``cifar10/cifar-10-batches-py/`` (so torchvision's ``root`` is
            ``<data_dir>/cifar10``); default ``$ICLR17_DATA_DIR`` else ``./data``.
        batch_size: global batch size (divided over DDP processes), or None for full batch.
        val_size: training images held out for validation (at least 1; the rest is the training split).
        preprocessing: ``gcn_zca`` (the paper's), ``standard`` (per-channel z-score) or ``none`` ([0, 1]).
        gcn_scale: GCN output scale (``process_cifar.py``: 1; pylearn2: 55).
        gcn_divisor: GCN divides by the per-image ``std`` (``ddof=1``; ``process_cifar.py``) or ``norm`` (pylearn2).
        gcn_sqrt_bias: added under GCN's square root (both references: 0).
        gcn_min_divisor: images whose divisor is below this are only centred (both references: 1e-8).
        zca_eps: ZCA regulariser (``process_cifar.py``: 1e-5 on singular values; pylearn2: 0.1 on eigenvalues).
        zca_eps_on: whether ``zca_eps`` is added to the ``singular_value`` or the ``eigenvalue``.
        seed: seeds the validation split; independent of the training seed.
        num_workers: DataLoader worker processes.
        batches_per_step: fresh minibatches stacked into each training batch (``EntropySGD`` takes L + 1).
        download: fetch the official ``cifar-10-python.tar.gz`` (SHA-256 checked) into ``data_dir/cifar10``
            and extract the missing files.
        cache_dir: cache root for the ZCA statistics (default ``$ICLR17_CACHE_DIR``, else the XDG cache).
    """

    num_classes = 10
    input_shape = (3, 32, 32)

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int | None = 128,
        val_size: int = 5_000,
        preprocessing: Preprocessing = "gcn_zca",
        gcn_scale: float = 1.0,
        gcn_divisor: Literal["std", "norm"] = "std",
        gcn_sqrt_bias: float = 0.0,
        gcn_min_divisor: float = 1e-8,
        zca_eps: float = 1e-5,
        zca_eps_on: Literal["singular_value", "eigenvalue"] = "singular_value",
        seed: int = 0,
        num_workers: int = 0,
        batches_per_step: int = 1,
        download: bool = False,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, batches_per_step=batches_per_step)
        if val_size < 1:
            raise ValueError(f"val_size must be at least 1, got {val_size}")
        if preprocessing not in ("none", "standard", "gcn_zca"):
            raise ValueError(f"preprocessing must be one of none, standard, gcn_zca; got {preprocessing!r}")
        if gcn_divisor not in ("std", "norm"):
            raise ValueError(f"gcn_divisor must be 'std' or 'norm', got {gcn_divisor!r}")
        if zca_eps_on not in ("singular_value", "eigenvalue"):
            raise ValueError(f"zca_eps_on must be 'singular_value' or 'eigenvalue', got {zca_eps_on!r}")
        if zca_eps < 0 or gcn_scale <= 0:
            raise ValueError(f"zca_eps must be >= 0 and gcn_scale > 0, got {zca_eps} and {gcn_scale}")
        self.save_hyperparameters()
        self.folder = data_root(data_dir) / "cifar10" / "cifar-10-batches-py"
        self.label_names: list[str] = []

    def prepare_data(self) -> None:
        """Download if asked, then fit and cache the ZCA statistics (once per machine; rank 0 under DDP)."""
        if self.hparams.download and not all((self.folder / name).is_file() for name in FILES):
            self._download()
        if self.hparams.preprocessing == "gcn_zca" and not self._zca_cache_path().is_file():
            self._fit_and_cache_zca(self._train_val_images()[0][0])

    def _download(self) -> None:
        archive = download(CIFAR10_URL, self.folder.parent / "cifar-10-python.tar.gz", CIFAR10_SHA256)
        with tempfile.TemporaryDirectory(dir=self.folder.parent, prefix=".extract.") as staging:
            extracted = extract_archive(archive, staging) / "cifar-10-batches-py"
            self.folder.mkdir(exist_ok=True)
            for name in FILES:  # move only what is missing: a user's files are never overwritten
                if not (self.folder / name).is_file():
                    os.replace(extracted / name, self.folder / name)

    def _require_files(self) -> None:
        require_files(
            [self.folder / name for name in FILES],
            "CIFAR-10",
            "They are the contents of the official cifar-10-python.tar.gz (cifar-10-batches-py/), in "
            "<data root>/cifar10/; pass download=true (--data.download=true) to fetch it.",
        )

    def _train_val_images(self) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """The training and validation splits (images uint8, labels), split with the seeded permutation."""
        self._require_files()
        images, labels = zip(*(load_batch(self.folder / name) for name in TRAIN_FILES), strict=True)
        images, labels = torch.cat(images), torch.cat(labels)
        if self.hparams.val_size >= len(images):
            raise ValueError(f"val_size={self.hparams.val_size} leaves no training images out of {len(images)}")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.hparams.seed))
        val_idx, train_idx = order[: self.hparams.val_size], order[self.hparams.val_size :]
        return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])

    def _gcn(self, images: Tensor) -> Tensor:
        hp = self.hparams
        return global_contrast_normalize(
            images.float(), hp.gcn_scale, hp.gcn_divisor, hp.gcn_sqrt_bias, hp.gcn_min_divisor
        )

    def _zca_cache_path(self) -> Path:
        self._require_files()
        options = ("val_size", "seed", "gcn_scale", "gcn_divisor", "gcn_sqrt_bias", "gcn_min_divisor")
        options = {k: self.hparams[k] for k in (*options, "zca_eps", "zca_eps_on")}
        files = {name: self.folder / name for name in TRAIN_FILES}
        return cache_entry(self.hparams.cache_dir, "cifar10/zca-{key}.pt", _CACHE_VERSION, options, files)

    def _fit_and_cache_zca(self, train_images: Tensor) -> tuple[Tensor, Tensor]:
        mean, w = zca_fit(self._gcn(train_images), self.hparams.zca_eps, self.hparams.zca_eps_on)
        with atomic_publish(self._zca_cache_path()) as part, open(part, "wb") as f:
            torch.save({"mean": mean, "W": w, "n_train": len(train_images)}, f)
        return mean, w

    def _zca_statistics(self, train_images: Tensor) -> tuple[Tensor, Tensor]:
        path = self._zca_cache_path()
        if not path.is_file():  # e.g. setup() called directly, outside a Trainer
            return self._fit_and_cache_zca(train_images)
        stats = torch.load(path, map_location="cpu", weights_only=True)
        return stats["mean"], stats["W"]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        (train_x, train_y), (val_x, val_y) = self._train_val_images()
        test_x, test_y = load_batch(self.folder / "test_batch")
        self.label_names = load_label_names(self.folder / "batches.meta")
        splits = {"train": (train_x, train_y), "val": (val_x, val_y), "test": (test_x, test_y)}

        preprocessing = self.hparams.preprocessing
        if preprocessing == "gcn_zca":
            mean, w = self._zca_statistics(train_x)
            images = {name: zca_apply(self._gcn(x), mean, w) for name, (x, _) in splits.items()}
        else:
            images = {name: x.float().div_(255.0) for name, (x, _) in splits.items()}
            if preprocessing == "standard":
                channel_mean = images["train"].mean(dim=(0, 2, 3), keepdim=True)
                channel_std = images["train"].std(dim=(0, 2, 3), keepdim=True)
                images = {name: (x - channel_mean) / channel_std for name, x in images.items()}
        datasets = {name: TensorDataset(images[name], labels) for name, (_, labels) in splits.items()}
        self.train_set, self.val_set, self.test_set = datasets["train"], datasets["val"], datasets["test"]
