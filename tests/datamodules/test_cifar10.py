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


# --- GCN and ZCA against independent references ------------------------------------------------------------


def test_gcn_against_numpy_and_its_invariants():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(20, 3, 4, 4))
    x[5] = 7.0  # a constant image: divisor 0 < min_divisor, so only centred
    flat = x.reshape(20, -1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    for kwargs, divisor in [
        ({}, np.sqrt(centred.var(axis=1, ddof=1))),
        ({"divisor": "norm", "scale": 55.0}, np.sqrt((centred**2).sum(axis=1)) / 55.0),
        ({"sqrt_bias": 10.0}, np.sqrt(10.0 + centred.var(axis=1, ddof=1))),
    ]:
        divisor = np.where(divisor < 1e-8, 1.0, divisor)
        ours = global_contrast_normalize(torch.from_numpy(x), **kwargs).numpy().reshape(20, -1)
        np.testing.assert_allclose(ours, centred / divisor[:, None], atol=1e-10)
    y = global_contrast_normalize(torch.from_numpy(x)).reshape(20, -1)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(20, dtype=torch.float64), atol=1e-12, rtol=0)
    stds = y.std(dim=1)
    assert float(stds[5]) == 0 and torch.allclose(stds[torch.arange(20) != 5], torch.ones(19, dtype=torch.float64))
    norms = global_contrast_normalize(torch.from_numpy(x), scale=55.0, divisor="norm").reshape(20, -1).norm(dim=1)
    torch.testing.assert_close(norms[torch.arange(20) != 5], torch.full((19,), 55.0, dtype=torch.float64))


def test_zca_hand_computed_2x2():
    a, b = 3**0.5, 3**0.5 / 2  # four points (+-a, +-b): ddof=1 covariance diag(4, 1), singular values 2 and 1
    x = torch.tensor([[a, b], [a, -b], [-a, b], [-a, -b]], dtype=torch.float64) + torch.tensor([5.0, -1.0])
    mean, w = zca_fit(x, eps=0.5)
    torch.testing.assert_close(mean, torch.tensor([5.0, -1.0]))
    torch.testing.assert_close(w, torch.tensor([[1 / 2.5, 0.0], [0.0, 1 / 1.5]]))
    _, w = zca_fit(x, eps=0.5, eps_on="eigenvalue")
    torch.testing.assert_close(w, torch.tensor([[1 / 4.5**0.5, 0.0], [0.0, 1 / 1.5**0.5]]))
    rotation = torch.tensor([[1.0, -1.0], [1.0, 1.0]], dtype=torch.float64) / 2**0.5
    _, w = zca_fit(x @ rotation.T, eps=0.0)  # C = R diag(4, 1) R^T, W = R diag(1/2, 1) R^T
    torch.testing.assert_close(w, torch.tensor([[0.75, -0.25], [-0.25, 0.75]]))


def test_zca_whitens_to_the_shrunk_identity():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + rng.normal(size=6)
    eigenvalues, u = np.linalg.eigh(np.cov(x, rowvar=False))  # numpy's ddof=1 covariance
    for eps, eps_on, shrink in [
        (0.0, "singular_value", lambda lam: np.ones_like(lam)),
        (0.3, "singular_value", lambda lam: lam / (np.sqrt(lam) + 0.3) ** 2),
        (0.3, "eigenvalue", lambda lam: lam / (lam + 0.3)),
    ]:
        mean, w = zca_fit(torch.from_numpy(x), eps=eps, eps_on=eps_on)
        white = zca_apply(torch.from_numpy(x), mean, w).double().numpy()
        expected = (u * shrink(eigenvalues)) @ u.T
        np.testing.assert_allclose(np.cov(white, rowvar=False), expected, atol=2e-5)
        np.testing.assert_allclose(w.numpy(), w.numpy().T, atol=1e-6)  # ZCA: symmetric, no rotation


def test_zca_with_fewer_examples_than_dimensions_projects_out_the_null_space():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(10, 40)))
    mean, w = zca_fit(x, eps=0.0)
    cov = torch.cov(x.T)
    projector = (w.double() @ cov @ w.double()).numpy()  # W C W: identity on the 9-dim span, 0 off it
    np.testing.assert_allclose(projector @ projector, projector, atol=1e-5)
    assert round(float(np.trace(projector))) == 9
    null = torch.from_numpy(rng.normal(size=40))
    null -= torch.linalg.lstsq((x - x.mean(0)).T, null).solution @ (x - x.mean(0))  # orthogonal to the data
    assert float((w.double() @ null).norm()) < 1e-6 * float(null.norm())


def test_defaults_match_the_authors_process_cifar_pipeline():
    """``process_cifar.py`` (ucla-vision/entropy-sgd) re-derived in numpy: GCN by the ddof=1 std, then PCA via the
    SVD of the (D, N) centred data scaled by 1/sqrt(N - 1) and W = U diag(1 / (S + 1e-5)) U^T."""
    rng = np.random.default_rng(3)
    train = rng.uniform(0, 255, size=(300, 3, 3, 3)) @ np.diag([1.0, 0.5, 2.0])  # correlated pixels, D = 27
    test = rng.uniform(0, 255, size=(30, 3, 3, 3))

    def normalize(data):
        data = data - data.mean(axis=(1, 2, 3), keepdims=True)
        std = np.sqrt(data.var(axis=(1, 2, 3), ddof=1, keepdims=True))
        std[std < 1e-8] = 1.0
        return data / std

    d = normalize(train).reshape(300, -1).T
    m = d.mean(axis=1)[:, None]
    u, s, _ = np.linalg.svd((d - m) / np.sqrt(d.shape[1] - 1), full_matrices=False)
    w_ref = u @ np.diag(1.0 / (s + 1e-5)) @ u.T
    expected = (w_ref @ (normalize(test).reshape(30, -1).T - m)).T

    mean, w = zca_fit(global_contrast_normalize(torch.from_numpy(train)))
    ours = zca_apply(global_contrast_normalize(torch.from_numpy(test)), mean, w).reshape(30, -1)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4, rtol=1e-4)


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
