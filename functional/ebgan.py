"""EBGAN's math as pure functions (Zhao, Mathieu, LeCun, arXiv:1609.03126 section 2): the auto-encoder energy
(section 2.3, eq 13), the per-sample margin hinge (section 2.1, eqs 1-2), the pulling-away term (section 2.4, eq 14),
margin schedules (section 4.2), the standard-GAN losses of the paper's baseline (section 4.1), the MNIST score
I' (section 4.1), and the exact rank test of Fig. 2's claim (section 4.1). Our choices where the paper is silent:
``docs/papers/ebgan.md``. Nothing here knows about Lightning."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import Tensor

Energy = Literal["l2", "sse", "mse"]
HingeReduction = Literal["per_sample", "batch_mean"]
MarginSchedule = Literal["constant", "linear", "exponential", "step"]


def reconstruction_energy(x: Tensor, reconstruction: Tensor, energy: Energy = "l2") -> Tensor:
    """Per-sample energy ``D(x) = ||Dec(Enc(x)) - x||`` (arXiv:1609.03126 section 2.3, eq 13), shape ``(N,)``.

    ``l2``: square root of the sum of squared errors over all pixels (the literal eq 13, the default);
    ``sse``: the sum of squared errors; ``mse``: their mean (what most ports use). The paper's margins
    (m = 10, 20, 40, 80) only make sense on the scale they were tuned on, so configs store ``energy`` next to
    ``margin``; the scale is ours (``docs/papers/ebgan.md``). ``l2`` adds 1e-12 under the square root so that its
    gradient is finite at 0.
    """
    if x.shape != reconstruction.shape:
        raise ValueError(f"reconstruction has shape {tuple(reconstruction.shape)} but x has {tuple(x.shape)}")
    squared = (reconstruction - x).pow(2).flatten(1)
    if energy == "l2":
        return (squared.sum(dim=1) + 1e-12).sqrt()
    if energy == "sse":
        return squared.sum(dim=1)
    if energy == "mse":
        return squared.mean(dim=1)
    raise ValueError(f"energy must be one of l2, sse, mse; got {energy!r}")


def margin_hinge(fake_energy: Tensor, margin: float, reduction: HingeReduction = "per_sample") -> Tensor:
    """The fake term of L_D (arXiv:1609.03126 section 2.1, eq 1): ``mean_i [m - D(G(z_i))]^+`` for ``per_sample``.

    ``batch_mean`` computes ``[m - mean_i D(G(z_i))]^+`` instead, the bug of a popular port (``docs/papers/ebgan.md``),
    kept only to reproduce it: one low-energy fake can then hide behind high-energy ones.
    """
    if reduction == "per_sample":
        return F.relu(margin - fake_energy).mean()
    if reduction == "batch_mean":
        return F.relu(margin - fake_energy.mean())
    raise ValueError(f"reduction must be per_sample or batch_mean; got {reduction!r}")


def discriminator_loss(
    real_energy: Tensor, fake_energy: Tensor, margin: float, reduction: HingeReduction = "per_sample"
) -> Tensor:
    """``L_D = mean_i D(x_i) + mean_i [m - D(G(z_i))]^+`` (arXiv:1609.03126 section 2.1, eq 1), the per-sample loss
    averaged over the batch."""
    return real_energy.mean() + margin_hinge(fake_energy, margin, reduction)


def pulling_away_term(codes: Tensor, eps: float = 1e-8) -> Tensor:
    """``f_PT(S) = 1 / (N (N - 1)) sum_i sum_{j != i} (s_i . s_j)^2`` with ``s_i = S_i / ||S_i||_2``
    (arXiv:1609.03126 section 2.4, eq 14).

    ``codes`` is ``(N, ...)``; each sample's code is flattened and divided by its own L2 norm (``eps`` keeps a
    zero row finite). The result is the mean squared cosine similarity between distinct rows: 0 for mutually
    orthogonal codes, 1 for identical (or parallel) ones, and invariant to row order and per-row scale.
    """
    n = codes.shape[0]
    if n < 2:
        raise ValueError(f"the pulling-away term needs at least 2 codes, got a batch of {n}")
    flat = codes.flatten(1)
    unit = flat / flat.norm(dim=1, keepdim=True).clamp_min(eps)
    cosine_sq = (unit @ unit.t()).pow(2)
    off_diagonal = cosine_sq.sum() - cosine_sq.diagonal().sum()
    return off_diagonal / (n * (n - 1))


def generator_loss(fake_energy: Tensor, codes: Tensor | None = None, pt_weight: float = 0.0) -> Tensor:
    """``L_G = mean_i D(G(z_i)) + lambda_PT f_PT(Enc(G(z)))`` (arXiv:1609.03126 section 2.1, eq 2, plus the PT term of
    section 2.4, eq 14; ``pt_weight`` = lambda_PT, 0.1 in the paper, never added to L_D)."""
    loss = fake_energy.mean()
    if pt_weight:
        if codes is None:
            raise ValueError("pt_weight > 0 needs the encoder codes of the generated batch")
        loss = loss + pt_weight * pulling_away_term(codes)
    return loss


def margin_at(
    epoch: float,
    initial: float,
    schedule: MarginSchedule = "constant",
    final: float = 0.0,
    decay_epochs: float = 1.0,
    step_every: float = 1.0,
) -> float:
    """The margin after ``epoch`` (fractional) epochs of a schedule from ``initial`` to ``final``.

    ``constant``: ``initial`` always. ``linear``: straight line reaching ``final`` at ``decay_epochs``.
    ``exponential``: geometric interpolation ``initial * (final / initial)^(t / decay_epochs)`` (``final`` must be
    > 0; use a small value to approach 0). ``step``: ``linear`` evaluated at the last multiple of ``step_every``.
    After ``decay_epochs`` every decaying schedule stays at ``final``. EBGAN-LN decays m towards 0
    (arXiv:1609.03126 section 4.2); the paper's schedule (App. D) is unknown to us, so these four are ours
    (``docs/papers/ebgan.md``).
    """
    if schedule == "constant":
        return initial
    if decay_epochs <= 0:
        raise ValueError(f"decay_epochs must be > 0, got {decay_epochs}")
    t = min(max(epoch, 0.0) / decay_epochs, 1.0)
    if schedule == "linear":
        return initial + (final - initial) * t
    if schedule == "exponential":
        if initial <= 0 or final <= 0:
            raise ValueError(f"the exponential schedule needs initial and final > 0, got {initial} and {final}")
        return initial * (final / initial) ** t
    if schedule == "step":
        if step_every <= 0:
            raise ValueError(f"step_every must be > 0, got {step_every}")
        stepped = math.floor(max(epoch, 0.0) / step_every + 1e-9) * step_every
        return initial + (final - initial) * min(stepped / decay_epochs, 1.0)
    raise ValueError(f"schedule must be one of constant, linear, exponential, step; got {schedule!r}")


def gan_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The standard GAN discriminator loss ``-mean log D(x) - mean log(1 - D(G(z)))`` on logits (Goodfellow et al.
    2014, arXiv:1406.2661, eq 1), for the GAN baseline of the EBGAN grid (arXiv:1609.03126 section 4.1, Table 1)."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def gan_generator_loss(fake_logits: Tensor) -> Tensor:
    """The non-saturating GAN generator loss ``-mean log D(G(z))`` (Goodfellow et al. 2014, arXiv:1406.2661,
    section 3), for the GAN baseline of arXiv:1609.03126 section 4.1."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def mnist_score_statistics(probs: Tensor, eps: float = 1e-12) -> tuple[Tensor, Tensor, int]:
    """Sufficient statistics of I' (arXiv:1609.03126 section 4.1) for class probabilities ``(N, K)``:
    ``sum_x p(y|x)``, ``sum_x log p(y|x)`` (probabilities clamped at ``eps``) and ``N``. Sums add up over batches
    and processes (torchmetrics style)."""
    return probs.sum(dim=0), probs.clamp_min(eps).log().sum(dim=0), probs.shape[0]


def mnist_score_from_statistics(prob_sum: Tensor, log_prob_sum: Tensor, n: int | Tensor, eps: float = 1e-12) -> Tensor:
    """``I' = E_x KL(p(y) || p(y|x)) = sum_y p(y) (log p(y) - E_x log p(y|x))`` with ``p(y) = E_x p(y|x)``
    (arXiv:1609.03126 section 4.1), from the sums of :func:`mnist_score_statistics`."""
    p_y = prob_sum / n
    return (p_y * (p_y.clamp_min(eps).log() - log_prob_sum / n)).sum().clamp_min(0.0)  # a KL: < 0 only by rounding


def mnist_score(probs: Tensor, eps: float = 1e-12) -> Tensor:
    """The paper's MNIST score ``I' = E_x KL(p(y) || p(y|x))`` (arXiv:1609.03126 section 4.1) of class
    probabilities ``(N, K)``.

    The KL arguments are swapped relative to the Inception Score and there is no exponential. It is 0 when every
    sample has the same p(y|x); higher is better (our reading of Fig. 2, ``docs/papers/ebgan.md``).
    """
    return mnist_score_from_statistics(*mnist_score_statistics(probs, eps), eps=eps)


def _mann_whitney_plan(x: np.ndarray | list[float], y: np.ndarray | list[float]) -> tuple[np.ndarray, int, int]:
    """The cheaper of two equal counts of ``P(U >= u)`` over the ``N`` pooled values' doubled midranks ``r``,
    ``R_x`` being x's sum of them: the ``len(y)``-subsets summing to at most ``N (N + 1) - R_x``, or the
    ``len(x)``-subsets of ``2 (N + 1) - r`` (ranks counted from the top) summing to at most
    ``2 len(x) (N + 1) - R_x``; returns ``(ranks, subset size, limit)`` of that count."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1 or len(x) == 0 or len(y) == 0:
        raise ValueError(f"Mann-Whitney: x and y must be non-empty 1-D, got shapes {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("Mann-Whitney: x and y must be finite (leave a diverged run's I' out first)")
    n = len(x) + len(y)
    doubled = np.rint(2 * rankdata(np.concatenate([x, y]))).astype(np.int64)  # midranks are halves: doubled, integers
    observed = int(doubled[: len(x)].sum())
    by_y = (doubled, len(y), n * (n + 1) - observed)
    by_x = (2 * (n + 1) - doubled, len(x), 2 * len(x) * (n + 1) - observed)
    return min(by_y, by_x, key=lambda plan: _work(*plan))


def _work(ranks: np.ndarray, k: int, limit: int) -> int:
    """Cell updates of a count: a (k + 1) x (limit + 1) table, once for each rank that fits under the limit."""
    return (k + 1) * (limit + 1) * int((ranks <= limit).sum())


def mann_whitney_exact_work(x: np.ndarray | list[float], y: np.ndarray | list[float]) -> int:
    """The cell updates :func:`mann_whitney_greater_exact` makes (3e8 to 6e8 a second on one loaded core of the
    2-core dev machine; its table is at most this many 8-byte cells), for choosing between it and a normal
    approximation (Mann and Whitney 1947)."""
    return _work(*_mann_whitney_plan(x, y))


MANN_WHITNEY_MAX_WORK = 2_000_000_000  # 2-6 s on dev: the exact test's default budget (96 against 96: at most 5e8)


def mann_whitney_greater_exact(
    x: np.ndarray | list[float], y: np.ndarray | list[float], max_work: int = MANN_WHITNEY_MAX_WORK
) -> float:
    """The exact one-sided p-value of the Mann-Whitney U test (Mann and Whitney 1947) that ``x`` sits to the right
    of ``y``, as Fig. 2 of arXiv:1609.03126 claims of EBGAN's I' against the GAN's: the share of all
    ``C(n, len(x))`` splits of the pooled values whose first part has a midrank sum at least ``x``'s, ties by
    midranks. Counted by dynamic programming over the pooled ranks, in floating point (relative error about 1e-13
    at any p), in :func:`mann_whitney_exact_work` updates: a ``ValueError`` above ``max_work`` (seconds).
    Written here because ``scipy.stats.mannwhitneyu`` is exact only without ties (several grid runs score I'
    exactly 0) and its normal approximation is orders of magnitude off in the far tail."""
    ranks, k, limit = _mann_whitney_plan(x, y)
    work = _work(ranks, k, limit)
    if work > max_work:
        raise ValueError(
            f"mann_whitney_greater_exact: {len(x)} against {len(y)} values need {work:,} updates, above "
            f"max_work={max_work:,}; use the normal approximation (scipy.stats.mannwhitneyu)"
        )
    ways = np.zeros((k + 1, limit + 1))  # ways[j, s]: subsets of j ranks seen so far summing to s (no more is needed)
    ways[0, 0] = 1.0
    for rank in ranks[ranks <= limit]:  # numpy buffers the overlap: each rank joins a subset at most once
        ways[1:, rank:] += ways[:-1, : limit + 1 - rank]
    hits = int(ways[k].sum())  # at least 1: the observed split itself; int / int divides past float's range
    return min(1.0, hits / math.comb(len(x) + len(y), k))  # the sum's rounding can pass C(n, k) by an ulp
