import gzip
import struct

import numpy as np
import pytest
import torch

from iclr17.datamodules.idx import read_idx_gz
from iclr17.datamodules.storage import DataFormatError
from tests.data.make_mnist import write_idx_gz


def test_reads_uint8_and_big_endian_int32(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx_gz(tmp_path / "u8.gz", images)
    assert torch.equal(read_idx_gz(tmp_path / "u8.gz"), torch.from_numpy(images))

    values = np.array([1, -2, 70000], dtype=">i4")  # hand-written header: type 0x0C, one dim of 3
    with gzip.open(tmp_path / "i32.gz", "wb") as f:
        f.write(struct.pack(">BBBBi", 0, 0, 0x0C, 1, 3) + values.tobytes())
    assert read_idx_gz(tmp_path / "i32.gz").tolist() == [1, -2, 70000]


def test_truncated_gzip_names_the_file(tmp_path):
    write_idx_gz(tmp_path / "full.gz", np.zeros((50, 28, 28), dtype=np.uint8))
    data = (tmp_path / "full.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"cut\.gz: not a complete gzip file"):
        read_idx_gz(tmp_path / "cut.gz")


def test_payload_shorter_than_header_says(tmp_path):
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(struct.pack(">BBBBi", 0, 0, 0x08, 1, 10) + b"\x00" * 9)
    with pytest.raises(DataFormatError, match=r"short\.gz: header says shape \(10,\)"):
        read_idx_gz(tmp_path / "short.gz")


def test_wrong_magic(tmp_path):
    with gzip.open(tmp_path / "bad.gz", "wb") as f:
        f.write(b"PK\x03\x04 not idx")
    with pytest.raises(DataFormatError, match=r"bad\.gz: not an idx file"):
        read_idx_gz(tmp_path / "bad.gz")
