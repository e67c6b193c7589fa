"""The p = 3 spherical spin glass (arXiv:1511.06444) against independent references: scipy's laws for the coupling
ensembles, a plain triple loop for the energy, autograd for the gradient, and a one-instance Lua-style loop for the
descent and its halting times."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from iclr17.functional.spin_glass import (
    COUPLING_ENSEMBLES,
    LOCKSTEP_BYTES,
    descend_until_halted,
    energy,
    lockstep_group_size,
    random_sphere_points,
    sample_couplings,
    sphere_gradient,
    sphere_step,
    step_size,
    symmetrize,
)

LAWS = {  # each ensemble's law, written with scipy: mean 0, variance 1
    "gaussian": stats.norm(),
    "uniform": stats.uniform(loc=-math.sqrt(3), scale=2 * math.sqrt(3)),
    "exponential": stats.expon(loc=-1.0),
}


@pytest.mark.parametrize("ensemble", COUPLING_ENSEMBLES)
def test_couplings_follow_their_law_with_mean_zero_and_variance_one(ensemble):
    x = sample_couplings(3, 20, ensemble, torch.Generator().manual_seed(0), torch.float64)
    assert x.shape == (3, 20, 20, 20) and x.dtype == torch.float64
    sample = x.flatten().numpy()  # 24,000 draws: the standard error of the mean is 0.0065
    assert abs(sample.mean()) < 0.03 and sample.var(ddof=1) == pytest.approx(1.0, abs=0.04)
    if ensemble == "bernoulli":
        values, counts = np.unique(sample, return_counts=True)
        assert values.tolist() == [-1.0, 1.0] and stats.binomtest(int(counts[1]), len(sample)).pvalue > 0.01
    else:
        assert stats.kstest(sample, LAWS[ensemble].cdf).pvalue > 0.01
        assert stats.kstest(sample, stats.norm().cdf if ensemble != "gaussian" else LAWS["uniform"].cdf).pvalue < 1e-6


def test_an_unknown_ensemble_is_refused_by_name():
    with pytest.raises(ValueError, match="cauchy"):
        sample_couplings(1, 3, "cauchy", torch.Generator())


def _loop_energy(x: torch.Tensor, w: torch.Tensor) -> float:
    """H(w) = (1/N) sum_ijk x_ijk w_i w_j w_k as a plain triple loop over one instance."""
    n = len(w)
    total = 0.0
    for i, j, k in itertools.product(range(n), repeat=3):
        total += x[i, j, k].item() * w[i].item() * w[j].item() * w[k].item()
    return total / n


def test_energy_equals_a_triple_loop_and_symmetrising_changes_nothing_but_the_symmetry():
    generator = torch.Generator().manual_seed(1)
    x = sample_couplings(2, 5, "exponential", generator, torch.float64)
    w = random_sphere_points(2, 5, generator, torch.float64)
    xs = symmetrize(x)
    for k in range(2):
        assert energy(x, w)[k].item() == pytest.approx(_loop_energy(x[k], w[k]), rel=1e-12)
        average = sum(x[k].permute(*p) for p in itertools.permutations(range(3))) / 6
        torch.testing.assert_close(xs[k], average)
    for p in itertools.permutations((1, 2, 3)):
        torch.testing.assert_close(xs.permute(0, *p), xs)
    torch.testing.assert_close(energy(xs, w), energy(x, w))


def test_projected_gradient_is_autograd_projected_on_the_tangent_space():
    generator = torch.Generator().manual_seed(2)
    x = sample_couplings(3, 6, "uniform", generator, torch.float64)
    w = random_sphere_points(3, 6, generator, torch.float64)
    h, projected = sphere_gradient(symmetrize(x), w)
    for k in range(3):
        v = w[k].clone().requires_grad_(True)
        (euclidean,) = torch.autograd.grad(energy(x[k : k + 1], v.unsqueeze(0)).sum(), v)
        unit = w[k] / w[k].norm()
        torch.testing.assert_close(projected[k], euclidean - (euclidean @ unit) * unit)
        assert (projected[k] @ w[k]).abs().item() < 1e-12  # tangent to the sphere
        # and it is the Euclidean gradient of the energy of the point pulled back onto the sphere
        (on_sphere,) = torch.autograd.grad(_tensor_energy(x[k], v * math.sqrt(6) / v.norm()), v)
        torch.testing.assert_close(projected[k], on_sphere)
    torch.testing.assert_close(h, energy(x, w))  # Euler: H = (g . w) / 3 for a cubic form


def test_random_points_are_uniform_on_the_sphere_of_radius_sqrt_n():
    w = random_sphere_points(20_000, 4, torch.Generator().manual_seed(3), torch.float64)
    torch.testing.assert_close(w.norm(dim=1), torch.full((20_000,), 2.0, dtype=torch.float64))
    # uniform on the sphere: mean 0 and second moment (N / N) I = I; each coordinate / sqrt(N) has a Beta law
    torch.testing.assert_close(w.mean(dim=0), torch.zeros(4, dtype=torch.float64), atol=0.03, rtol=0)
    torch.testing.assert_close(w.T @ w / 20_000, torch.eye(4, dtype=torch.float64), atol=0.04, rtol=0)
    squared = (w[:, 0] / 2).square().numpy()  # u_1^2 ~ Beta(1/2, (N - 1)/2) for a uniform unit vector
    assert stats.kstest(squared, stats.beta(0.5, 1.5).cdf).pvalue > 0.01


def test_sphere_step_keeps_the_radius_and_step_size_follows_the_lua_count():
    generator = torch.Generator().manual_seed(4)
    w = random_sphere_points(3, 7, generator, torch.float64)
    g = torch.randn(3, 7, generator=generator, dtype=torch.float64)
    stepped = sphere_step(w, g, 0.3)
    torch.testing.assert_close(stepped.norm(dim=1), torch.full((3,), math.sqrt(7), dtype=torch.float64))
    moved = w - 0.3 * g
    torch.testing.assert_close(stepped, moved / moved.norm(dim=1, keepdim=True) * math.sqrt(7))
    assert step_size(0.2, 0.0, 41) == 0.2
    assert step_size(0.2, 0.5, 0) == pytest.approx(0.2 / 1.5)  # the first update is the Lua code's time 1
    assert step_size(0.2, 0.5, 3) == pytest.approx(0.2 / 3.0)


def test_a_small_step_against_the_projected_gradient_lowers_the_energy():
    generator = torch.Generator().manual_seed(5)
    x = symmetrize(sample_couplings(4, 8, "gaussian", generator, torch.float64))
    w = random_sphere_points(4, 8, generator, torch.float64)
    h, g = sphere_gradient(x, w)
    h_next, _ = sphere_gradient(x, sphere_step(w, g, 1e-4))
    # first order: dH = -gamma ||g||^2 (the rescaling to the sphere is second order)
    torch.testing.assert_close(h_next - h, -1e-4 * g.square().sum(dim=1), rtol=1e-2, atol=0)


def _lua_loop(x, w, eps, lr, decay, max_steps):
    """``3spin.lua`` for one instance: autograd gradient, projection, step, rescale; first step below each eps."""
    n, first = w.shape[0], [-1] * len(eps)
    for step in range(max_steps + 1):
        v = w.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(_tensor_energy(x, v), v)
        g = g - (g @ w) / n * w
        for e, threshold in enumerate(eps):
            if first[e] < 0 and g.norm().item() < threshold:
                first[e] = step
        if min(first) >= 0:
            break
        w = w - lr / (1 + (step + 1) * decay) * g
        w = w * math.sqrt(n) / w.norm()
    return first, w


def _tensor_energy(x, w):
    return (x * w[:, None, None] * w[None, :, None] * w[None, None, :]).sum() / w.shape[0]


@pytest.mark.parametrize(("decay", "group_size"), [(0.0, None), (0.01, None), (0.0, 1), (0.01, 2), (0.0, 3)])
def test_descent_records_the_halting_times_of_one_instance_at_a_time(decay, group_size):
    generator = torch.Generator().manual_seed(6)
    x = sample_couplings(5, 8, "bernoulli", generator, torch.float64)
    w = random_sphere_points(5, 8, generator, torch.float64)
    eps = [1.0, 0.1, 0.01]
    first, last, w_final = descend_until_halted(
        symmetrize(x), w, torch.tensor(eps, dtype=torch.float64), 0.2, decay, group_size=group_size
    )
    expected = [_lua_loop(x[k], w[k], eps, 0.2, decay, 10_000)[0] for k in range(5)]
    assert first.tolist() == expected
    assert last == max(max(row) for row in expected)
    torch.testing.assert_close(w_final.norm(dim=1), torch.full((5,), math.sqrt(8), dtype=torch.float64))
    slowest = int(first.max(dim=1).values.argmax())  # never left the working set early: its last point is exact
    torch.testing.assert_close(w_final[slowest], _lua_loop(x[slowest], w[slowest], eps, 0.2, decay, 10_000)[1])


def test_instances_that_never_halt_are_censored_at_the_last_step():
    generator = torch.Generator().manual_seed(7)
    x, w = sample_couplings(3, 6, "uniform", generator), random_sphere_points(3, 6, generator)
    first, last, _ = descend_until_halted(symmetrize(x), w, torch.tensor([10.0, 1e-12]), max_steps=5)
    assert last == 5 and (first[:, 1] == -1).all() and (first[:, 0] >= 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grouping_changes_no_halting_time_and_no_last_point(dtype):
    generator = torch.Generator().manual_seed(8)
    k, n = 7, 12
    xs = symmetrize(sample_couplings(k, n, "gaussian", generator, dtype))
    w = random_sphere_points(k, n, generator, dtype)
    eps = torch.tensor([1.0, 0.1, 0.03], dtype=dtype)
    first, last, w_final = descend_until_halted(xs, w, eps, max_steps=300, group_size=k)  # all in lockstep
    assert (first[:, -1] >= 0).sum() >= 3 and len(set(first[:, -1].tolist())) > 2  # halted runs that differ
    for group_size in (1, 2, 3, 6, None):
        grouped = descend_until_halted(xs, w, eps, max_steps=300, group_size=group_size)
        assert torch.equal(grouped[0], first) and grouped[1] == last
        slowest = int(first.max(dim=1).values.argmax())  # never leaves its working set early in either run
        assert torch.equal(grouped[2][slowest], w_final[slowest])
    for one in range(k):  # and each instance alone, as a loop calls it
        alone = descend_until_halted(xs[one : one + 1], w[one : one + 1], eps, max_steps=300)
        assert torch.equal(alone[0][0], first[one])


def test_lockstep_groups_hold_at_most_lockstep_bytes_of_couplings_on_a_cpu():
    def couplings(k, n, dtype=torch.float32):
        return torch.empty(k, n, n, n, dtype=dtype)

    assert lockstep_group_size(couplings(256, 32)) == LOCKSTEP_BYTES // (4 * 32**3) == 64
    assert lockstep_group_size(couplings(10, 32)) == 10  # all of them when they fit
    assert lockstep_group_size(couplings(32, 100)) == LOCKSTEP_BYTES // (4 * 100**3) == 2
    assert lockstep_group_size(couplings(32, 100, torch.float64)) == 1
    assert lockstep_group_size(couplings(16, 200)) == 1  # 32 MB each: one at a time, nothing to reuse
    assert lockstep_group_size(couplings(16, 200, torch.float64).to("meta")) == 16  # not a CPU: all at once
    with pytest.raises(ValueError, match="group_size"):
        descend_until_halted(couplings(2, 3), torch.ones(2, 3), torch.tensor([0.1]), group_size=0)
