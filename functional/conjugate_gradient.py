"""Conjugate gradient on K random positive-definite Wishart systems at once: the Gaussian-like class of the
halting-time paper (Sagun, Trogdon, LeCun, arXiv:1511.06444, abstract and introduction), set up as in Deift, Menon,
Olver, Trogdon, "Universality in numerical computations with random data", PNAS 2014. The paper's own CG settings
differ from these (``docs/papers/halting_time.md``).

``A = X X^T / M`` with ``X`` of size N x M, entries mean 0 and variance 1 (Gaussian or +-1), at the critical
scaling ``M = N + floor(sqrt(4 c N))`` where the halting time fluctuates universally; ``b`` uniform on the unit
sphere; CG from ``x = 0`` halts when the residual norm is below eps. The paper's own choices (its conjugate-gradient
experiment, arXiv:1511.06444: ``b`` with i.i.d. U(-1, 1) entries, ``x0 = b``) are ``rhs="uniform"`` and ``x0=b``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from iclr17.functional.halting import update_first_hits  # the rule HaltingTime applies

WishartEnsemble = Literal["gaussian", "bernoulli"]
RightHandSide = Literal["sphere", "uniform"]


def critical_width(n: int, c: float = 1.0) -> int:
    """``M = N + floor(sqrt(4 c N))``, the critical scaling where the halting time of CG fluctuates universally
    (Deift, Menon, Olver, Trogdon, PNAS 2014). The CG runs of arXiv:1511.06444 (Gaussian-like class, abstract) used
    ``M = N + 2 floor(sqrt(N))``, close to c = 1 (``docs/papers/halting_time.md``)."""
    return n + math.floor(math.sqrt(4 * c * n))


def wishart_systems(
    n_systems: int, n: int, m: int, ensemble: WishartEnsemble, generator: torch.Generator,
    dtype: torch.dtype = torch.float64, rhs: RightHandSide = "sphere",
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``(A, b)``: ``(K, N, N)`` Wishart matrices ``X X^T / M`` (entries of X with mean 0 and variance 1; Deift,
    Menon, Olver, Trogdon, PNAS 2014; the CG ensembles of arXiv:1511.06444, abstract) and ``(K, N)`` right-hand
    sides, drawn after X: ``rhs="sphere"`` uniform on the unit sphere (ours, ``docs/papers/halting_time.md``),
    ``rhs="uniform"`` i.i.d. U(-1, 1) entries (the paper's conjugate-gradient experiment, arXiv:1511.06444)."""
    if rhs not in ("sphere", "uniform"):
        raise ValueError(f"rhs must be 'sphere' or 'uniform', got rhs={rhs!r}")
    shape = (n_systems, n, m)
    if ensemble == "gaussian":
        x = torch.randn(shape, generator=generator, dtype=dtype)
    elif ensemble == "bernoulli":
        x = torch.randint(0, 2, shape, generator=generator).to(dtype).mul_(2).sub_(1)
    else:
        raise ValueError(f"ensemble must be gaussian or bernoulli, got {ensemble!r}")
    if rhs == "uniform":
        return x @ x.transpose(1, 2) / m, torch.rand(n_systems, n, generator=generator, dtype=dtype).mul_(2).sub_(1)
    b = torch.randn(n_systems, n, generator=generator, dtype=dtype)
    return x @ x.transpose(1, 2) / m, b / b.norm(dim=1, keepdim=True)


def cg_until_halted(
    a: Tensor, b: Tensor, eps: Tensor, max_steps: int = 10_000, x0: Tensor | None = None
) -> tuple[Tensor, int, Tensor]:
    """Conjugate gradient (Hestenes & Stiefel 1952, J. Res. Nat. Bur. Standards 49) on K systems ``A x = b`` in
    lockstep from ``x0`` (``None``: ``x = 0``, ours, ``docs/papers/halting_time.md``; the paper starts from
    ``x0 = b``, arXiv:1511.06444, its conjugate-gradient experiment), halting as in arXiv:1511.06444 (abstract and
    introduction) and Deift, Menon, Olver, Trogdon, PNAS 2014 when the residual norm is below eps; the first
    residual is ``b - A x0``.

    Returns ``(first, last_step, x)``: ``first[k, e]`` is the number of CG iterations after which the residual
    norm ``||b - A x||`` (the recursively updated residual) of system k was first below ``eps[e]`` (-1: not
    within ``max_steps``, censored at ``last_step``). Systems that met every eps are frozen.
    """
    if x0 is None:
        x, r = torch.zeros_like(b), b.clone()
    else:
        x = x0.clone()
        r = b - torch.bmm(a, x.unsqueeze(-1)).squeeze(-1)
    p, rr = r.clone(), (r * r).sum(dim=1)
    first = torch.full((b.shape[0], len(eps)), -1, dtype=torch.long, device=b.device)
    step = 0
    for step in range(max_steps + 1):
        first = update_first_hits(first, rr.sqrt(), eps, step)
        running = ~(first >= 0).all(dim=1)
        if step == max_steps or not bool(running.any()):
            break
        ap = torch.bmm(a, p.unsqueeze(-1)).squeeze(-1)
        alpha = torch.where(running, rr / (p * ap).sum(dim=1), torch.zeros_like(rr))
        x = x + alpha.unsqueeze(1) * p
        r = r - alpha.unsqueeze(1) * ap
        rr_new = (r * r).sum(dim=1)
        beta = torch.where(running, rr_new / rr, torch.zeros_like(rr))
        p = torch.where(running.unsqueeze(1), r + beta.unsqueeze(1) * p, p)
        rr = rr_new
    return first, step, x
