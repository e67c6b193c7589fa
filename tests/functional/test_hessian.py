import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from iclr17.functional.hessian import (
    count_outliers,
    exact_eigenvalues,
    exact_hessian,
    flat_loss,
    hessian_vector_product,
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
    lanczos_extremes,
    slq_density,
    spectrum_statistics,
    tridiagonal,
)


class Quadratic(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.randn(dim, dtype=torch.float64))


def _mlp_problem(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 2, (20,))
    names = [n for n, _ in net.named_parameters()]
    return flat_loss(net, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]), (x, y), names), net


def test_quadratic_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    a = a + a.T
    b = torch.tensor(rng.normal(size=6))
    module = Quadratic(6)
    a_t = torch.tensor(a)
    loss_of, theta = flat_loss(module, lambda m, _: 0.5 * m.theta @ a_t @ m.theta + b @ m.theta, None, ["theta"])
    np.testing.assert_allclose(
        exact_eigenvalues(loss_of, theta).numpy(), scipy.linalg.eigh(a, eigvals_only=True), atol=1e-10
    )


def test_least_squares_hessian_is_xtx_over_n():
    torch.manual_seed(1)
    x, y = torch.randn(30, 4, dtype=torch.float64), torch.randn(30, dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    loss_of, theta = flat_loss(model, lambda m, b: 0.5 * ((m(b[0]).squeeze(-1) - b[1]) ** 2).mean(), (x, y), ["weight"])
    torch.testing.assert_close(exact_hessian(loss_of, theta), x.T @ x / 30)


def test_mlp_hessian_matches_finite_differences_of_the_gradient():
    (loss_of, theta), _ = _mlp_problem()
    h = exact_hessian(loss_of, theta)
    eps = 1e-5
    columns = []
    for i in range(len(theta)):
        e = torch.zeros_like(theta)
        e[i] = eps
        g_plus = torch.func.grad(loss_of)(theta + e)
        g_minus = torch.func.grad(loss_of)(theta - e)
        columns.append((g_plus - g_minus) / (2 * eps))
    finite_differences = torch.stack(columns, dim=1)
    torch.testing.assert_close(h, (finite_differences + finite_differences.T) / 2, atol=1e-7, rtol=1e-5)


def test_hvp_lanczos_and_traces_agree_with_the_exact_spectrum():
    (loss_of, theta), _ = _mlp_problem(seed=2)
    h = exact_hessian(loss_of, theta)
    exact = torch.linalg.eigvalsh(h)
    matvec = hessian_vector_product(loss_of, theta)
    v = torch.randn(len(theta), dtype=torch.float64)
    torch.testing.assert_close(matvec(v), h @ v)

    generator = torch.Generator().manual_seed(0)
    top, bottom = lanczos_extremes(
        matvec, len(theta), k=3, steps=len(theta), generator=generator, dtype=torch.float64, device="cpu"
    )
    torch.testing.assert_close(top, exact.flip(0)[:3], rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(bottom, exact[:3], rtol=1e-6, atol=1e-10)

    trace = exact.sum().item()
    explicit = lambda v: h @ v  # noqa: E731  (the HVP equals it, checked above; this one is cheap)
    # Rademacher probes: Var(v^T H v) = 2 * sum_{i != j} H_ij^2, so n probes are within 4 sd / sqrt(n) of the trace
    single_sd = (2 * (h**2).sum() - 2 * (h.diagonal() ** 2).sum()).sqrt().item()
    estimate = hutchinson_trace(
        explicit, len(theta), 4000, torch.Generator().manual_seed(1), torch.float64, device="cpu"
    )
    assert abs(estimate - trace) < 4 * single_sd / 4000**0.5

    grid, density, info = slq_density(
        explicit, len(theta), 20, 400, torch.Generator().manual_seed(2), torch.float64, device="cpu"
    )
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=1e-3)
    assert abs(info["trace"] - trace) < 4 * single_sd / 400**0.5
    first_moment = torch.trapezoid(grid * density, grid).item()  # the same quadrature, so the same estimate / P
    assert first_moment == pytest.approx(info["trace"] / len(theta), rel=1e-3)


def test_lanczos_is_gauss_quadrature_and_stops_when_the_krylov_space_is_exhausted():
    """With an orthonormal basis Q, Q A Q^T = T (scipy's tridiagonal solver gives its nodes and weights), and k steps
    integrate every polynomial of degree < 2k exactly: sum_i tau_i theta_i^j = q1^T A^j q1 (Ubaru, Chen & Saad
    2017). A matrix with three distinct eigenvalues has a three-dimensional Krylov space."""
    rng = np.random.default_rng(5)
    basis, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    a = torch.from_numpy(basis @ np.diag(np.linspace(-1.0, 2.0, 30)) @ basis.T)
    start = torch.from_numpy(rng.standard_normal(30))
    alpha, beta, q = lanczos(lambda v: a @ v, start, 8)
    assert len(alpha) == 8 and len(beta) == 7
    torch.testing.assert_close(q @ q.T, torch.eye(8, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(q @ a @ q.T, tridiagonal(alpha, beta), atol=1e-12, rtol=0)
    nodes, vectors = scipy.linalg.eigh_tridiagonal(alpha.numpy(), beta.numpy())
    q1 = (start / start.norm()).numpy()
    for j in range(16):
        moment = q1 @ np.linalg.matrix_power(a.numpy(), j) @ q1
        assert (vectors[0] ** 2 * nodes**j).sum() == pytest.approx(moment, rel=1e-9, abs=1e-12)

    three = torch.from_numpy(basis @ np.diag(np.repeat([1.0, 2.0, 5.0], 10)) @ basis.T)
    alpha, beta, q = lanczos(lambda v: three @ v, start, 10)
    assert len(alpha) == 3 and q.shape == (3, 30)
    np.testing.assert_allclose(torch.linalg.eigvalsh(tridiagonal(alpha, beta)).numpy(), [1.0, 2.0, 5.0], atol=1e-10)


def test_lanczos_finds_outliers_above_a_bulk_long_before_the_krylov_space_is_exhausted():
    """40 steps on a 400-dimensional matrix: eigenvalues 100, 50 and 20 above 397 in [-0.5, 1]. By Kaniel-Paige-Saad
    (Saad, "Numerical Methods for Large Eigenvalue Problems", Thm 6.4) the error of the i-th Ritz value is at most
    (lambda_1 - lambda_n) (tan(phi_i) K_i / T_{40-i}(1 + 2 gamma_i))^2 with gamma_1 = 50 / 50.5, and T_39(2.98) is
    about 1e29: in exact arithmetic the top three have converged completely, so what is left is rounding, about
    steps * eps * ||A|| = 1e-12 (measured: 1e-13). Without reorthogonalisation, the converged 100 comes back as a
    ghost copy and pushes 50 and 20 down the list."""
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((400, 400)))
    spectrum = np.concatenate([[100.0, 50.0, 20.0], rng.uniform(-0.5, 1.0, 397)])
    a = basis @ np.diag(spectrum) @ basis.T
    a = torch.from_numpy((a + a.T) / 2)
    truth = np.linalg.eigvalsh(a.numpy())
    for seed in range(3):
        top, bottom = lanczos_extremes(
            lambda v: a @ v, 400, 3, 40, torch.Generator().manual_seed(seed), torch.float64, device="cpu"
        )
        np.testing.assert_allclose(top.numpy(), truth[::-1][:3], rtol=0, atol=1e-9)
        assert len(bottom) == 3 and (bottom.numpy() >= truth[0] - 1e-9).all()  # Ritz values lie inside the spectrum
    alpha, _, q = lanczos(lambda v: a @ v, torch.from_numpy(rng.standard_normal(400)), 40)
    assert len(alpha) == 40  # not exhausted
    torch.testing.assert_close(q @ q.T, torch.eye(40, dtype=torch.float64), atol=1e-12, rtol=0)


def test_statistics_on_a_known_spectrum():
    lam = torch.tensor([50.0, 40.0, 30.0, 0.5, 0.2, 1e-6, 0.0, -1e-6, -0.1])
    stats = spectrum_statistics(lam, relative_tol=1e-3, absolute_tol=1e-4)
    assert stats["lambda_max"] == 50.0 and stats["lambda_min"] == pytest.approx(-0.1)
    assert stats["trace"] == pytest.approx(lam.double().sum().item())
    assert stats["frac_zero_abs"] == pytest.approx(3 / 9) and stats["frac_zero_rel"] == pytest.approx(3 / 9)
    assert stats["negative_mass"] == pytest.approx((0.1 + 1e-6) / lam.abs().double().sum().item(), rel=1e-6)
    assert stats["n_outliers"] == 3 and count_outliers(torch.tensor([5.0, 1.0, 0.9])) == 1


def test_hutchpp_is_exact_on_low_rank_and_beats_hutchinson_with_outliers():
    """Hutch++ sketches the top of the spectrum exactly: on a rank-r matrix with 3r products it returns the
    trace; on an outlier-dominated spectrum (a Hessian's shape) its error is far below Hutchinson's."""
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    low_rank = torch.from_numpy(basis[:, :4] @ np.diag([9.0, 5.0, -3.0, 2.0]) @ basis[:, :4].T)
    estimate = hutchpp_trace(
        lambda v: low_rank @ v, 60, 12, torch.Generator().manual_seed(0), torch.float64, device="cpu"
    )
    assert estimate == pytest.approx(13.0, abs=1e-9)

    spectrum = np.concatenate([[400.0, 300.0, 200.0], rng.uniform(-0.5, 1.0, 57)])
    h = torch.from_numpy(basis @ np.diag(spectrum) @ basis.T)
    errors = {"hutchinson": [], "hutchpp": []}
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        errors["hutchinson"].append(
            abs(hutchinson_trace(lambda v: h @ v, 60, 30, g, torch.float64, device="cpu") - spectrum.sum())
        )
        g = torch.Generator().manual_seed(seed)
        errors["hutchpp"].append(
            abs(hutchpp_trace(lambda v: h @ v, 60, 30, g, torch.float64, device="cpu") - spectrum.sum())
        )
    assert np.mean(errors["hutchpp"]) < 0.1 * np.mean(errors["hutchinson"])


def test_outliers_are_counted_on_a_log_scale_above_the_bulk():
    """The end-of-training MNIST spectrum of configs/hessian/mnist_small.yaml (rounded): nine outliers over a
    decade, then the bulk; an absolute-gap rule would count two."""
    top = torch.tensor([0.7216, 0.6649, 0.4938, 0.399, 0.3707, 0.2983, 0.2379, 0.2229, 0.1788, 0.0722, 0.056, 0.0534])
    bulk = torch.logspace(-3, -12, 40)
    assert count_outliers(torch.cat([top, bulk])) == 9
    assert count_outliers(torch.tensor([-1.0, -2.0])) == 0 and count_outliers(torch.tensor([3.0])) == 1


def test_products_of_a_train_mode_batchnorm_loss_carry_no_autograd_history():
    """A train-mode BatchNorm writes its running statistics in place during the loss; the products must still
    be plain tensors (no grad_fn keeping a graph alive) and equal double backward on the module itself."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 2)).double().train()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 2, (20,))
    names = [n for n, _ in net.named_parameters()]
    loss_fn = lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])  # noqa: E731
    loss_of, theta = flat_loss(net, loss_fn, (x, y), names)
    v = torch.randn(len(theta), dtype=torch.float64)
    hv = hessian_vector_product(loss_of, theta)(v)
    h = exact_hessian(loss_of, theta)
    assert not hv.requires_grad and hv.grad_fn is None and not h.requires_grad and h.grad_fn is None

    params = list(net.parameters())
    gradient = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_fn(net, (x, y)), params, create_graph=True)])
    reference = torch.cat([r.reshape(-1) for r in torch.autograd.grad(gradient @ v, params)])
    torch.testing.assert_close(hv, reference)
    torch.testing.assert_close(h @ v, reference)


class _ProbeSeen(Exception):
    """Raised by a stub product once it has recorded the device of the first vector it was given."""


@pytest.mark.parametrize(
    "estimate",
    [
        lambda mv, g: lanczos_extremes(mv, 8, 2, 4, g, torch.float32, device="meta"),
        lambda mv, g: slq_density(mv, 8, 4, 2, g, torch.float32, device="meta"),
        lambda mv, g: hutchinson_trace(mv, 8, 3, g, torch.float32, device="meta"),
        lambda mv, g: hutchpp_trace(mv, 8, 6, g, torch.float32, device="meta"),
    ],
    ids=["lanczos", "slq", "hutchinson", "hutchpp"],
)
def test_estimators_send_their_probes_to_the_requested_device(estimate):
    """The meta device stands in for a GPU: a probe left on the CPU would reach the product on the CPU."""
    seen = []

    def matvec(v):
        seen.append(v.device)
        raise _ProbeSeen

    with pytest.raises(_ProbeSeen):
        estimate(matvec, torch.Generator().manual_seed(0))
    assert seen == [torch.device("meta")]


class _SharedAndTied(nn.Module):
    """One PReLU registered under two names (as EntNet shares one between memory and output) and one weight
    tied between two layers (as an embedding tied to an output layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.activation = nn.PReLU(num_parameters=3, init=0.3)
        self.block = nn.Sequential(nn.Linear(2, 3), self.activation)
        self.head = nn.Linear(3, 3, bias=False)
        self.tail = nn.Linear(3, 3, bias=False)
        self.tail.weight = self.head.weight

    def forward(self, x):
        return self.tail(self.activation(self.head(self.block(x)))).pow(2).sum()


def test_a_shared_module_and_a_tied_weight_are_substituted_everywhere_and_restored():
    torch.manual_seed(0)
    model = _SharedAndTied().double()
    x = torch.randn(5, 2, dtype=torch.float64)
    params = dict(model.named_parameters())
    originals = {name: p for name, p in model.named_parameters(remove_duplicate=False)}
    names = list(params)
    loss_of, theta = flat_loss(model, lambda m, batch: m(batch), x, names)

    def reference(flat):  # the same network written out by hand, every use of a parameter from `flat`
        chunks = dict(zip(names, torch.split(flat, [params[n].numel() for n in names]), strict=True))
        w1, b1 = chunks["block.0.weight"].view(3, 2), chunks["block.0.bias"]
        slope, w = chunks["activation.weight"], chunks["head.weight"].view(3, 3)

        def prelu(z):
            return torch.where(z >= 0, z, slope * z)

        return (prelu(prelu(x @ w1.T + b1) @ w.T) @ w.T).pow(2).sum()

    expected = torch.autograd.functional.hessian(reference, theta)
    torch.testing.assert_close(exact_hessian(loss_of, theta), (expected + expected.T) / 2)
    v = torch.randn(len(theta), dtype=torch.float64)
    torch.testing.assert_close(hessian_vector_product(loss_of, theta)(v), expected @ v)
    after = dict(model.named_parameters(remove_duplicate=False))
    assert all(after[name] is p and isinstance(p, nn.Parameter) for name, p in originals.items())
