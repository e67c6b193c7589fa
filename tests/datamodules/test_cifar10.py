import os
import pickle
import pickletools
import tarfile

import numpy as np
import pytest
import torch
from torchvision.datasets import cifar as tv_cifar

import iclr17.datamodules.cifar10 as cifar10
from iclr17.datamodules.cifar10 import CIFAR10DataModule, load_batch
from iclr17.datamodules.storage import ChecksumError, DataFormatError, MissingDataError, sha256sum
from iclr17.functional.preprocessing import global_contrast_normalize, zca_apply, zca_fit
from tests.data.make_cifar10 import write_cifar10

FOLDER = ("cifar10", "cifar-10-batches-py")


def _setup(root, **kwargs) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(data_dir=str(root), **{"val_size": 50, **kwargs})
    dm.setup("fit")
    return dm


# --- the on-disk format -------------------------------------------------------------------------------


def test_fixture_is_a_python2_protocol2_pickle(fixture_data_root):
    raw = fixture_data_root.joinpath(*FOLDER, "data_batch_1").read_bytes()
    ops = list(pickletools.genops(raw))
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    names = {op.name for op, _, _ in ops}
    assert "SHORT_BINSTRING" in names and not names & {"BINUNICODE", "SHORT_BINUNICODE"}  # Python 2 str only
    globals_ = {arg for op, arg, _ in ops if op.name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    as_bytes = pickle.loads(raw, encoding="bytes")  # what Python 3 sees without latin1: bytes keys
    assert set(as_bytes) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert as_bytes[b"data"].dtype == np.uint8 and as_bytes[b"data"].shape == (60, 3072)


def test_parsing_matches_torchvision_and_the_channel_major_layout(fixture_data_root, monkeypatch):
    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)  # fixture, not the official md5s
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args: True)
    reference = tv_cifar.CIFAR10(str(fixture_data_root / "cifar10"), train=True)
    folder = fixture_data_root.joinpath(*FOLDER)
    images, labels = zip(*(load_batch(folder / f"data_batch_{i}") for i in range(1, 6)), strict=True)
    images, labels = torch.cat(images), torch.cat(labels)
    assert images.shape == (300, 3, 32, 32) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert torch.equal(images.permute(0, 2, 3, 1), torch.from_numpy(reference.data))  # torchvision is HWC
    assert labels.tolist() == reference.targets
    data = pickle.loads((folder / "test_batch").read_bytes(), encoding="latin1")["data"]
    test_images, _ = load_batch(folder / "test_batch")
    for n, c, i, j in [(0, 0, 0, 0), (3, 1, 5, 7), (39, 2, 31, 31), (17, 2, 0, 30)]:
        assert test_images[n, c, i, j] == data[n, c * 1024 + i * 32 + j]


def test_split_sizes_shapes_and_labels(fixture_data_root):
    dm = _setup(fixture_data_root)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (250, 50, 40)
    x, y = dm.train_set[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert dm.label_names[:3] == ["airplane", "automobile", "bird"] and dm.num_classes == 10


def test_split_is_seeded_and_disjoint(fixture_data_root):
    a = _setup(fixture_data_root, preprocessing="none", seed=3)
    b = _setup(fixture_data_root, preprocessing="none", seed=3)
    c = _setup(fixture_data_root, preprocessing="none", seed=4)
    assert torch.equal(a.val_set.tensors[0], b.val_set.tensors[0])
    assert not torch.equal(a.val_set.tensors[0], c.val_set.tensors[0])
    train_rows = {row.numpy().tobytes() for row in a.train_set.tensors[0]}
    assert not any(row.numpy().tobytes() in train_rows for row in a.val_set.tensors[0])


def test_missing_file_error_names_it(fixture_data_root, tmp_path):
    root = tmp_path / "root"
    write_cifar10(root, per_batch=4, n_test=4)
    root.joinpath(*FOLDER, "data_batch_3").unlink()
    with pytest.raises(MissingDataError) as err:
        _setup(root, val_size=2)
    assert str(root.joinpath(*FOLDER, "data_batch_3")) in str(err.value) and "download=true" in str(err.value)
    assert "data_batch_2" not in str(err.value)


def test_truncated_and_hostile_pickles_are_refused(tmp_path):
    root = tmp_path / "root"
    folder = write_cifar10(root, per_batch=4, n_test=4)
    raw = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match=r"data_batch_2.*truncated"):
        _setup(root, val_size=2)
    (folder / "data_batch_2").write_bytes(raw)
    (folder / "test_batch").write_bytes(pickle.dumps(os.system, protocol=2))  # would run code if trusted
    with pytest.raises(DataFormatError, match=r"test_batch: refusing to load \w+\.system"):
        _setup(root, val_size=2)


def test_wrong_shape_is_refused(tmp_path):
    folder = write_cifar10(tmp_path / "root", per_batch=4, n_test=4)
    bad = {"data": np.zeros((4, 3071), np.uint8), "labels": [0, 1, 2, 3]}
    (folder / "data_batch_5").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataFormatError, match=r"data_batch_5: key 'data' must be a uint8 array of shape \(N, 3072\)"):
        load_batch(folder / "data_batch_5")


# GCN and ZCA themselves are checked against independent references in tests/functional/test_preprocessing.py.


# --- the datamodule's preprocessing and cache ---------------------------------------------------------------


def test_gcn_zca_is_fitted_on_the_training_split_only(fixture_data_root):
    dm = _setup(fixture_data_root)
    raw = _setup(fixture_data_root, preprocessing="none")
    train_raw = raw.train_set.tensors[0] * 255
    mean, w = zca_fit(global_contrast_normalize(train_raw))
    for split in ("train", "val", "test"):
        expected = zca_apply(global_contrast_normalize(getattr(raw, f"{split}_set").tensors[0] * 255), mean, w)
        torch.testing.assert_close(getattr(dm, f"{split}_set").tensors[0], expected, atol=1e-4, rtol=1e-4)
    white = dm.train_set.tensors[0].reshape(250, -1).double()
    eigenvalues = torch.linalg.svdvals((white - white.mean(0)) / 249**0.5).square()  # of the covariance
    whitened = eigenvalues[eigenvalues > 0.5]  # the span of the 250 training images: variance 1 (minus eps shrink)
    assert len(whitened) >= 240 and torch.allclose(whitened, torch.ones_like(whitened), atol=1e-3)


def test_none_and_standard_preprocessing(fixture_data_root):
    none = _setup(fixture_data_root, preprocessing="none")
    x = none.train_set.tensors[0]
    assert float(x.min()) >= 0 and float(x.max()) <= 1 and x.mul(255).eq(x.mul(255).round()).all()
    z = _setup(fixture_data_root, preprocessing="standard").train_set.tensors[0]
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5, rtol=0)


def test_zca_statistics_are_cached_and_reused(fixture_data_root, tmp_path, monkeypatch):
    calls = []

    def counting_fit(*args, **kwargs):
        calls.append(1)
        return zca_fit(*args, **kwargs)

    monkeypatch.setattr(cifar10, "zca_fit", counting_fit)
    first = CIFAR10DataModule(data_dir=str(fixture_data_root), val_size=50)
    first.prepare_data()
    first.setup("fit")
    assert len(calls) == 1
    (entry,) = (tmp_path / "cache" / "cifar10").iterdir()  # ICLR17_CACHE_DIR is per test; no .part file left
    assert entry.name.startswith("zca-") and entry.suffix == ".pt"
    second = _setup(fixture_data_root)
    assert len(calls) == 1
    assert torch.equal(first.test_set.tensors[0], second.test_set.tensors[0])
    _setup(fixture_data_root, zca_eps=0.1)  # another option, another entry
    _setup(fixture_data_root, seed=1)  # another training split, another entry
    assert len(calls) == 3 and len(list((tmp_path / "cache" / "cifar10").iterdir())) == 3


def test_batches_per_step_stacks_fresh_minibatches(fixture_data_root):
    dm = _setup(fixture_data_root, batch_size=16, batches_per_step=3, preprocessing="none")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (48, 3, 32, 32) and y.shape == (48,)
    assert len({row.numpy().tobytes() for row in x}) == 48  # drawn without replacement
    assert next(iter(dm.val_dataloader()))[0].shape == (16, 3, 32, 32)


def _tarball(tmp_path):
    source = write_cifar10(tmp_path / "source", per_batch=4, n_test=4)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(source, arcname="cifar-10-batches-py")
    return archive


def test_download_extracts_the_verified_archive(tmp_path, monkeypatch):
    archive = _tarball(tmp_path)
    monkeypatch.setattr(cifar10, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(cifar10, "CIFAR10_SHA256", sha256sum(archive))
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "root"), val_size=2, download=True, preprocessing="none")
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 18
    assert sorted(os.listdir(tmp_path / "root" / "cifar10")) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_download_with_a_wrong_checksum_keeps_nothing(tmp_path, monkeypatch):
    archive = _tarball(tmp_path)
    monkeypatch.setattr(cifar10, "CIFAR10_URL", archive.as_uri())
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "root"), val_size=2, download=True)
    with pytest.raises(ChecksumError):
        dm.prepare_data()
    assert os.listdir(tmp_path / "root" / "cifar10") == []


def test_invalid_arguments_name_the_argument():
    with pytest.raises(ValueError, match="val_size"):
        CIFAR10DataModule(val_size=0)
    with pytest.raises(ValueError, match="preprocessing"):
        CIFAR10DataModule(preprocessing="zca")
    with pytest.raises(ValueError, match="zca_eps_on"):
        CIFAR10DataModule(zca_eps_on="both")
