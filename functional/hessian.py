"""Hessian spectra as pure functions, for the measurements of Sagun, Bottou & LeCun, "Eigenvalues of the Hessian
in Deep Learning: Singularity and Beyond" (arXiv:1611.07476, abstract: a bulk at zero plus a few outliers, before and
after training) and its follow-up (Sagun, Evci, Guney, Dauphin, Bottou, arXiv:1706.04454): exact, Lanczos,
stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017), Hutchinson's (1989) and Hutch++ (arXiv:2010.09649) traces,
and the spectrum statistics. Our choices: ``docs/papers/hessian.md``. Nothing here knows about Lightning.

A *flat loss* is a function ``theta -> loss`` of one flat parameter vector; a *matvec* is ``v -> H v``. The
estimators take the parameters' ``device`` as a required argument, so that products on a GPU get GPU probes;
probes are drawn from a CPU ``torch.Generator`` (the same draws on every device), then moved there.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jacfwd, vjp

FlatLoss = Callable[[Tensor], Tensor]
MatVec = Callable[[Tensor], Tensor]


class _LossOf(nn.Module):
    """Wraps ``loss_fn(module, batch)`` as a module whose forward is the loss, so that ``functional_call``
    can substitute the wrapped module's parameters."""

    def __init__(self, module: nn.Module, loss_fn: Callable[[nn.Module, object], Tensor]) -> None:
        super().__init__()
        self.inner = module
        self.loss_fn = loss_fn

    def forward(self, batch: object) -> Tensor:
        return self.loss_fn(self.inner, batch)


def flat_loss(
    module: nn.Module, loss_fn: Callable[[nn.Module, object], Tensor], batch: object, names: list[str]
) -> tuple[FlatLoss, Tensor]:
    """The loss as a function of the parameters ``names`` of ``module`` flattened into one vector, and the
    current value of that vector (detached, float64 if the module is float64): the training loss L(theta) whose
    Hessian arXiv:1611.07476 (abstract) studies, on a fixed batch (ours, ``docs/papers/hessian.md``).

    A parameter is substituted wherever the module uses it: under every name of a tensor tied between two
    modules (an embedding and an output layer), and once for a module registered under several names (one
    activation shared by two blocks). ``functional_call``'s own ``tie_weights`` leaves a plain tensor behind
    in the second case (torch 2.x), so the names are resolved here and passed with ``tie_weights=False``.
    """
    wrapper = _LossOf(module, loss_fn)
    parameters = dict(module.named_parameters())
    shapes = [parameters[n].shape for n in names]
    sizes = [parameters[n].numel() for n in names]
    theta = torch.cat([parameters[n].detach().reshape(-1) for n in names])
    selected = {id(parameters[n]): i for i, n in enumerate(names)}
    parameter_slots = [(name, selected[id(p)]) for name, p in _slots(module, "parameters") if id(p) in selected]
    buffer_slots = _slots(module, "buffers")

    def loss_of(flat: Tensor) -> Tensor:
        chunks = [c.view(s) for c, s in zip(torch.split(flat, sizes), shapes, strict=True)]
        values = {f"inner.{name}": chunks[i] for name, i in parameter_slots}
        # fresh copies, so a train-mode BatchNorm updates copies, never the module's running statistics
        values.update({f"inner.{name}": b.clone() for name, b in buffer_slots})
        return functional_call(wrapper, values, (batch,), strict=False, tie_weights=False)

    return loss_of, theta


def _slots(module: nn.Module, kind: str) -> list[tuple[str, Tensor]]:
    """One name per place that holds a parameter (or buffer): every name of a tensor held by several modules,
    one name for a module registered under several names."""
    named = getattr(module, f"named_{kind}")(remove_duplicate=False)
    seen: set[tuple[int, str]] = set()
    slots = []
    for name, tensor in named:
        owner_name, _, attribute = name.rpartition(".")
        place = (id(module.get_submodule(owner_name)), attribute)
        if place not in seen:
            seen.add(place)
            slots.append((name, tensor))
    return slots


def exact_hessian(loss_of: FlatLoss, theta: Tensor) -> Tensor:
    """The dense, symmetrised Hessian ``(P, P)`` of arXiv:1611.07476 (abstract; the ``exact`` method of
    ``docs/papers/hessian.md``): ``jacfwd`` of ``grad`` (random operations such as dropout draw
    the same values for every column). Not ``jacrev`` inside, as ``torch.func.hessian`` has it: through a
    train-mode BatchNorm its vmapped backward gives a wrong, asymmetric Hessian (torch 2.x), while ``grad``
    agrees with finite differences."""
    with torch.no_grad():  # no autograd history on the result (see hessian_vector_product)
        h = jacfwd(grad(loss_of), randomness="same")(theta)
    return (h + h.T) / 2


def exact_eigenvalues(loss_of: FlatLoss, theta: Tensor) -> Tensor:
    """All P eigenvalues of :func:`exact_hessian`, ascending, computed in float64: the full spectrum whose bulk and
    outliers arXiv:1611.07476 (abstract) describes."""
    return torch.linalg.eigvalsh(exact_hessian(loss_of, theta).double())


def hessian_vector_product(loss_of: FlatLoss, theta: Tensor) -> MatVec:
    """``v -> H v`` without forming H (Pearlmutter 1994, "Fast exact multiplication by the Hessian", Neural
    Computation 6(1)), by reverse-over-reverse: the gradient's graph is built once (``vjp`` of ``grad``) and each
    product is one backward pass through it (H is symmetric, so the vector-Jacobian product is H v). The graph,
    and any random draw in the loss (a dropout mask), are fixed for the life of the returned function.

    Products carry no autograd history. Both steps run under ``torch.no_grad()``, which ``torch.func``
    transforms ignore for their own differentiation: otherwise an in-place update inside the loss (a
    train-mode BatchNorm writing its running statistics) records every product in the caller's graph too.
    """
    with torch.no_grad():
        _, pullback = vjp(grad(loss_of), theta)

    @torch.no_grad()
    def matvec(v: Tensor) -> Tensor:
        return pullback(v.to(theta.dtype))[0]

    return matvec


def lanczos(matvec: MatVec, start: Tensor, steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """Lanczos tridiagonalisation from ``start`` with full reorthogonalisation (no ghost eigenvalues), as in the
    stochastic Lanczos quadrature of Ubaru, Chen & Saad 2017 ("Fast estimation of tr(f(A)) via stochastic Lanczos
    quadrature", SIAM J. Matrix Anal. Appl. 38(4)).

    Each step applies the three-term recurrence, then one Gram-Schmidt pass against the whole basis, and a
    second pass only when the first removed most of the vector (the criterion of Daniel, Gragg, Kaufman & Stewart
    1976, Math. Comp. 30).
    Returns the diagonal ``alpha`` ``(k,)``, the off-diagonal ``beta`` ``(k - 1,)`` and the basis ``(k, P)``,
    with ``k <= steps`` (it stops early when the Krylov space is exhausted). Work is in float64.
    """
    basis = torch.empty(steps, start.numel(), dtype=torch.float64, device=start.device)
    basis[0] = start.double() / start.double().norm()
    alphas: list[Tensor] = []
    betas: list[Tensor] = []
    for i in range(steps):
        q = basis[i]
        w = matvec(q.to(start.dtype)).double()
        alpha = torch.dot(w, q)
        alphas.append(alpha)
        w = w - alpha * q - (betas[-1] * basis[i - 1] if i else 0.0)
        previous = basis[: i + 1]
        before = w.norm()
        w = w - previous.T @ (previous @ w)
        if w.norm() < before / math.sqrt(2):
            w = w - previous.T @ (previous @ w)
        beta = w.norm()
        if i == steps - 1 or beta < 1e-10 * max(1.0, abs(alpha.item())):
            break
        betas.append(beta)
        basis[i + 1] = w / beta
    k = len(alphas)
    off_diagonal = torch.stack(betas) if betas else torch.zeros(0, dtype=torch.float64, device=start.device)
    return torch.stack(alphas), off_diagonal, basis[:k]


def tridiagonal(alpha: Tensor, beta: Tensor) -> Tensor:
    """The symmetric tridiagonal ``T_k`` of :func:`lanczos` from its diagonal ``alpha`` and off-diagonal ``beta``:
    its eigenvalues are the Ritz values / quadrature nodes (Ubaru, Chen & Saad 2017)."""
    return torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)


def lanczos_extremes(
    matvec: MatVec,
    dim: int,
    k: int,
    steps: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    *,
    device: torch.device | str,
) -> tuple[Tensor, Tensor]:
    """The ``k`` largest and ``k`` smallest eigenvalues (Ritz values of ``steps`` Lanczos steps from a seeded
    Gaussian start; Ubaru, Chen & Saad 2017), each sorted descending / ascending: the outlier edges and the
    negative eigenvalues of arXiv:1611.07476 (abstract) when P is too large for :func:`exact_eigenvalues`
    (the ``lanczos`` method of ``docs/papers/hessian.md``)."""
    start = torch.randn(dim, generator=generator, dtype=torch.float64).to(device, dtype)  # drawn on CPU: reproducible
    alpha, beta, _ = lanczos(matvec, start, min(steps, dim))
    ritz = torch.linalg.eigvalsh(tridiagonal(alpha, beta)).cpu()
    k = min(k, len(ritz))
    return ritz.flip(0)[:k], ritz[:k]


def slq_density(
    matvec: MatVec,
    dim: int,
    steps: int,
    n_probes: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    *,
    device: torch.device | str,
    grid_size: int = 1000,
    sigma: float | None = None,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Spectral density by stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017, "Fast estimation of tr(f(A))
    via stochastic Lanczos quadrature", SIAM J. Matrix Anal. Appl. 38(4)).

    For each Rademacher probe, Lanczos gives nodes ``theta_i`` (eigenvalues of the tridiagonal, by ``eigh``)
    and weights ``tau_i`` (squared first components); the density is the probe average of
    ``sum_i tau_i N(x; theta_i, sigma^2)`` on a grid spanning the nodes. ``sigma`` defaults to 1% of that
    span (ours, ``docs/papers/hessian.md``). Returns the grid, the density (integrating to 1) and
    ``{"sigma", "trace", "lambda_max", "lambda_min"}``: trace is the quadrature estimate
    ``dim * E[sum_i tau_i theta_i]``, the extremes are the extreme Lanczos nodes.
    """
    nodes, weights = [], []
    for _ in range(n_probes):
        probe = (torch.randint(0, 2, (dim,), generator=generator) * 2 - 1).to(device, dtype)
        alpha, beta, _ = lanczos(matvec, probe, min(steps, dim))
        values, vectors = torch.linalg.eigh(tridiagonal(alpha, beta).cpu())
        nodes.append(values)
        weights.append(vectors[0] ** 2)
    all_nodes = torch.cat(nodes)
    low, high = all_nodes.min().item(), all_nodes.max().item()
    span = max(high - low, 1e-12)
    sigma = sigma if sigma is not None else 0.01 * span
    grid = torch.linspace(low - 3 * sigma, high + 3 * sigma, grid_size, dtype=torch.float64)
    density = torch.zeros_like(grid)
    for values, w in zip(nodes, weights, strict=True):
        gauss = torch.exp(-((grid[:, None] - values[None, :]) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
        density += gauss @ w
    density /= n_probes
    trace = dim * torch.stack([(w * v).sum() for v, w in zip(nodes, weights, strict=True)]).mean().item()
    return grid, density, {"sigma": sigma, "trace": trace, "lambda_max": high, "lambda_min": low}


def hutchinson_trace(
    matvec: MatVec,
    dim: int,
    n_probes: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    *,
    device: torch.device | str,
) -> float:
    """Hutchinson's estimate ``tr H = E[v^T H v]`` over Rademacher probes (Hutchinson 1989, "A stochastic estimator
    of the trace of the influence matrix for Laplacian smoothing splines"; drawn on the CPU generator, then moved)."""
    total = 0.0
    for _ in range(n_probes):
        v = (torch.randint(0, 2, (dim,), generator=generator) * 2 - 1).to(device, dtype)
        total += torch.dot(v, matvec(v)).item()
    return total / n_probes


def hutchpp_trace(
    matvec: MatVec,
    dim: int,
    n_matvecs: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    *,
    device: torch.device | str,
) -> float:
    """Hutch++ (Meyer, Musco, Musco & Woodruff 2021, arXiv:2010.09649, Algorithm 1) with ``n_matvecs`` products:
    a third sketch the top of the spectrum exactly (``Q = orth(H S)``), the rest estimate the trace of the deflated
    remainder by Hutchinson. Exact for matrices of rank at most ``n_matvecs // 3``; far lower variance than Hutchinson
    when a few outliers carry the trace, as with Hessians."""
    k = max(1, n_matvecs // 3)
    n_residual = max(1, n_matvecs - 2 * k)

    def rademacher(n: int) -> Tensor:
        return (torch.randint(0, 2, (dim, n), generator=generator) * 2 - 1).to(device, dtype)

    def apply(block: Tensor) -> Tensor:
        return torch.stack([matvec(column) for column in block.T], dim=1)

    q, _ = torch.linalg.qr(apply(rademacher(k)))
    top = torch.trace(q.T @ apply(q)).item()
    g = rademacher(n_residual)
    g = g - q @ (q.T @ g)  # (I - Q Q^T) G
    return top + torch.trace(g.T @ apply(g)).item() / n_residual


def count_outliers(top: Tensor, max_outliers: int = 50, floor: float = 1e-2) -> int:
    """Number of eigenvalues above the largest gap on a log scale among the top ``max_outliers + 1`` (``top``
    descending) that are at least ``floor * lambda_max``: the outlier group the papers compare with the number
    of classes. A log scale because outliers spread over a decade or more (10 classes on MNIST give nine
    outliers between 0.18 and 0.72 above a bulk starting at 0.07); the floor keeps ratios between two
    near-zero bulk values out of the search. These are the edges of arXiv:1611.07476 (abstract); the follow-up
    (arXiv:1706.04454) finds about one per class. The papers judge by eye, so the rule is ours
    (``docs/papers/hessian.md``)."""
    top = top[: max_outliers + 1].double()
    top = top[top >= floor * top[0]] if len(top) and top[0] > 0 else top[:0]
    if len(top) < 2:
        return len(top)
    logs = top.log()
    return int(torch.argmax(logs[:-1] - logs[1:]).item()) + 1


def spectrum_statistics(
    eigenvalues: Tensor, relative_tol: float = 1e-3, absolute_tol: float = 1e-4
) -> dict[str, float]:
    """The statistics of a full (or Ritz) spectrum: extremes, trace, share of near-zero eigenvalues (absolute and
    relative to lambda_max), negative mass and the outlier count, the shape properties of arXiv:1611.07476
    (abstract and introduction: bulk at zero, outliers, small negative eigenvalues after training). The paper gives
    no threshold for "zero"; both tolerances are ours (``docs/papers/hessian.md``)."""
    lam = eigenvalues.double()
    lam_max = lam.max().item()
    abs_sum = lam.abs().sum().clamp_min(1e-300)
    return {
        "lambda_max": lam_max,
        "lambda_min": lam.min().item(),
        "trace": lam.sum().item(),
        "frac_zero_abs": (lam.abs() < absolute_tol).double().mean().item(),
        "frac_zero_rel": (lam.abs() < relative_tol * abs(lam_max)).double().mean().item(),
        "negative_mass": (lam[lam < 0].abs().sum() / abs_sum).item(),
        "n_outliers": float(count_outliers(lam.sort(descending=True).values)),
    }
