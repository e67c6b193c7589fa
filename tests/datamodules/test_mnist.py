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


def _raw_idx_images(path) -> torch.Tensor:
    """The uint8 pixels of an idx3 .gz file, read with gzip and the 16-byte header skipped (not our reader)."""
    with gzip.open(path) as f:
        data = f.read()
    n = int.from_bytes(data[4:8], "big")
    return torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8).reshape(n, 28, 28)


def test_lua_normalization_is_the_authors_x_minus_126_over_126(mnist_fixture_dir):
    dm = _setup(data_dir=str(mnist_fixture_dir), normalization="lua", val_source="test")
    raw = mnist_fixture_dir / "mnist" / "MNIST" / "raw"
    for dataset, split in ((dm.train_set, "train"), (dm.test_set, "t10k")):
        pixels = _raw_idx_images(raw / f"{split}-images-idx3-ubyte.gz").double()
        expected = ((pixels - 126) / 126).float().reshape(-1, 1, 28, 28)
        got = dataset.tensors[0]
        if split == "train":  # the training split is a seeded permutation of the file's images: compare sorted rows
            got, expected = (torch.sort(t.flatten(1), dim=0).values for t in (got, expected))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_val_source_test_trains_on_every_training_image_and_validates_on_the_test_images(mnist_fixture_dir):
    dm = _setup(data_dir=str(mnist_fixture_dir), val_source="test")
    raw = mnist_fixture_dir / "mnist" / "MNIST" / "raw"
    file_rows = _raw_idx_images(raw / "train-images-idx3-ubyte.gz").flatten(1).float() / 255
    train_rows = dm.train_set.tensors[0].flatten(1)
    assert len(train_rows) == 600  # all of them, nothing held out
    torch.testing.assert_close(torch.sort(train_rows, 0).values, torch.sort(file_rows, 0).values)
    assert dm.val_set is dm.test_set and len(dm.test_set) == 100
    assert len(dm.val_dataloader().dataset) == 100
    held_out = _setup(data_dir=str(mnist_fixture_dir), val_size=100)  # the default is unchanged
    assert (len(held_out.train_set), len(held_out.val_set)) == (500, 100)


@pytest.mark.parametrize("batches_per_step", [1, 3])
def test_with_replacement_draws_iid_uniform_indices_and_a_pass_worth_of_batches(mnist_fixture_dir, batches_per_step):
    from scipy.stats import chisquare

    dm = _setup(
        data_dir=str(mnist_fixture_dir), val_source="test", batch_size=32, batches_per_step=batches_per_step,
        train_sampling="with_replacement",
    )  # fmt: skip
    loader = dm.train_dataloader()
    steps = 600 // (32 * batches_per_step)  # 18 or 6: as many minibatches as a pass (468 of 128 from 60,000)
    assert len(loader) == steps and loader.batch_size == 32 * batches_per_step
    batches = list(loader)
    assert len(batches) == steps and all(len(x) == 32 * batches_per_step for x, _ in batches)
    torch.manual_seed(0)
    epochs = [list(loader.sampler) for _ in range(60)]
    torch.manual_seed(0)
    assert list(loader.sampler) == epochs[0]  # seeded by the global RNG, like shuffling
    assert all(len(e) == steps * 32 * batches_per_step for e in epochs)
    assert any(len(set(e)) < len(e) for e in epochs)  # repeats within an epoch: with replacement
    counts = torch.bincount(torch.tensor(epochs).flatten(), minlength=600)
    assert chisquare(counts.numpy()).pvalue > 1e-3  # uniform over all 600 images


def test_new_switches_are_validated_at_construction():
    with pytest.raises(ValueError, match="val_source"):
        MNISTDataModule(val_source="val")
    with pytest.raises(ValueError, match="train_sampling"):
        MNISTDataModule(train_sampling="bootstrap")
    with pytest.raises(ValueError, match="batch_size"):
        MNISTDataModule(train_sampling="with_replacement", batch_size=None)
    with pytest.raises(ValueError, match="normalization"):
        MNISTDataModule(normalization="authors")


def test_real_mnist_in_the_authors_setup(real_data_dir):
    """All 60,000 training images, the 10,000 test images as validation, 468 minibatches of 128 an epoch."""
    dm = _setup(data_dir=str(real_data_dir), normalization="lua", val_source="test", train_sampling="with_replacement")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (60_000, 10_000, 10_000)
    assert len(dm.train_dataloader()) == 468
    assert float(dm.train_set.tensors[0].min()) == -1.0 and abs(float(dm.train_set.tensors[0].max()) - 129 / 126) < 1e-6
