import pytest
import torch

from iclr17.datamodules.gaussian_mixture import GaussianMixtureDataModule, sample_gaussian_mixture


def test_samples_are_balanced_and_centred():
    centers = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [3.0, -2.0]], dtype=torch.float64)
    x, y = sample_gaussian_mixture(centers, 30_000, 0.5, torch.Generator().manual_seed(0))
    assert torch.bincount(y).tolist() == [10_000] * 3
    for k in range(3):
        cluster = x[y == k].double()
        torch.testing.assert_close(cluster.mean(0), centers[k], atol=0.02, rtol=0)
        torch.testing.assert_close(cluster.std(0), torch.full((2,), 0.5, dtype=torch.float64), atol=0.02, rtol=0)


def test_paper_setting_standardized_and_seeded():
    kwargs = dict(centers=[[-1.0, -1.0], [1.0, 1.0]], n_samples=100, standardize=True, seed=7)
    a, b = GaussianMixtureDataModule(**kwargs), GaussianMixtureDataModule(**kwargs)
    a.setup(), b.setup()
    x = a.train_set.tensors[0]
    torch.testing.assert_close(x.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(0), torch.ones(2), atol=1e-5, rtol=0)
    assert torch.equal(x, b.train_set.tensors[0])
    assert not torch.equal(x, a.val_set.tensors[0])  # independent draws per split


def test_random_centres_inside_box():
    dm = GaussianMixtureDataModule(num_classes=5, dim=3, center_box=2.0)
    dm.setup()
    assert dm.centers.shape == (5, 3) and dm.centers.abs().max() <= 2.0
    assert dm.input_shape == (3,) and dm.num_classes == 5


def test_full_batch_default():
    dm = GaussianMixtureDataModule(n_samples=90)
    dm.setup()
    assert next(iter(dm.train_dataloader()))[0].shape == (90, 2)


def test_centers_must_match_declared_shape():
    with pytest.raises(ValueError, match="centers must be num_classes=2 lists of dim=2"):
        GaussianMixtureDataModule(centers=[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
