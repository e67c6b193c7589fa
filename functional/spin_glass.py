"""The p = 3 spherical spin glass and its projected gradient descent, for K independent instances at once: the
Gumbel-like example of Sagun, Trogdon, LeCun, arXiv:1511.06444 (abstract and introduction), run as the first
author's Lua code does (leventsagun/3-spin-glass-landscape, ``code/3spin.lua``); our choices in
``docs/papers/halting_time.md``.

Energy ``H(w) = (1/N) sum_ijk x_ijk w_i w_j w_k`` on the sphere ``||w|| = sqrt(N)`` (the 1/N is N^-(p-1)/2),
couplings i.i.d. with mean 0 and variance 1 from one of four ensembles. Gradient descent from a uniform
random point: project the gradient onto the sphere's tangent space, step with ``gamma_t = lr / (1 + t decay)``,
rescale to radius sqrt(N); the halting time at eps is the first step at which the projected gradient's norm is
below eps. Every function takes a leading ensemble dimension K. Pure torch: ``iclr17.modules.SpinGlass`` and
``iclr17.datamodules.SpinGlassDataModule`` wrap it for Lightning.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from .halting import update_first_hits  # the rule HaltingTime applies

CouplingEnsemble = Literal["gaussian", "bernoulli", "uniform", "exponential"]
COUPLING_ENSEMBLES: tuple[str, ...] = ("gaussian", "bernoulli", "uniform", "exponential")


def sample_couplings(
    n_instances: int, n_spins: int, ensemble: CouplingEnsemble, generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> Tensor:  # fmt: skip
    """``(K, N, N, N)`` i.i.d. couplings x_ijk of the spin glass of arXiv:1511.06444 (abstract and introduction),
    with mean 0 and variance 1: ``gaussian``
    N(0, 1), ``bernoulli`` +-1, ``uniform`` on [-sqrt(3), sqrt(3)], ``exponential`` Exp(1) - 1. Variance 1 for every
    ensemble is ours (``docs/papers/halting_time.md``, "Uncertain values")."""
    shape = (n_instances, n_spins, n_spins, n_spins)
    if ensemble == "gaussian":
        return torch.randn(shape, generator=generator, dtype=dtype)
    if ensemble == "bernoulli":
        return torch.randint(0, 2, shape, generator=generator).to(dtype).mul_(2).sub_(1)
    if ensemble == "uniform":
        return torch.rand(shape, generator=generator, dtype=dtype).mul_(2 * math.sqrt(3)).sub_(math.sqrt(3))
    if ensemble == "exponential":
        return torch.empty(shape, dtype=dtype).exponential_(1.0, generator=generator).sub_(1)
    raise ValueError(f"ensemble must be one of {COUPLING_ENSEMBLES}, got {ensemble!r}")


def symmetrize(couplings: Tensor) -> Tensor:
    """The average of ``x_ijk`` over the 6 permutations of (i, j, k): the same energy H(w) (arXiv:1511.06444;
    ``3spin.lua``), and the gradient becomes one contraction (:func:`sphere_gradient`)."""
    out = couplings.clone()
    for perm in ((0, 2, 1, 3), (0, 1, 3, 2), (0, 2, 3, 1), (0, 3, 1, 2), (0, 3, 2, 1)):
        out += couplings.permute(perm)
    return out.div_(6)


def random_sphere_points(n_instances: int, n_spins: int, generator: torch.Generator, dtype=torch.float32) -> Tensor:
    """``(K, N)`` points drawn uniformly on the sphere of radius sqrt(N): the random starts of the descent of
    arXiv:1511.06444 (``3spin.lua``)."""
    w = torch.randn(n_instances, n_spins, generator=generator, dtype=dtype)
    return w * (math.sqrt(n_spins) / w.norm(dim=1, keepdim=True))


def energy(couplings: Tensor, w: Tensor) -> Tensor:
    """``(K,)`` energies ``H(w) = (1/N) sum_ijk x_ijk w_i w_j w_k`` of the p = 3 spherical spin glass of
    arXiv:1511.06444, as ``3spin.lua`` computes it (the 1/N is N^-(p-1)/2; any couplings, symmetric or not)."""
    return torch.einsum("kabc,ka,kb,kc->k", couplings, w, w, w) / w.shape[1]


def sphere_gradient(symmetric_couplings: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """``(energy, projected gradient)`` at points ``w`` on the sphere, for symmetrised couplings
    (arXiv:1511.06444; the projection of ``3spin.lua``).

    The Euclidean gradient is ``g_i = (3/N) sum_jk xs_ijk w_j w_k``; its tangent part is
    ``g - (g . w / N) w`` (``||w||^2 = N``); ``H = (g . w) / 3`` by Euler's theorem for a cubic form.
    """
    k, n = w.shape
    ww = (w.unsqueeze(2) * w.unsqueeze(1)).reshape(k, 1, n * n)
    # a row vector times the transposed view: CPU BLAS runs it as gemv (a column-vector bmm is 2-3x slower)
    g = torch.bmm(ww, symmetric_couplings.reshape(k, n, n * n).transpose(1, 2)).squeeze(1) * (3.0 / n)
    radial = (g * w).sum(dim=1, keepdim=True)
    return radial.squeeze(1) / 3.0, g - radial / n * w


def sphere_step(w: Tensor, projected_gradient: Tensor, gamma: float) -> Tensor:
    """One step ``w - gamma g`` rescaled to radius sqrt(N) (arXiv:1511.06444; ``3spin.lua``)."""
    w = w - gamma * projected_gradient
    return w * (math.sqrt(w.shape[1]) / w.norm(dim=1, keepdim=True))


def step_size(lr: float, decay: float, step: int) -> float:
    """``gamma_t = lr / (1 + t decay)`` for the (t + 1)-th update, as the Lua code of arXiv:1511.06444's first
    author counts (``3spin.lua``, ``time`` from 1)."""
    return lr / (1.0 + (step + 1) * decay)


LOCKSTEP_BYTES = 8 * 2**20  # on a CPU, the couplings one lockstep group may hold: a quarter of a 32 MiB L3


def lockstep_group_size(symmetric_couplings: Tensor) -> int:
    """Instances that :func:`descend_until_halted` runs in lockstep by default, for the spin-glass ensembles of
    arXiv:1511.06444 (abstract and introduction); ours, a matter of speed only (``docs/papers/halting_time.md``).

    Each instance's step reads its N^3 couplings once (a (N, N^2) x N^2 contraction), so the descent is bound by
    memory bandwidth. On a CPU, K instances in one lockstep program stream K N^3 couplings from main memory at
    every step, while one instance at a time keeps its couplings in the last-level cache from step to step; so
    groups hold at most ``LOCKSTEP_BYTES`` of couplings (in float32: 64 at N = 32, 8 at N = 64, two at N = 100,
    one at N = 200, where batching has nothing to reuse). On a GPU every instance runs in one program.
    """
    k = symmetric_couplings.shape[0]
    if symmetric_couplings.device.type != "cpu":
        return max(k, 1)
    per_instance = symmetric_couplings[0].numel() * symmetric_couplings.element_size()
    return max(1, min(k, LOCKSTEP_BYTES // per_instance))


def descend_until_halted(
    symmetric_couplings: Tensor, w: Tensor, eps: Tensor, lr: float = 0.2, decay: float = 0.0, max_steps: int = 10_000,
    group_size: int | None = None,
) -> tuple[Tensor, int, Tensor]:  # fmt: skip
    """Projected gradient descent on K instances, each until it met every eps: the halting times T(eps, N) of the
    spin glass of arXiv:1511.06444 (abstract and introduction), several eps per run and the lockstep batching
    being ours (``docs/papers/halting_time.md``).

    Returns ``(first, last_step, w)``: ``first[k, e]`` is the number of updates instance k had taken when its
    projected gradient norm was first below ``eps[e]`` (-1: not within ``max_steps``, i.e. censored at
    ``last_step``), and ``w`` each instance's last point. The Lua code counts gradient evaluations from 1, so its
    times are these plus one.

    The instances run in consecutive groups of ``group_size`` (default :func:`lockstep_group_size`), each group in
    lockstep to its end; every instance's arithmetic is the same whatever the grouping (each step is its own
    row-vector product), so the halting times do not depend on it. Within a group, instances that met every eps
    leave the working set whenever at least half of it has halted (until then they keep stepping, which changes
    no recorded time), so the cost is about the sum of the halting times, not K times the longest.
    """
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1):
        raise ValueError(f"group_size must be a positive int or None, got group_size={group_size!r}")
    k = w.shape[0]
    size = group_size or lockstep_group_size(symmetric_couplings)
    if size >= k:
        return _descend_in_lockstep(symmetric_couplings, w, eps, lr, decay, max_steps)
    groups = [
        _descend_in_lockstep(symmetric_couplings[i : i + size], w[i : i + size], eps, lr, decay, max_steps)
        for i in range(0, k, size)
    ]  # fmt: skip
    first, lasts, ws = zip(*groups, strict=True)
    return torch.cat(first), max(lasts), torch.cat(ws)


def _descend_in_lockstep(
    symmetric_couplings: Tensor, w: Tensor, eps: Tensor, lr: float, decay: float, max_steps: int
) -> tuple[Tensor, int, Tensor]:
    """:func:`descend_until_halted` for one group, all its instances in one tensor program."""
    first = torch.full((w.shape[0], len(eps)), -1, dtype=torch.long, device=w.device)
    w_final, active = w.clone(), torch.arange(w.shape[0], device=w.device)
    couplings, step = symmetric_couplings, 0
    for step in range(max_steps + 1):
        _, g = sphere_gradient(couplings, w)
        first[active] = update_first_hits(first[active], torch.linalg.vector_norm(g, dim=1), eps, step)
        halted = (first[active] >= 0).all(dim=1)
        if step == max_steps or bool(halted.all()):
            break
        w = sphere_step(w, g, step_size(lr, decay, step))
        if 2 * int(halted.sum()) >= len(active):
            w_final[active] = w
            keep = ~halted
            active, couplings, w = active[keep], couplings[keep], w[keep]
    w_final[active] = w
    return first, step, w_final
