"""EntropySGD without Lightning: closed forms on a quadratic, reference optimizers, switches, resume."""

import copy
import functools
import inspect
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from iclr17 import EntropySGD
from iclr17.modules.entropy_sgd.optim import NOISE_STREAMS, langevin_noise_std, scope


@pytest.fixture(autouse=True)
def _float64():
    """Exact arithmetic for the closed forms; the default comes back after each test."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


A = torch.tensor([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]], dtype=torch.float64)
C = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def quadratic(x: torch.Tensor) -> torch.Tensor:
    """f(x) = 1/2 (x - c)^T A (x - c)."""
    d = x - C
    return 0.5 * d @ A @ d


def closure_for(x: nn.Parameter, counter: list | None = None):
    def closure():
        if counter is not None:
            counter.append(x.detach().clone())
        loss = quadratic(x)
        loss.backward()
        return loss

    return closure


def test_outer_gradient_is_the_local_entropy_gradient():
    """With eps = 0 the inner loop converges to <x'> = (A + gamma I)^-1 (A c + gamma x), so
    g = gamma (x - <x'>) must equal the gradient of -F, gamma A (A + gamma I)^-1 (x - c) (Gaussian integral)."""
    gamma = 0.5
    x0 = torch.tensor([3.0, 1.0, -1.0], dtype=torch.float64)
    x = nn.Parameter(x0.clone())
    opt = EntropySGD(
        [x],
        lr=1.0,
        L=2000,
        gamma0=gamma,
        gamma1=0.0,
        eta_prime=0.1,
        eps=0.0,
        alpha=1.0,
        momentum=0.0,
        outer_grad="gamma_x_minus_mu",
    )
    opt.step(closure_for(x))
    expected = gamma * A @ torch.linalg.solve(A + gamma * torch.eye(3), x0 - C)
    torch.testing.assert_close(x0 - x.detach(), expected, rtol=1e-9, atol=1e-10)


def test_running_average_converges_to_the_gibbs_mean_with_noise():
    """At any temperature the Gibbs measure of a quadratic has mean (A + gamma I)^-1 (A c + gamma x): the
    noisy chain's running average mu lands there (a slow average over a long chain)."""
    gamma = 1.0
    x0 = torch.tensor([3.0, 1.0, -1.0], dtype=torch.float64)
    x = nn.Parameter(x0.clone())
    opt = EntropySGD([x], lr=1.0, L=5000, gamma0=gamma, gamma1=0.0, eta_prime=0.1, eps=0.3, alpha=0.002, momentum=0.0)
    opt.step(closure_for(x))
    gibbs_mean = torch.linalg.solve(A + gamma * torch.eye(3), A @ C + gamma * x0)
    mu = opt.state[x]["mu"]
    assert (mu - gibbs_mean).abs().max() < 0.05
    assert (x0 - gibbs_mean).abs().max() > 1.0  # the test can tell the answer from the start


def _python_port_inner_loop(x0, L, gamma, eta, wd, mom, wd_after_momentum=False):
    """The inner loop of the authors' Python port (ucla-vision/entropy-sgd, python/optim.py), eps = 0, written
    out step by step: weight decay and Nesterov momentum act on the gradient, then the coupling -g (wc - w) is
    added (the Lua code adds its weight decay after the momentum instead). Returns the points the closure sees."""
    w, buffer, visited = x0.clone(), torch.zeros_like(x0), [x0.clone()]
    for _ in range(L):
        visited.append(w.clone())
        dw = A @ (w - C)
        if not wd_after_momentum:
            dw = dw + wd * w
        buffer = mom * buffer + dw
        dw = dw + mom * buffer
        dw = dw - gamma * (x0 - w)
        if wd_after_momentum:
            dw = dw + wd * w
        w = w - eta * dw
    return visited


@pytest.mark.parametrize("variant", ["official_python", "official_lua"])
def test_inner_loop_with_momentum_follows_the_authors_code(variant):
    """Momentum on the gradient only, the coupling added after it (with the coupling inside the momentum the
    effective gamma would be about 1 / (1 - momentum) = 10 times larger)."""
    gamma, wd, L = 0.3, 0.01, 7
    x0 = torch.tensor([3.0, 1.0, -1.0], dtype=torch.float64)
    x = nn.Parameter(x0.clone())
    visited: list = []
    opt = EntropySGD([x], L=L, gamma0=gamma, eta_prime=0.1, eps=0.0, momentum=0.9, weight_decay=wd, variant=variant)
    opt.step(closure_for(x, visited))
    expected = _python_port_inner_loop(x0, L, gamma, 0.1, wd, 0.9, wd_after_momentum=variant == "official_lua")
    torch.testing.assert_close(torch.stack(visited), torch.stack(expected))


def _algorithm_1_with_weight_decay(
    grad, x0, T, L, lr, gamma0, gamma1, eta, alpha, momentum, wd, in_langevin, nesterov=True
):
    """Algorithm 1 of arXiv:1611.01838 (v5) from scratch, eps = 0, on one flat vector: the Langevin gradient is
    grad f(x') + wd x' (the authors' codes) or grad f(x') alone, the outer gradient g = x - mu + wd x goes through
    Nesterov (or, ``nesterov=False``, heavy-ball: x <- x - lr buffer) momentum from a zero buffer."""
    x, buffer = x0.clone(), torch.zeros_like(x0)
    for t in range(T):
        gamma = gamma0 * (1 + gamma1) ** t
        xp, mu = x.clone(), x.clone()
        for _ in range(L):
            dxp = grad(xp) + (wd * xp if in_langevin else 0.0) - gamma * (x - xp)
            xp = xp - eta * dxp
            mu = (1 - alpha) * mu + alpha * xp
        g = x - mu + wd * x
        buffer = momentum * buffer + g
        x = x - lr * (g + momentum * buffer if nesterov else buffer)
    return x


def _random_quadratic(seed: int):
    """A random positive definite f(v) = 1/2 (v - c)^T a (v - c) over two parameter tensors of random shapes, v their
    flattened concatenation; returns the parameters, a closure on them, grad f on a flat vector and the flat start."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [
        tuple(torch.randint(1, 5, (2,), generator=generator).tolist()),
        tuple(torch.randint(1, 6, (1,), generator=generator).tolist()),
    ]
    n = sum(math.prod(shape) for shape in shapes)
    m = torch.randn(n, n, generator=generator)
    a, c = m @ m.T / n + 0.5 * torch.eye(n), torch.randn(n, generator=generator)
    x0 = torch.randn(n, generator=generator)
    params = [
        nn.Parameter(chunk.reshape(shape).clone())
        for chunk, shape in zip(x0.split([math.prod(s) for s in shapes]), shapes, strict=True)
    ]

    def closure():
        v = torch.cat([p.reshape(-1) for p in params])
        loss = 0.5 * (v - c) @ a @ (v - c)
        loss.backward()
        return loss

    return params, closure, lambda v: a @ (v - c), x0


def _flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


@pytest.mark.parametrize("in_langevin", [True, False])
def test_weight_decay_in_langevin_follows_algorithm_1_written_from_scratch(in_langevin):
    """Random quadratic over two parameter tensors of random shapes: three outer steps of the default preset agree
    with the loop above to 1e-12; the default (``None``) is the authors' choice, weight decay inside the loop."""
    params, closure, grad, x0 = _random_quadratic(int(in_langevin))
    hyper = dict(lr=0.7, L=6, gamma0=0.3, gamma1=0.1, eta_prime=0.2, alpha=0.75, momentum=0.9, weight_decay=0.05)
    switch = {} if in_langevin else {"weight_decay_in_langevin": False}
    opt = EntropySGD(params, eps=0.0, **hyper, **switch)
    for _ in range(3):
        opt.step(closure)
    got = _flat(params)
    reference = functools.partial(
        _algorithm_1_with_weight_decay, grad, x0, T=3, L=6, lr=0.7, gamma0=0.3, gamma1=0.1, eta=0.2,
        alpha=0.75, momentum=0.9, wd=0.05,
    )  # fmt: skip
    torch.testing.assert_close(got, reference(in_langevin=in_langevin), rtol=0, atol=1e-12)
    assert (got - reference(in_langevin=not in_langevin)).abs().max() > 1e-6  # the test tells the two apart


def test_heavy_ball_outer_momentum_follows_algorithm_1_written_from_scratch():
    """``nesterov=False`` with momentum 0.5 (the shipped PTB Entropy-SGD configs): three outer steps of a random
    quadratic take the plain heavy-ball step x <- x - lr buffer, not Nesterov's."""
    params, closure, grad, x0 = _random_quadratic(2)
    hyper = dict(lr=0.7, L=6, gamma0=0.3, gamma1=0.1, eta_prime=0.2, alpha=0.75, momentum=0.5, weight_decay=0.05)
    opt = EntropySGD(params, eps=0.0, nesterov=False, **hyper)
    for _ in range(3):
        opt.step(closure)
    reference = functools.partial(
        _algorithm_1_with_weight_decay, grad, x0, T=3, L=6, lr=0.7, gamma0=0.3, gamma1=0.1, eta=0.2, alpha=0.75,
        momentum=0.5, wd=0.05, in_langevin=True,
    )  # fmt: skip
    torch.testing.assert_close(_flat(params), reference(nesterov=False), rtol=0, atol=1e-12)
    assert (_flat(params) - reference(nesterov=True)).abs().max() > 1e-4  # the test tells the two apart


def _arxiv_v1_from_scratch(grad, x0, T, L, lr, gamma0, gamma1, eta, alpha, momentum, wd, rho):
    """Algorithm 1 of arXiv:1611.01838 v1 from scratch, eps = 0, on one flat vector: Langevin steps of size ``eta``
    on grad f(x') + wd x' - gamma (x - x'), mu <- (1 - alpha) mu + alpha x', then the outer gradient
    rho grad f(x) + gamma (x - mu) + wd x through Nesterov momentum from a zero buffer."""
    x, buffer = x0.clone(), torch.zeros_like(x0)
    for t in range(T):
        gamma = gamma0 * (1 + gamma1) ** t
        xp, mu = x.clone(), x.clone()
        for _ in range(L):
            xp = xp - eta * (grad(xp) + wd * xp - gamma * (x - xp))
            mu = (1 - alpha) * mu + alpha * xp
        g = rho * grad(x) + gamma * (x - mu) + wd * x
        buffer = momentum * buffer + g
        x = x - lr * (g + momentum * buffer)
    return x


def test_arxiv_v1_langevin_step_is_eta_prime_times_the_learning_rate():
    """arXiv v1 scales the inner step by the outer rate: with lr = 0.4 the Langevin steps are eta' lr = 0.08, not
    eta' = 0.2 (with lr = 1 the two agree). Three outer steps of the ``arxiv_v1`` preset on a random quadratic; its
    noise ignores eps, so ``noise="paper_v5"`` with eps = 0 makes the run deterministic."""
    lr, eta_prime = 0.4, 0.2
    hyper = dict(lr=lr, L=6, gamma0=0.3, gamma1=0.1, eta_prime=eta_prime, momentum=0.9, weight_decay=0.05, rho=0.5)

    def run(**switch):
        params, closure, grad, x0 = _random_quadratic(3)
        opt = EntropySGD(params, eps=0.0, variant="arxiv_v1", noise="paper_v5", **hyper, **switch)
        for _ in range(3):
            opt.step(closure)
        return _flat(params), functools.partial(
            _arxiv_v1_from_scratch, grad, x0, T=3, L=6, lr=lr, gamma0=0.3, gamma1=0.1, alpha=0.9, momentum=0.9,
            wd=0.05, rho=0.5,
        )  # fmt: skip

    relative, reference = run()
    torch.testing.assert_close(relative, reference(eta=eta_prime * lr), rtol=0, atol=1e-12)
    assert (relative - reference(eta=eta_prime)).abs().max() > 1e-4  # relative and absolute steps differ
    absolute, _ = run(eta_prime_relative=False)  # the switch turned off explicitly: the absolute step
    torch.testing.assert_close(absolute, reference(eta=eta_prime), rtol=0, atol=1e-12)


def _python_port_from_scratch(grad, x0, T, L, lr, gamma, eta, beta1, momentum, wd, nesterov, first_grad):
    """The outer steps of the authors' Python port (ucla-vision/entropy-sgd, python/optim.py), eps = 0, from scratch
    on one flat vector: the scope stays gamma0 (t is never incremented); the inner momentum buffer restarts at zero
    every outer step; weight decay and momentum act on the gradient and the coupling -gamma (x - x') is added after
    them; mu <- beta1 mu + (1 - beta1) x'; the outer gradient x - mu + wd x goes through momentum whose buffer starts
    at the first gradient grad f(x0) (``state['mdw'] = deepcopy(w.grad.data)``; ``first_grad=False``: at zero).
    ``nesterov=False`` is plain heavy-ball (the port's ``dw = mdw`` then aliases the inner buffer, so its coupling
    and noise would leak into it; we take the documented update, momentum on the gradient only)."""

    def with_momentum(buffer, d):
        buffer = momentum * buffer + d
        return buffer, d + momentum * buffer if nesterov else buffer

    x, buffer = x0.clone(), grad(x0) if first_grad else torch.zeros_like(x0)
    for _ in range(T):
        xp, mu, inner = x.clone(), x.clone(), torch.zeros_like(x0)
        for _ in range(L):
            inner, d = with_momentum(inner, grad(xp) + wd * xp)
            xp = xp - eta * (d - gamma * (x - xp))
            mu = beta1 * mu + (1 - beta1) * xp
        buffer, d = with_momentum(buffer, x - mu + wd * x)
        x = x - lr * d
    return x


@pytest.mark.parametrize("nesterov", [True, False])
def test_official_python_preset_follows_the_authors_port_written_from_scratch(nesterov):
    """Three outer steps of ``variant="official_python"`` (``momentum_init="first_grad"``, frozen scope, inner
    momentum, mu weighted towards the old value) on a random quadratic, with Nesterov or heavy-ball momentum."""
    params, closure, grad, x0 = _random_quadratic(4 + nesterov)
    hyper = dict(lr=0.3, L=5, gamma0=0.3, gamma1=0.5, eta_prime=0.1, momentum=0.5, weight_decay=0.05)
    opt = EntropySGD(params, eps=0.0, nesterov=nesterov, variant="official_python", **hyper)
    for _ in range(3):
        opt.step(closure)
    reference = functools.partial(
        _python_port_from_scratch, grad, x0, T=3, L=5, lr=0.3, gamma=0.3, eta=0.1, beta1=0.75, momentum=0.5,
        wd=0.05, nesterov=nesterov,
    )  # fmt: skip
    torch.testing.assert_close(_flat(params), reference(first_grad=True), rtol=0, atol=1e-12)
    assert (_flat(params) - reference(first_grad=False)).abs().max() > 1e-4  # the buffer's start is observed


@pytest.mark.parametrize("variant", ["paper_v5", "arxiv_v1", "official_lua", "official_python"])
def test_every_preset_decays_in_the_langevin_loop_as_both_authors_codes_do(variant):
    assert EntropySGD([nn.Parameter(torch.zeros(1))], variant=variant).param_groups[0]["weight_decay_in_langevin"]


@pytest.mark.parametrize("variant", ["official_python", "official_lua"])
def test_the_inner_momentum_loop_without_langevin_weight_decay(variant):
    gamma, L = 0.3, 7
    x0 = torch.tensor([3.0, 1.0, -1.0], dtype=torch.float64)
    x = nn.Parameter(x0.clone())
    visited: list = []
    opt = EntropySGD(
        [x], L=L, gamma0=gamma, eta_prime=0.1, eps=0.0, momentum=0.9, weight_decay=0.01, variant=variant,
        weight_decay_in_langevin=False,
    )  # fmt: skip
    opt.step(closure_for(x, visited))
    torch.testing.assert_close(torch.stack(visited), torch.stack(_python_port_inner_loop(x0, L, gamma, 0.1, 0.0, 0.9)))


def test_the_lua_preset_has_no_outer_weight_decay():
    """Lua: x <- x - lr (x - mu) with weight decay in the inner loop only; the Python port adds it outside too."""
    for variant, decays in [("official_lua", False), ("official_python", True)]:
        x = nn.Parameter(torch.tensor([3.0, 1.0, -1.0]))
        x0 = x.detach().clone()
        opt = EntropySGD([x], lr=0.5, L=2, eps=0.0, gamma0=0.0, weight_decay=0.1, momentum=0.0, variant=variant)
        opt.step(closure_for(x))
        mu = opt.state[x]["mu"]
        torch.testing.assert_close(x.detach(), x0 - 0.5 * ((x0 - mu) + (0.1 * x0 if decays else 0.0)))


def test_noise_seed_follows_the_experiment_seed_and_resumes_on_another_device_index():
    torch.manual_seed(5)
    first = EntropySGD([nn.Parameter(torch.zeros(2))]).seed
    torch.manual_seed(6)
    assert EntropySGD([nn.Parameter(torch.zeros(2))]).seed != first
    x = nn.Parameter(torch.zeros(3))
    opt = EntropySGD([x], L=1, eps=1.0, seed=3)
    opt.step(closure_for(x))
    state = opt.state_dict()
    streams = torch.stack([torch.Generator().manual_seed(k).get_state() for k in range(NOISE_STREAMS)])
    state["noise_generators"] = {"cuda:0": streams}  # as rank 0 of a GPU run saves them
    restored = EntropySGD([nn.Parameter(x.detach().clone())], L=1, eps=1.0, seed=99)
    restored.load_state_dict(state)  # a device-indexed key ("cuda:0" from rank 0) restores on any index
    assert torch.equal(restored._generator_states["cuda"], streams)
    assert restored.cpu_noise_draws == opt.cpu_noise_draws == 1


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_entropy_adam_inner_loop_matches_torch_adam_on_the_coupled_loss(wd):
    """Langevin weight decay before the moments is torch Adam's (L2) ``weight_decay``."""
    gamma, L = 0.3, 6
    x0 = torch.tensor([3.0, 1.0, -1.0], dtype=torch.float64)
    x = nn.Parameter(x0.clone())
    visited: list = []
    opt = EntropySGD([x], L=L, gamma0=gamma, eta_prime=0.05, eps=0.0, base="adam", weight_decay=wd)
    opt.step(closure_for(x, visited))
    y = nn.Parameter(x0.clone())
    ref = torch.optim.Adam([y], lr=0.05, weight_decay=wd)
    expected = [x0.clone(), x0.clone()]
    for _ in range(L - 1):
        ref.zero_grad()
        (quadratic(y) + gamma / 2 * (y - x0).pow(2).sum()).backward()
        ref.step()
        expected.append(y.detach().clone())
    torch.testing.assert_close(torch.stack(visited), torch.stack(expected))


def test_outer_step_without_momentum_moves_x_towards_mu_and_presets_differ_as_documented():
    x = nn.Parameter(torch.tensor([3.0, 1.0, -1.0]))
    opt = EntropySGD([x], lr=0.5, L=5, eps=0.0, variant="official_lua")
    group = opt.param_groups[0]
    assert (group["outer_momentum"], group["inner_momentum"], group["mu_update"], group["noise"]) == (
        False,
        True,
        "old_weighted",
        "code",
    )
    x0 = x.detach().clone()
    opt.step(closure_for(x))
    mu = opt.state[x]["mu"]
    torch.testing.assert_close(x.detach(), x0 - 0.5 * (x0 - mu))
    explicit = EntropySGD([nn.Parameter(torch.zeros(1))], variant="official_lua", outer_momentum=True)
    assert explicit.param_groups[0]["outer_momentum"] is True  # an explicit switch overrides the preset


def test_mu_update_conventions():
    """new_weighted: mu <- (1 - a) mu + a x'; old_weighted: mu <- a mu + (1 - a) x' (one inner step, L = 1)."""
    for mu_update, weight_on_new in [("new_weighted", 0.75), ("old_weighted", 0.25)]:
        x = nn.Parameter(torch.tensor([3.0, 1.0, -1.0]))
        x0 = x.detach().clone()
        visited: list = []
        opt = EntropySGD([x], L=1, eps=0.0, gamma0=0.0, eta_prime=0.1, momentum=0.0, mu_update=mu_update)
        opt.step(closure_for(x, visited))
        x1 = x0 - 0.1 * (A @ (x0 - C))
        torch.testing.assert_close(opt.state[x]["mu"], (1 - weight_on_new) * x0 + weight_on_new * x1)


def test_scoping_counter_advances_and_the_frozen_switch_reproduces_the_port():
    x = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    opt = EntropySGD([x], L=2, gamma0=1e-2, gamma1=0.1, eps=0.0)
    for _ in range(4):
        opt.step(closure_for(x))
    assert opt.state[x]["step"] == 4
    assert opt.diagnostics["gamma"] == pytest.approx(1e-2 * 1.1**3)  # the 4th step used t = 3
    assert scope(1e-2, 0.1, 4) == pytest.approx(1e-2 * 1.1**4)
    frozen = EntropySGD([x], L=2, gamma0=1e-2, gamma1=0.1, eps=0.0, scoping="frozen")
    for _ in range(4):
        frozen.step(closure_for(x))
    assert frozen.diagnostics["gamma"] == 1e-2


def test_noise_scales():
    assert langevin_noise_std("paper_v5", 0.1, 1e-4) == pytest.approx(0.1**0.5 * 1e-4)
    assert langevin_noise_std("code", 0.1, 1e-4) == pytest.approx(1e-4 * 0.2**0.5)  # eps / sqrt(0.5 eta') * eta'
    assert langevin_noise_std("v1", 0.1, 1e-4) == pytest.approx(2 * 0.1**0.5)


def test_v1_outer_gradient_uses_rho_times_the_gradient_at_x():
    x = nn.Parameter(torch.tensor([3.0, 1.0, -1.0]))
    x0 = x.detach().clone()
    opt = EntropySGD([x], lr=1.0, L=3, eps=0.0, gamma0=0.2, momentum=0.0, rho=0.5, variant="arxiv_v1", noise="paper_v5")
    opt.step(closure_for(x))
    mu = opt.state[x]["mu"]
    torch.testing.assert_close(x0 - x.detach(), 0.5 * A @ (x0 - C) + 0.2 * (x0 - mu))


def test_eps_zero_is_deterministic_and_the_noise_is_seeded():
    def run(eps, seed):
        torch.manual_seed(123)  # the global RNG must not matter
        x = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
        opt = EntropySGD([x], L=5, eps=eps, seed=seed)
        for _ in range(3):
            opt.step(closure_for(x))
        return x.detach()

    assert torch.equal(run(0.0, 0), run(0.0, 1))
    assert torch.equal(run(1e-2, 7), run(1e-2, 7))
    assert not torch.equal(run(1e-2, 7), run(1e-2, 8))


@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_state_dict_resume_continues_bit_identically(base):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    data = [(torch.randn(16, 5), torch.randint(0, 3, (16,))) for _ in range(40)]

    def closure_over(model, stream):
        def closure():
            xb, yb = next(stream)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            return loss

        return closure

    opt = EntropySGD(
        [{"params": net[0].parameters()}, {"params": net[2].parameters(), "lr": 0.3}], L=3, eps=1e-2, base=base
    )
    stream = iter(data)
    for _ in range(4):
        opt.step(closure_over(net, stream))
    saved_net, saved_opt = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    rest = list(stream)
    for _ in range(4):
        opt.step(closure_over(net, iter(rest)))
    restored = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    restored.load_state_dict(saved_net)
    opt2 = EntropySGD(
        [{"params": restored[0].parameters()}, {"params": restored[2].parameters(), "lr": 0.3}],
        L=3,
        eps=1e-2,
        base=base,
        seed=99,  # overwritten by the saved generator state
    )
    opt2.load_state_dict(saved_opt)
    for _ in range(4):
        opt2.step(closure_over(restored, iter(rest)))
    for a, b in zip(net.parameters(), restored.parameters(), strict=True):
        assert torch.equal(a, b)


def test_closure_runs_l_plus_one_times_on_zeroed_gradients():
    x = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    x.grad = torch.full_like(x, 1e6)  # a stale gradient must not leak into the first evaluation
    calls = []

    def closure():
        calls.append(None if x.grad is None else x.grad.clone())
        loss = quadratic(x)
        loss.backward()
        return loss

    loss = EntropySGD([x], L=4, eps=0.0).step(closure)
    assert len(calls) == 5 and all(g is None for g in calls)
    assert loss == pytest.approx(quadratic(torch.tensor([1.0, 2.0, 3.0])).item())


BAD_ARGUMENTS = [  # every argument of EntropySGD but params and seed, each with a value outside its choices
    ("lr", -0.1, ">= 0"),
    ("L", 0, "a positive integer"),
    ("L", 2.5, "a positive integer"),
    ("gamma0", -1e-4, ">= 0"),
    ("gamma1", -1e-3, ">= 0"),
    ("eta_prime", 0.0, "> 0"),
    ("eps", -1e-4, ">= 0"),
    ("alpha", 0.0, "in \\(0, 1\\]"),
    ("alpha", 1.5, "in \\(0, 1\\]"),
    ("momentum", 1.0, "in \\[0, 1\\)"),
    ("nesterov", "false", "True or False"),
    ("weight_decay", -1.0, ">= 0"),
    ("rho", -0.01, ">= 0"),
    ("base", "rmsprop", "one of sgd, adam"),
    ("betas", (0.9, 1.0), "two numbers in \\[0, 1\\)"),
    ("adam_eps", -1e-8, ">= 0"),
    ("variant", "lua", "one of paper_v5, arxiv_v1, official_lua, official_python"),
    ("outer_grad", "x-mu", "one of x_minus_mu, gamma_x_minus_mu, v1"),
    ("mu_update", "new", "one of new_weighted, old_weighted"),
    ("noise", "gaussian", "one of paper_v5, code, v1"),
    ("eta_prime_relative", "true", "True or False"),
    ("outer_momentum", "false", "True or False"),
    ("inner_momentum", 1, "True or False"),
    ("scoping", "frozn", "one of advance, frozen"),
    ("momentum_init", "zeros", "one of zero, first_grad"),
    ("weight_decay_in_langevin", "yes", "True or False"),
    ("inner_weight_decay", "before", "one of before_momentum, after_momentum"),
    ("outer_weight_decay", "no", "True or False"),
]


@pytest.mark.parametrize(("name", "value", "expected"), BAD_ARGUMENTS)
def test_every_argument_is_checked_against_its_choices_at_construction(name, value, expected):
    x = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=f"EntropySGD: {name} must be {expected}; got {re.escape(repr(value))}"):
        EntropySGD([x], **{name: value})
    if name != "variant":  # a parameter group may override any other argument
        with pytest.raises(ValueError, match=f"EntropySGD: {name} \\(parameter group 1\\) must be {expected}"):
            EntropySGD([{"params": [x]}, {"params": [nn.Parameter(torch.zeros(1))], name: value}])


def test_the_bad_argument_list_covers_every_argument():
    arguments = set(inspect.signature(EntropySGD).parameters) - {"params", "seed"}
    assert {name for name, _, _ in BAD_ARGUMENTS} == arguments


def test_bad_arguments_are_refused():
    x = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="L"):
        EntropySGD([x], L=0)
    with pytest.raises(ValueError, match="variant"):
        EntropySGD([x], variant="lua")
    with pytest.raises(ValueError, match="noise"):
        EntropySGD([x], noise="gaussian")
    with pytest.raises(ValueError, match="closure"):
        EntropySGD([x]).step()
