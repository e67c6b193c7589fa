"""Reader for LeCun's idx format (the MNIST files), straight from the .gz files.

torchvision's MNIST class extracts the .gz files next to themselves, which fails on a read-only data root;
reading the compressed bytes directly needs no extraction and no cache.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np
import torch

from .storage import DataFormatError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx_gz(path: str | os.PathLike) -> torch.Tensor:
    """Read a gzip-compressed idx file into a tensor, checking its header against its length.

    Args:
        path: the ``*-idx?-ubyte.gz`` file.

    Raises:
        DataFormatError: naming ``path``, when the file is truncated, not gzip, or not idx.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataFormatError(f"{path}: not a complete gzip file ({err}); delete it and fetch it again") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataFormatError(f"{path}: not an idx file (magic bytes {raw[:4].hex()})")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header_bytes = 4 + 4 * ndim
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected_bytes = header_bytes + dtype.itemsize * int(np.prod(shape))
    if len(raw) != expected_bytes:
        raise DataFormatError(
            f"{path}: header says shape {shape} ({expected_bytes} bytes) but the file holds {len(raw)} bytes"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header_bytes).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")))
