import gzip
import shutil

import pytest
import torch
from torchvision.datasets.mnist import read_image_file, read_label_file

from iclr17.datamodules.mnist import MNISTDataModule
from iclr17.datamodules.storage import DataFormatError, MissingDataError
from tests.data.make_mnist import write_mnist


def _setup(**kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(**kwargs)
    dm.setup("fit")
    return dm


def test_split_sizes_and_shapes(mnist_fixture_dir):
    dm = _setup(data_dir=str(mnist_fixture_dir), val_size=100)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (500, 100, 100)
    x, y = dm.train_set[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(dm.train_set.tensors[0].min()) >= 0.0 and float(dm.train_set.tensors[0].max()) <= 1.0


def test_split_is_seeded_and_disjoint(mnist_fixture_dir):
    a = _setup(data_dir=str(mnist_fixture_dir), val_size=100, seed=3)
    b = _setup(data_dir=str(mnist_fixture_dir), val_size=100, seed=3)
    c = _setup(data_dir=str(mnist_fixture_dir), val_size=100, seed=4)
    assert torch.equal(a.val_set.tensors[0], b.val_set.tensors[0])
    assert not torch.equal(a.val_set.tensors[0], c.val_set.tensors[0])
    train_rows = {row.numpy().tobytes() for row in a.train_set.tensors[0]}
    assert not any(row.numpy().tobytes() in train_rows for row in a.val_set.tensors[0])


def test_normalizations_against_closed_forms(mnist_fixture_dir):
    unit = _setup(data_dir=str(mnist_fixture_dir), val_size=100, normalization="unit")
    x = unit.train_set.tensors[0]
    raw = _setup(data_dir=str(mnist_fixture_dir), val_size=100, normalization="none").train_set.tensors[0]
    tanh = _setup(data_dir=str(mnist_fixture_dir), val_size=100, normalization="tanh").train_set.tensors[0]
    std = _setup(data_dir=str(mnist_fixture_dir), val_size=100, normalization="standard")
    torch.testing.assert_close(raw, x * 255)
    assert raw.eq(raw.round()).all()  # integral pixel values
    torch.testing.assert_close(tanh, 2 * x - 1)
    z = std.train_set.tensors[0]
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-4
    torch.testing.assert_close(std.val_set.tensors[0], (unit.val_set.tensors[0] - x.mean()) / x.std())


def test_flatten_and_subset(mnist_fixture_dir):
    dm = _setup(data_dir=str(mnist_fixture_dir), val_size=100, flatten=True, subset_size=64)
    assert dm.train_set.tensors[0].shape == (64, 784) and dm.input_shape == (784,)


def test_random_inputs_keep_labels_and_match_moments(mnist_fixture_dir):
    real = _setup(data_dir=str(mnist_fixture_dir), val_size=100)
    noise = _setup(data_dir=str(mnist_fixture_dir), val_size=100, inputs="random")
    assert torch.equal(real.train_set.tensors[1], noise.train_set.tensors[1])
    x, xn = real.train_set.tensors[0], noise.train_set.tensors[0]
    assert abs(float(xn.mean() - x.mean())) < 0.01 and abs(float(xn.std() - x.std())) < 0.01
    assert abs(float(torch.corrcoef(torch.stack([x.flatten(), xn.flatten()]))[0, 1])) < 0.01


def test_global_batch_is_divided_over_processes(mnist_fixture_dir):
    dm = _setup(data_dir=str(mnist_fixture_dir), val_size=100, batch_size=64)
    dm.trainer = type("FakeTrainer", (), {"world_size": 4})()
    assert dm.train_dataloader().batch_size == 16
    dm.trainer.world_size = 3
    with pytest.raises(ValueError, match="global batch"):
        dm.train_dataloader()


def test_missing_files_error_names_path_and_remedy(tmp_path):
    with pytest.raises(MissingDataError) as err:
        _setup(data_dir=str(tmp_path / "nowhere"))
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz") in message
    assert "download=true" in message


def test_truncated_file_error_names_it(tmp_path):
    raw = write_mnist(tmp_path, n_train=300, n_test=50)
    path = raw / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataFormatError, match="train-images-idx3-ubyte.gz"):
        _setup(data_dir=str(tmp_path), val_size=50)


def test_label_count_mismatch_names_the_label_file(tmp_path):
    write_mnist(tmp_path, n_train=300, n_test=50)
    other = write_mnist(tmp_path / "other", n_train=299, n_test=50)
    shutil.copy(other / "train-labels-idx1-ubyte.gz", tmp_path / "mnist" / "MNIST" / "raw")
    with pytest.raises(DataFormatError, match="train-labels-idx1-ubyte.gz: expected 300 labels"):
        _setup(data_dir=str(tmp_path), val_size=50)


def test_bad_arguments():
    with pytest.raises(ValueError, match="val_size"):
        MNISTDataModule(val_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        MNISTDataModule(batch_size=0)


def test_real_mnist_matches_torchvision_reader(real_data_dir, tmp_path):
    """Our .gz reader against torchvision's reader of the gunzipped files: same bytes, same counts."""
    raw = real_data_dir / "mnist" / "MNIST" / "raw"
    for split, count in (("train", 60_000), ("t10k", 10_000)):
        for kind in ("images-idx3", "labels-idx1"):
            with gzip.open(raw / f"{split}-{kind}-ubyte.gz") as src, open(tmp_path / f"{split}-{kind}", "wb") as dst:
                shutil.copyfileobj(src, dst)
        reference_images = read_image_file(str(tmp_path / f"{split}-images-idx3"))
        reference_labels = read_label_file(str(tmp_path / f"{split}-labels-idx1"))
        assert len(reference_images) == count
        from iclr17.datamodules.mnist import load_mnist_split

        images, labels = load_mnist_split(raw, split)
        assert torch.equal(images, reference_images) and torch.equal(labels, reference_labels)
    test_counts = torch.bincount(labels, minlength=10).tolist()
    assert test_counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # published t10k class counts


def test_real_mnist_datamodule(real_data_dir):
    dm = _setup(data_dir=str(real_data_dir))
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (50_000, 10_000, 10_000)
