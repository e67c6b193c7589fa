"""The paper's conjugate-gradient setup (arXiv:1511.06444: b with i.i.d. U(-1, 1) entries, x0 = b, the width
M = N + 2 floor(sqrt(N))) against independent references: the same random draws replayed, scipy's uniform law,
a from-scratch numpy CG loop started from x0, and ``torch.linalg.solve``."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from iclr17.functional.conjugate_gradient import cg_until_halted, critical_width, wishart_systems
from tests.functional.numpy_references import numpy_cg


@pytest.mark.parametrize("n", [100, 500])
def test_c_one_is_the_papers_width_at_its_sizes_and_c_zero_is_square(n):
    assert critical_width(n, 1.0) == n + 2 * math.floor(math.sqrt(n))  # 120 and 544
    assert critical_width(n, 0.0) == n


def test_uniform_right_hand_sides_are_iid_uniform_on_minus_one_one_drawn_after_x():
    a, b = wishart_systems(200, 10, 14, "gaussian", torch.Generator().manual_seed(0), rhs="uniform")
    replay = torch.Generator().manual_seed(0)
    x = torch.randn(200, 10, 14, generator=replay, dtype=torch.float64)
    u = torch.rand(200, 10, generator=replay, dtype=torch.float64)
    torch.testing.assert_close(a, x @ x.transpose(1, 2) / 14)
    torch.testing.assert_close(b, 2 * u - 1)
    assert stats.kstest(b.flatten().numpy(), stats.uniform(loc=-1, scale=2).cdf).pvalue > 0.01
    with pytest.raises(ValueError, match="rhs"):
        wishart_systems(1, 2, 3, "gaussian", torch.Generator(), rhs="normal")


@pytest.mark.parametrize("ensemble", ["gaussian", "bernoulli"])
def test_cg_from_x0_equals_a_plain_loop_from_x0_and_solves_the_system(ensemble):
    n = 40  # well conditioned (M = 4N): the residuals fall fast, so rounding cannot move a crossing
    a, b = wishart_systems(5, n, 4 * n, ensemble, torch.Generator().manual_seed(1), rhs="uniform")
    eps = [1e-2, 1e-6, 1e-10]
    first, last, x = cg_until_halted(a, b, torch.tensor(eps, dtype=torch.float64), max_steps=500, x0=b)
    for k in range(5):
        expected, x_loop = numpy_cg(a[k].numpy(), b[k].numpy(), eps, 500, x0=b[k].numpy())
        assert first[k].tolist() == expected
        np.testing.assert_allclose(x[k].numpy(), x_loop, rtol=0, atol=1e-11)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), atol=1e-9, rtol=0)
    assert last == first.max().item() and (first[:, 0] > 0).all()  # ||b - A b|| is far above 1e-2 at the start
    start_zero, _, _ = cg_until_halted(a, b, torch.tensor(eps, dtype=torch.float64), max_steps=500)
    assert not torch.equal(start_zero, first)  # the start matters: another first residual, other halting times
