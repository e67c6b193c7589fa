"""EntropySGD's Langevin noise: i.i.d. N(0, 1) per element and per step (Algorithm 1, arXiv:1611.01838), on the CPU
the counter-based Philox draws (tests/functional/test_philox.py checks the generator itself); the values depend on
the seed only, and resume is bit-identical."""

import copy
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from scipy import linalg, stats
from torch import nn

from iclr17 import EntropySGD
from iclr17.functional.philox import philox_normal_torch

SIZES = [(300, 500), (120_001,)]  # two tensors, 270,001 draws per step: several threads' shares, not a multiple of 4


@contextmanager
def threads(n: int):
    """torch's intra-op thread count, which the CPU noise is drawn on, set to ``n`` for the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def noise_draws(steps: int, seed: int = 0, sizes=SIZES) -> list[torch.Tensor]:
    """The noise of ``steps`` outer steps of one Langevin step each, read off the running average: with a zero
    gradient, gamma = 0, std 2 sqrt(eta') = 1 (``noise="v1"``, eta' = 1/4) and alpha = 1, mu = x + xi with x = 0
    (lr = 0 keeps it there), so mu is the draw xi itself, exactly."""
    params = [nn.Parameter(torch.zeros(size)) for size in sizes]
    opt = EntropySGD(params, lr=0.0, L=1, gamma0=0.0, eta_prime=0.25, noise="v1", alpha=1.0, momentum=0.0, seed=seed)

    def closure():
        loss = sum((p * 0).sum() for p in params)
        loss.backward()
        return loss

    draws = []
    for _ in range(steps):
        opt.step(closure)
        draws.append(torch.cat([opt.state[p]["mu"].reshape(-1) for p in params]).clone())
    return draws


def test_the_noise_is_iid_standard_normal_across_tensors_and_steps():
    with threads(2):
        first, second = noise_draws(steps=2)
    both = torch.cat([first, second]).double().numpy()
    n = len(both)
    assert stats.kstest(both, "norm").pvalue > 0.01
    assert abs(both.mean()) < 4 / np.sqrt(n)
    assert abs(both.var() - 1) < 4 * np.sqrt(2 / n)
    halves = [first[: len(first) // 2], first[len(first) // 2 :], second[: len(first) // 2]]
    m = min(len(h) for h in halves)
    for a, b in ((0, 1), (0, 2), (1, 2)):  # across the threads' shares and across steps
        assert abs(np.corrcoef(halves[a][:m], halves[b][:m])[0, 1]) < 4 / np.sqrt(m)
    for lag in (1, 2, 3, 4):  # within a Philox block (values 4k .. 4k + 3) and across blocks
        assert abs(np.corrcoef(both[:-lag], both[lag:])[0, 1]) < 4 / np.sqrt(n)


def test_the_noise_does_not_depend_on_the_thread_count_and_follows_the_seed():
    with threads(1):
        serial = noise_draws(steps=2)
    with threads(2):
        parallel = noise_draws(steps=2)
        other_seed = noise_draws(steps=1, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))
    assert not torch.equal(serial[0], other_seed[0])
    assert not torch.equal(serial[0], serial[1])


def test_step_k_draws_the_philox_draw_k_of_the_seed_in_the_parameters_dtype():
    for dtype in (torch.float32, torch.float64):
        params = [nn.Parameter(torch.zeros(size, dtype=dtype)) for size in SIZES]
        opt = EntropySGD(params, lr=0.1, seed=2**63 + 5)
        for k in range(3):
            draws = opt._gaussians(params)
            flat = torch.cat([d.reshape(-1) for d in draws])
            assert flat.dtype == dtype
            assert torch.equal(flat, philox_normal_torch(len(flat), 2**63 + 5, k).to(dtype))
        assert opt.cpu_noise_draws == 3


# (preset and switches, lr, the noise std per Langevin step written from the papers and the code): Algorithm 1 of v5
# adds sqrt(eta') eps xi; the authors' code adds eps / sqrt(0.5 eta') xi to the gradient before its eta' step, so
# eta' eps / sqrt(0.5 eta') xi = eps sqrt(2 eta') xi; arXiv v1 adds 2 sqrt(eta') xi (no eps) with the inner step
# eta' relative to lr.
NOISE_SCHEMES = {
    "paper_v5": (dict(), 1.0, lambda eta, eps: np.sqrt(eta) * eps),
    "code": (dict(noise="code"), 1.0, lambda eta, eps: eps * eta / np.sqrt(0.5 * eta)),
    "arxiv_v1": (dict(variant="arxiv_v1"), 0.5, lambda eta, eps: 2 * np.sqrt(eta)),
}


@pytest.mark.parametrize("scheme", list(NOISE_SCHEMES))
def test_the_langevin_chain_reaches_the_stationary_covariance_of_its_recursion(scheme):
    """On f(x') = 1/2 x'^T A x' (A random, positive definite) with a fixed scope gamma the Langevin loop is the linear
    recursion x'_{k+1} = M x'_k + eta gamma x + s xi, M = I - eta (A + gamma I), whose stationary law has mean
    (A + gamma I)^-1 gamma x and covariance Sigma = M Sigma M^T + s^2 I (scipy's discrete Lyapunov solver). K = 20,000
    independent chains (the rows of one parameter: f sums over them, the noise is i.i.d. per element) start at x and
    run L = 150 steps, after which the start's bias (|M^(L-1)| |x - mean| in the mean, |M^(L-1)|^2 Sigma in the
    covariance) is far below the sampling errors; the closure reads the last x' it sees. The sample mean must be
    within 5 standard errors of the mean, and the sample covariance within 5 standard errors of Sigma in every entry
    (a Wishart entry's variance is (Sigma_ii Sigma_jj + Sigma_ij^2) / K: about 1% of Sigma on the diagonal); a noise
    std off by sqrt(2) (paper_v5 against code) misses by about 100 standard errors."""
    switches, lr, std = NOISE_SCHEMES[scheme]
    d, K, L, gamma, eps = 3, 20_000, 150, 0.7, 0.5
    generator = torch.Generator().manual_seed(list(NOISE_SCHEMES).index(scheme))  # A and x differ
    m = torch.randn(d, d, generator=generator, dtype=torch.float64)
    a = (m @ m.T / d + 0.5 * torch.eye(d, dtype=torch.float64)).numpy()
    x = torch.randn(d, generator=generator, dtype=torch.float64)
    hessian = a + gamma * np.eye(d)
    eta = 0.4 / np.linalg.eigvalsh(hessian).max()  # the inner step; |M| <= 1 - 0.4 lambda_min / lambda_max
    M = np.eye(d) - eta * hessian
    s = std(eta, eps)
    sigma = linalg.solve_discrete_lyapunov(M, s**2 * np.eye(d))
    mean = np.linalg.solve(hessian, gamma * x.numpy())
    assert np.linalg.norm(np.linalg.matrix_power(M, L - 1), 2) < 1e-6  # the start's bias: far below the errors

    chains = nn.Parameter(x.expand(K, d).clone())
    a_torch, calls, last = torch.from_numpy(a), [], []

    def closure():
        calls.append(None)
        if len(calls) == L + 1:  # the (L + 1)-th call sees x' after L - 1 Langevin steps
            last.append(chains.detach().numpy().copy())
        loss = 0.5 * ((chains @ a_torch) * chains).sum()
        loss.backward()
        return loss

    opt = EntropySGD(
        [chains], lr=lr, L=L, gamma0=gamma, gamma1=0.0, eta_prime=eta / lr, eps=eps, momentum=0.0, seed=1, **switches
    )
    with threads(1):  # the draws do not depend on it; one thread keeps the small closures fast on a busy machine
        opt.step(closure)
    samples = last[0]
    sample_mean, sample_cov = samples.mean(0), np.cov(samples, rowvar=False)
    assert np.all(np.abs(sample_mean - mean) < 5 * np.sqrt(np.diag(sigma) / K))
    standard_error = np.sqrt((np.outer(np.diag(sigma), np.diag(sigma)) + sigma**2) / K)
    assert np.all(np.abs(sample_cov - sigma) < 5 * standard_error), (sample_cov, sigma)
    for off in (2.0, 0.5):  # the noise variance of the other scheme is told apart
        assert np.any(np.abs(sample_cov - off * sigma) > 5 * standard_error)


def _quadratic_run(opt_state=None, steps=3, x=None):
    x = nn.Parameter(torch.linspace(-1, 1, 263_000) if x is None else x.clone())
    target = torch.cos(torch.arange(263_000.0))
    opt = EntropySGD([x], lr=0.5, L=2, eps=1e-2, seed=5)
    if opt_state is not None:
        opt.load_state_dict(copy.deepcopy(opt_state))  # loading shares the state's tensors, and steps change them

    def closure():
        loss = 0.5 * (x - target).pow(2).sum()
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return x.detach(), opt


def test_resume_is_bit_identical():
    with threads(2):
        x_half, opt = _quadratic_run(steps=3)
        saved = opt.state_dict()
        assert saved["cpu_noise"] == {"seed": 5, "draws": 3 * 2}  # L = 2 Langevin draws per step
        x_full, _ = _quadratic_run(steps=6)
        x_resumed, _ = _quadratic_run(saved, steps=3, x=x_half)
    assert torch.equal(x_full, x_resumed)


def test_a_checkpoint_with_cpu_generators_resumes_deterministically_with_a_warning():
    """A checkpoint from before the counter-based CPU noise holds torch generator states for the CPU: the run
    resumes, from draw 0 of the counter, the same way each time, and says so."""
    _, opt = _quadratic_run(steps=1)
    state = opt.state_dict()
    del state["cpu_noise"]
    state["noise_generators"] = {"cpu": torch.stack([torch.Generator().manual_seed(3).get_state()] * 8)}
    with pytest.warns(UserWarning, match="CPU noise came from torch generators"):
        first, resumed = _quadratic_run(state, steps=2)
    with pytest.warns(UserWarning, match="CPU noise came from torch generators"):
        again, _ = _quadratic_run(state, steps=2)
    assert torch.equal(first, again)
    assert resumed.cpu_noise_draws == 2 * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _quadratic_run(opt.state_dict(), steps=1)  # a current checkpoint: no warning
