"""Global contrast normalisation and ZCA whitening (arXiv:1611.01838's CIFAR-10 input; arXiv:1302.4389) against
independent references: numpy formulas, hand-computed 2 x 2 cases, numpy's eigendecomposition of the covariance,
and the authors' ``process_cifar.py`` pipeline re-derived in numpy."""

import numpy as np
import pytest
import torch

from iclr17.functional.preprocessing import global_contrast_normalize, zca_apply, zca_fit


def _numpy_gcn(x: np.ndarray, scale=1.0, divisor="std", sqrt_bias=0.0, min_divisor=1e-8) -> np.ndarray:
    flat = x.reshape(len(x), -1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    spread = centred.var(axis=1, ddof=1) if divisor == "std" else (centred**2).sum(axis=1)
    d = np.sqrt(sqrt_bias + spread) / scale
    d = np.where(d < min_divisor, 1.0, d)
    return (centred / d[:, None]).reshape(x.shape)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"divisor": "norm", "scale": 55.0}, {"sqrt_bias": 10.0}, {"scale": 2.0, "min_divisor": 0.5}],
    ids=["process_cifar", "pylearn2", "coates_sqrt_bias", "min_divisor"],
)
def test_gcn_equals_the_numpy_formula(kwargs):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(12, 3, 4, 4))
    x[5] = 7.0  # a constant image: its divisor is 0, so it is only centred
    x[7] = 7.0 + rng.uniform(0, 0.5, size=(3, 4, 4))  # a low-contrast one
    ours = global_contrast_normalize(torch.from_numpy(x), **kwargs)
    assert ours.shape == x.shape and ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), _numpy_gcn(x, **kwargs), atol=1e-10)


def test_gcn_gives_zero_mean_unit_std_or_norm_per_image():
    x = torch.from_numpy(np.random.default_rng(1).normal(3.0, 20.0, size=(8, 27)))
    y = global_contrast_normalize(x)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(8, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(y.std(dim=1), torch.ones(8, dtype=torch.float64))
    norms = global_contrast_normalize(x, scale=55.0, divisor="norm").norm(dim=1)
    torch.testing.assert_close(norms, torch.full((8,), 55.0, dtype=torch.float64))
    torch.testing.assert_close(global_contrast_normalize(3 * x + 11), y)  # invariant to contrast and brightness


def test_gcn_converts_integers_and_refuses_an_unknown_divisor():
    images = torch.randint(0, 256, (4, 3, 2, 2), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    y = global_contrast_normalize(images)
    assert y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), _numpy_gcn(images.numpy().astype(np.float64)), atol=1e-5)
    with pytest.raises(ValueError, match="divisor"):
        global_contrast_normalize(images, divisor="max")


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


@pytest.mark.parametrize(
    ("eps", "eps_on", "gain"),
    [
        (0.0, "singular_value", lambda lam: 1 / np.sqrt(lam)),
        (0.3, "singular_value", lambda lam: 1 / (np.sqrt(lam) + 0.3)),
        (0.3, "eigenvalue", lambda lam: 1 / np.sqrt(lam + 0.3)),
    ],
)
def test_zca_equals_numpy_eigendecomposition_and_whitens(eps, eps_on, gain):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + rng.normal(size=6)
    eigenvalues, u = np.linalg.eigh(np.cov(x, rowvar=False))  # numpy's ddof=1 covariance
    mean, w = zca_fit(torch.from_numpy(x), eps=eps, eps_on=eps_on)
    assert mean.dtype == w.dtype == torch.float32 and w.shape == (6, 6)
    np.testing.assert_allclose(mean.numpy(), x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(w.numpy(), (u * gain(eigenvalues)) @ u.T, rtol=1e-5, atol=1e-6)
    white = zca_apply(torch.from_numpy(x), mean, w).double().numpy()
    # covariance U diag(lambda gain^2) U^T: the identity for eps = 0, shrunk where lambda is comparable to eps
    expected = (u * eigenvalues * gain(eigenvalues) ** 2) @ u.T
    np.testing.assert_allclose(np.cov(white, rowvar=False), expected, atol=2e-5)
    if eps == 0:
        np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(6), atol=2e-5)


def test_zca_with_fewer_examples_than_dimensions_projects_out_the_null_space():
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.normal(size=(10, 40)))
    mean, w = zca_fit(x, eps=0.0)
    projector = (w.double() @ torch.cov(x.T) @ w.double()).numpy()  # W C W: identity on the 9-dim span, 0 off it
    np.testing.assert_allclose(projector @ projector, projector, atol=1e-5)
    assert round(float(np.trace(projector))) == 9
    null = torch.from_numpy(rng.normal(size=40))
    null -= torch.linalg.lstsq((x - x.mean(0)).T, null).solution @ (x - x.mean(0))  # orthogonal to the data
    assert float((w.double() @ null).norm()) < 1e-6 * float(null.norm())


def test_zca_apply_is_a_chunked_affine_map_and_checks_shapes():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(11, 2, 3))
    mean, w = torch.from_numpy(rng.normal(size=6)), torch.from_numpy(rng.normal(size=(6, 6)))
    whole = zca_apply(torch.from_numpy(x), mean, w)
    assert whole.shape == x.shape and whole.dtype == torch.float32
    expected = (x.reshape(11, 6).astype(np.float32) - mean.float().numpy()) @ w.float().numpy()
    np.testing.assert_allclose(whole.reshape(11, 6).numpy(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(zca_apply(torch.from_numpy(x), mean, w, chunk_size=3), whole)
    with pytest.raises(ValueError, match="7 values"):
        zca_apply(torch.zeros(2, 7), mean, w)


def test_zca_refuses_one_example_and_an_unknown_regulariser():
    with pytest.raises(ValueError, match="at least 2"):
        zca_fit(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="eps_on"):
        zca_fit(torch.zeros(4, 3), eps_on="both")


def test_defaults_reproduce_the_authors_process_cifar_pipeline():
    """``process_cifar.py`` (ucla-vision/entropy-sgd) re-derived in numpy: GCN by the ddof=1 std, then PCA via the
    SVD of the (D, N) centred data scaled by 1/sqrt(N - 1) and W = U diag(1 / (S + 1e-5)) U^T."""
    rng = np.random.default_rng(6)
    train = rng.uniform(0, 255, size=(300, 3, 3, 3)) @ np.diag([1.0, 0.5, 2.0])  # correlated pixels, D = 27
    test = rng.uniform(0, 255, size=(30, 3, 3, 3))
    d = _numpy_gcn(train).reshape(300, -1).T
    m = d.mean(axis=1)[:, None]
    u, s, _ = np.linalg.svd((d - m) / np.sqrt(d.shape[1] - 1), full_matrices=False)
    w_ref = u @ np.diag(1.0 / (s + 1e-5)) @ u.T
    expected = (w_ref @ (_numpy_gcn(test).reshape(30, -1).T - m)).T

    mean, w = zca_fit(global_contrast_normalize(torch.from_numpy(train)))
    ours = zca_apply(global_contrast_normalize(torch.from_numpy(test)), mean, w).reshape(30, -1).numpy()
    # GCN leaves no variance along the constant image: process_cifar.py multiplies the round-off there by 1 / eps
    # (its value then depends on the BLAS threads), we project it out; compare on the other D - 1 directions
    np.testing.assert_allclose(
        ours - ours.mean(1, keepdims=True), expected - expected.mean(1, keepdims=True), atol=1e-4
    )


@pytest.mark.parametrize("n", [300, 20])  # N >= D (eigendecomposition) and N < D (SVD)
def test_the_constant_image_direction_that_gcn_empties_is_projected_out(n):
    """After GCN every image has mean 0, so the constant direction has no variance: W maps it to 0 rather than
    multiplying its round-off by 1 / eps (the rank test is on the eigenvalues, not on their square roots)."""
    x = torch.from_numpy(np.random.default_rng(7).uniform(0, 255, size=(n, 3, 3, 3)))
    _, w = zca_fit(global_contrast_normalize(x))
    ones = torch.ones(w.shape[0]) / w.shape[0] ** 0.5
    assert float((w.double() @ ones.double()).norm()) < 1e-3
