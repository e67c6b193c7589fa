"""Conjugate gradient on Wishart systems (arXiv:1511.06444; Deift, Menon, Olver, Trogdon, PNAS 2014) against
independent references: the closed-form critical width, the Wishart matrices rebuilt from the same random draws,
``torch.linalg.solve``, and a from-scratch numpy CG loop for the residual-norm halting rule."""

import math

import numpy as np
import pytest
import torch

from iclr17.functional.conjugate_gradient import cg_until_halted, critical_width, wishart_systems
from tests.functional.numpy_references import numpy_cg


@pytest.mark.parametrize(("n", "c", "m"), [(30, 1.0, 40), (100, 1.0, 120), (100, 0.25, 110), (500, 1.0, 544)])
def test_critical_width_is_n_plus_floor_sqrt_4cn(n, c, m):
    assert critical_width(n, c) == m == n + math.floor(math.sqrt(4 * c * n))


@pytest.mark.parametrize("ensemble", ["gaussian", "bernoulli"])
def test_wishart_systems_are_x_xt_over_m_with_unit_right_hand_sides(ensemble):
    a, b = wishart_systems(3, 6, 30, ensemble, torch.Generator().manual_seed(0))
    replay = torch.Generator().manual_seed(0)  # the same draws, in the same order
    if ensemble == "gaussian":
        x = torch.randn(3, 6, 30, generator=replay, dtype=torch.float64)
    else:
        x = torch.randint(0, 2, (3, 6, 30), generator=replay).double() * 2 - 1
    rhs = torch.randn(3, 6, generator=replay, dtype=torch.float64)
    torch.testing.assert_close(a, x @ x.transpose(1, 2) / 30)
    torch.testing.assert_close(b, rhs / rhs.norm(dim=1, keepdim=True))
    assert a.dtype == b.dtype == torch.float64
    assert torch.linalg.eigvalsh(a).min() > 0  # positive definite: M > N
    if ensemble == "bernoulli":  # (X X^T)_ii = sum of M squares of +-1
        torch.testing.assert_close(a.diagonal(dim1=1, dim2=2), torch.ones(3, 6, dtype=torch.float64))


def test_wishart_matrices_average_to_the_identity():
    a, b = wishart_systems(400, 5, 20, "gaussian", torch.Generator().manual_seed(1))
    torch.testing.assert_close(a.mean(dim=0), torch.eye(5, dtype=torch.float64), atol=0.05, rtol=0)  # E X X^T / M = I
    torch.testing.assert_close(b.mean(dim=0), torch.zeros(5, dtype=torch.float64), atol=0.1, rtol=0)
    with pytest.raises(ValueError, match="uniform"):
        wishart_systems(1, 2, 3, "uniform", torch.Generator())


@pytest.mark.parametrize("ensemble", ["gaussian", "bernoulli"])
def test_batched_cg_halts_when_a_plain_loop_does_and_solves_the_system(ensemble):
    n = 50  # well conditioned (M = 4N): the residuals halve at each step, long before N, so rounding cannot move
    a, b = wishart_systems(4, n, 4 * n, ensemble, torch.Generator().manual_seed(2))  # a crossing
    eps = [1e-3, 1e-6, 1e-10]
    first, last, x = cg_until_halted(a, b, torch.tensor(eps, dtype=torch.float64), max_steps=500)
    for k in range(4):
        expected, x_loop = numpy_cg(a[k].numpy(), b[k].numpy(), eps, 500)
        assert first[k].tolist() == expected
        np.testing.assert_allclose(x[k].numpy(), x_loop, rtol=0, atol=1e-11)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), atol=1e-9, rtol=0)
    true_residual = torch.linalg.vector_norm(b - torch.bmm(a, x.unsqueeze(-1)).squeeze(-1), dim=1)
    assert (true_residual < 1e-10 * 1.01).all()  # the recursive residual the rule watches is the true one here
    assert last == first.max().item()
    assert (first[:, 0] < first[:, 1]).all() and (first[:, 1] < first[:, 2]).all()


def test_cg_on_an_n_by_n_system_converges_within_n_steps():
    a, b = wishart_systems(2, 8, 16, "gaussian", torch.Generator().manual_seed(3))
    first, _, x = cg_until_halted(a, b, torch.tensor([1e-10], dtype=torch.float64))
    assert (first[:, 0] <= 8 + 2).all()  # exact arithmetic: at most N steps; two spare for rounding
    torch.testing.assert_close(x, torch.linalg.solve(a, b))


def test_systems_that_do_not_halt_are_censored_at_max_steps():
    n = 40  # critical scaling, slow: 3 iterations are far too few for 1e-12
    a, b = wishart_systems(3, n, critical_width(n), "bernoulli", torch.Generator().manual_seed(4))
    first, last, _ = cg_until_halted(a, b, torch.tensor([2.0, 1e-12], dtype=torch.float64), max_steps=3)
    assert last == 3 and (first[:, 0] == 0).all() and (first[:, 1] == -1).all()  # ||b|| = 1 < 2 at step 0
