"""Write small CelebA, LSUN (exported) and image-folder fixtures in the original on-disk formats.

    python -m tests.data OUT_DIR --only images

- ``celeba/img_align_celeba/000001.jpg ...``: 178x218 RGB JPEGs, and ``celeba/list_eval_partition.txt`` with
  lines ``000001.jpg 0`` (0 train, 1 validation, 2 test), as in the official aligned-and-cropped release.
- ``lsun/bedroom_{train,val}/<k0>/<k1>/.../<k5>/<key>.webp``: WebP images keyed by 40-hex-digit ids, nested by
  the first six characters of the key, as fyu/lsun's ``data.py export`` writes them; shorter side 256.
- ``images/``: PNG and JPEG files of mixed sizes in two subfolders.
The pixels are smooth random colour gradients; what matters is the file layout and the encodings.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image


def _image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = [np.sin(rng.uniform(1, 6) * x + rng.uniform(1, 6) * y + rng.uniform(0, 6)) for _ in range(3)]
    return Image.fromarray(((np.stack(channels, -1) + 1) * 127.5).astype(np.uint8))


def write_celeba(root: Path, partition: tuple[int, int, int] = (8, 2, 2), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(root) / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, split in enumerate(s for s, n in enumerate(partition) for _ in range(n)):
        name = f"{i + 1:06d}.jpg"
        _image(rng, 178, 218).save(folder / "img_align_celeba" / name, quality=90)
        lines.append(f"{name} {split}")
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return folder


def write_lsun(root: Path, category: str = "bedroom", n_train: int = 8, n_val: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(root) / "lsun"
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            key = hashlib.sha1(f"{category}{split}{i}".encode()).hexdigest()
            out = folder / f"{category}_{split}" / "/".join(key[:6])
            out.mkdir(parents=True, exist_ok=True)
            width = int(rng.integers(256, 340))
            _image(rng, width, 256).save(out / f"{key}.webp", quality=75)
    return folder


def write_image_folder(root: Path, n: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(root) / "images"
    for i in range(n):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        image = _image(rng, int(rng.integers(40, 90)), int(rng.integers(40, 90)))
        image.save(sub / (f"{i:03d}.png" if i % 3 else f"{i:03d}.jpg"))
    return folder


def write_images(root: str | Path) -> Path:
    """All three fixtures under the data root ``root``."""
    root = Path(root)
    write_celeba(root)
    write_lsun(root)
    write_image_folder(root)
    return root
