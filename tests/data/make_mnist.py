"""Write a small MNIST in the exact on-disk format: gzip'd idx files in ``<root>/mnist/MNIST/raw/``.

    python -m tests.data OUT_DIR --only mnist

The images are random digits-like blobs; what matters is the byte layout (big-endian idx header, uint8
payload, gzip), which is the official one.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """idx: two zero bytes, type code 0x08 (uint8), the number of dims, each dim as big-endian int32."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_mnist(root: str | Path, n_train: int = 600, n_test: int = 100, seed: int = 0) -> Path:
    """Write the four files under ``root/mnist/MNIST/raw`` (``root`` is a data root) and return that folder."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        images = images // 2
        for i, label in enumerate(labels):  # a bright row whose position is the label makes the task learnable
            images[i, 2 * int(label) + 4, :] = 255
        write_idx_gz(raw / f"{split}-images-idx3-ubyte.gz", images)
        write_idx_gz(raw / f"{split}-labels-idx1-ubyte.gz", labels)
    return raw
