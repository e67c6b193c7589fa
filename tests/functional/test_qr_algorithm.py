"""The unshifted QR algorithm's first deflation (arXiv:1511.06444, its QR experiment; Pfrang, Deift, Menon 2014)
against independent references: block norms by direct slicing, the spectrum by ``numpy.linalg.eigvalsh``, halting
times by a from-scratch numpy loop (``numpy.linalg.qr``, every k at every step), and, for a matrix of known
spectrum, the asymptotic rate ``|X_n(k)| ~ |lambda_k - lambda_{k+1}| |L_{k+1,k}| |lambda_{k+1} / lambda_k|^n``
(``V^T = L U`` without pivoting, V the eigenvectors, eigenvalues sorted by decreasing ``|lambda|``)."""

import math

import numpy as np
import pytest
import torch

from iclr17.functional.halting import halting_times
from iclr17.functional.qr_algorithm import deflation_norms, qr_step, qr_until_deflated, wigner_matrices
from tests.functional.numpy_references import numpy_first_deflation


@pytest.mark.parametrize("n", [2, 3, 7, 12])
def test_block_norms_equal_a_direct_slicing_loop(n):
    x = torch.randn(4, n, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)  # not symmetric
    norms = deflation_norms(x)
    assert norms.shape == (4, n - 1)
    for j in range(4):
        expected = [np.linalg.norm(x[j, :k, k:].numpy()) for k in range(1, n)]
        np.testing.assert_allclose(norms[j].numpy(), expected, rtol=1e-13, atol=0)


def test_tiny_blocks_keep_their_relative_precision():
    noise = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.diag(torch.arange(1.0, 9.0, dtype=torch.float64))[None] + 1e-14 * noise  # blocks of size ~1e-13
    expected = [np.linalg.norm(x[0, :k, k:].numpy()) for k in range(1, 8)]
    np.testing.assert_allclose(deflation_norms(x)[0].numpy(), expected, rtol=1e-13, atol=0)
    assert max(expected) < 1e-12


def test_gaussian_wigner_matrices_are_the_goe_drawn_from_the_generator():
    h = wigner_matrices(3, 5, "gaussian", torch.Generator().manual_seed(4))
    a = torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(h, (a + a.transpose(1, 2)) / math.sqrt(10), rtol=0, atol=0)


@pytest.mark.parametrize("ensemble", ["gaussian", "bernoulli"])
def test_wigner_entries_have_mean_zero_and_variance_one_over_n(ensemble):
    n = 40
    h = wigner_matrices(400, n, ensemble, torch.Generator().manual_seed(1))
    assert h.dtype == torch.float64 and torch.equal(h, h.transpose(1, 2))
    rows, columns = torch.triu_indices(n, n, 1)
    upper = h[:, rows, columns].flatten().numpy()
    diagonal = torch.diagonal(h, dim1=1, dim2=2).flatten().numpy()
    assert abs(upper.mean()) < 4 * math.sqrt(1 / n / upper.size)
    assert upper.var() * n == pytest.approx(1.0, abs=0.02)
    assert diagonal.var() * n == pytest.approx(2.0 if ensemble == "gaussian" else 1.0, abs=0.1)
    if ensemble == "bernoulli":
        assert set(np.round(np.abs(h.numpy()) * math.sqrt(n), 12).flatten()) == {1.0}


def test_the_iterates_keep_the_spectrum_and_stay_symmetric():
    h = wigner_matrices(3, 10, "gaussian", torch.Generator().manual_seed(2))
    x = h
    for _ in range(25):
        x = qr_step(x)
    for j in range(3):
        np.testing.assert_allclose(
            np.linalg.eigvalsh(x[j].numpy()), np.linalg.eigvalsh(h[j].numpy()), rtol=0, atol=1e-12
        )
    torch.testing.assert_close(x, x.transpose(1, 2), rtol=0, atol=1e-12)
    assert not torch.allclose(x, h, atol=1e-3)  # it moved


def _ambiguous(smallest: list[list[float]], eps: list[float], first: list[int], tolerance: float = 1e-7) -> bool:
    """A run whose smallest norm sat within float noise of an eps at some step, or whose two smallest norms were
    within noise of each other at a halting step: there, rounding (another LAPACK) may move the step or the k."""
    near_eps = any(abs(s[0] / t - 1) < tolerance for s in smallest for t in eps)
    near_tie = any(abs(smallest[t][1] / smallest[t][0] - 1) < tolerance for t in first if smallest[t][0] > 0)
    return near_eps or near_tie


@pytest.mark.parametrize("ensemble", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("n", [6, 9, 12])
def test_halting_times_equal_a_from_scratch_numpy_loop(ensemble, n):
    """Equal run by run, except where a norm sits within 1e-7 (relative) of an eps or of the next norm: such runs
    are left out (``_ambiguous``), and at most one of the 16 may be."""
    eps = [1e-2, 1e-5, 1e-9]
    h = wigner_matrices(16, n, ensemble, torch.Generator().manual_seed(10 * n + len(ensemble)))
    first, last, deflated = qr_until_deflated(h, torch.tensor(eps), max_steps=2000)
    compared = 0
    for j in range(16):
        expected, expected_k, smallest = numpy_first_deflation(h[j].numpy(), eps, 2000)
        if _ambiguous(smallest, eps, expected):
            continue
        assert first[j].tolist() == expected and deflated[j].tolist() == expected_k, j
        compared += 1
    assert compared >= 15
    assert last == first.max().item() and (first >= 0).all() and (first[:, 0] <= first[:, 2]).all()
    assert (first[:, 0] < first[:, 2]).any()  # a singular +-1 matrix deflates at every eps in a step or two


def _lu_without_pivoting(a: np.ndarray) -> np.ndarray:
    """The unit lower-triangular L of a = L U (Doolittle, no row exchanges)."""
    n, lower, upper = len(a), np.eye(len(a)), a.copy()
    for j in range(n - 1):
        for i in range(j + 1, n):
            lower[i, j] = upper[i, j] / upper[j, j]
            upper[i] -= lower[i, j] * upper[j]
    return lower


@pytest.mark.parametrize(
    ("eigenvalues", "k"),
    [([5.0, -4.0, 3.0, -2.5, 1.2, -0.3], 5), ([5.0, 4.5, -4.0, 0.5, -0.45, 0.4], 3)],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_known_spectrum_deflates_at_its_smallest_ratio_at_the_predicted_step(eigenvalues, k, seed):
    lam = np.array(eigenvalues)
    v, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((6, 6)))
    h = torch.tensor(v @ np.diag(lam) @ v.T)[None]
    ratio = abs(lam[k] / lam[k - 1])
    c = abs(lam[k - 1] - lam[k]) * abs(_lu_without_pivoting(v.T.copy())[k, k - 1])
    eps = [1e-4, 1e-8, 1e-11]
    first, _, deflated = qr_until_deflated(h, torch.tensor(eps), max_steps=500)
    predicted = [math.log(e / c) / math.log(ratio) for e in eps]
    assert deflated[0].tolist() == [k] * 3
    assert all(abs(t - p) < 2 for t, p in zip(first[0].tolist(), predicted, strict=True)), (first, predicted)


def test_runs_past_max_steps_are_censored_never_dropped():
    h = wigner_matrices(5, 30, "gaussian", torch.Generator().manual_seed(3))
    full, _, _ = qr_until_deflated(h, torch.tensor([1e-2, 1e-10]), max_steps=5000)
    cap = int(full[:, 1].min()) + 1  # one run halts at 1e-10 within the cap, the rest do not
    first, last, deflated = qr_until_deflated(h, torch.tensor([1e-2, 1e-10]), max_steps=cap)
    assert last == cap and first.shape == (5, 2)
    cut = full > cap
    assert cut.any() and torch.equal(first[cut], torch.full_like(first[cut], -1))
    assert torch.equal(first[~cut], full[~cut]) and torch.equal(deflated < 0, cut)
    times, censored = halting_times(first, last)
    assert torch.equal(censored, cut) and torch.equal(times[cut], torch.full_like(times[cut], cap))
    first0, last0, _ = qr_until_deflated(h, torch.tensor([1e-10]), max_steps=0)
    assert last0 == 0 and (first0 == -1).all()


def test_the_definition_holds_at_equality_and_a_deflated_matrix_halts_at_step_zero():
    h = torch.tensor([[[2.0, 0.5], [0.5, 1.0]], [[3.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    first, last, deflated = qr_until_deflated(h, torch.tensor([0.5, 0.25]), max_steps=100)
    assert first[0, 0] == 0 and first[0, 1] > 0  # ||X_0(1)|| = 0.5 <= 0.5 (a strict rule would wait a step)
    assert first[1].tolist() == [0, 0] and deflated.tolist() == [[1, 1], [1, 1]]


def test_results_do_not_depend_on_which_matrices_share_the_batch():
    h = torch.cat([
        wigner_matrices(4, 20, "gaussian", torch.Generator().manual_seed(5)),
        wigner_matrices(4, 20, "bernoulli", torch.Generator().manual_seed(6)),
    ])  # fmt: skip
    eps = torch.tensor([1e-3, 1e-10])
    first, _, deflated = qr_until_deflated(h, eps)
    assert len(set(first[:, 1].tolist())) > 1  # matrices leave the batch at different steps
    for j in range(8):
        alone, _, k_alone = qr_until_deflated(h[j : j + 1], eps)
        assert torch.equal(alone[0], first[j]) and torch.equal(k_alone[0], deflated[j])
    order = torch.tensor([5, 2, 7, 0])
    shuffled, _, k_shuffled = qr_until_deflated(h[order], eps)
    assert torch.equal(shuffled, first[order]) and torch.equal(k_shuffled, deflated[order])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: wigner_matrices(2, 5, "uniform", torch.Generator()), "ensemble"),
        (lambda: wigner_matrices(2, 1, "gaussian", torch.Generator()), "n"),
        (lambda: qr_until_deflated(torch.eye(3)[None].double(), torch.tensor([0.0])), "eps"),
        (lambda: qr_until_deflated(torch.eye(3)[None].double(), torch.tensor([1e-3, -1.0])), "eps"),
        (lambda: qr_until_deflated(torch.eye(3)[None].double(), torch.tensor([[1e-3]])), "eps"),
        (lambda: qr_until_deflated(torch.eye(3)[None].double(), torch.tensor([1e-3]), max_steps=-1), "max_steps"),
        (lambda: qr_until_deflated(torch.ones(2, 3, 4).double(), torch.tensor([1e-3])), "h"),
        (lambda: qr_until_deflated(torch.ones(2, 1, 1).double(), torch.tensor([1e-3])), "h"),
    ],
)
def test_bad_arguments_are_refused_by_name(call, name):
    with pytest.raises(ValueError, match=f"{name}="):
        call()
