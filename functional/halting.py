"""Halting-time math as pure functions (Sagun, Trogdon, LeCun, "Universal halting times in optimization and
machine learning", arXiv:1511.06444, abstract and introduction: the halting time T, its fluctuations tau and their
two universality classes; our choices in ``docs/papers/halting_time.md``).

Two parts. Stopping rules: :func:`update_first_hits` records, for a batch of runs and a list of thresholds, the
first step at which each rule holds (the same function serves the callback, with one run, and the vectorised
ensembles, with K); :func:`push_cost` and :func:`mean_successive_decrease` give the value the paper's plateau rule
watches; :func:`halting_times` closes the record, censoring what never halted. Statistics of the
fluctuations ``tau = (T - mean T) / std T`` (arXiv:1511.06444): moments, one-sample tests against the two reference
laws (N(0, 1) and the standardised Gumbel), two-sample tests between ensembles (the universality test; ours,
``docs/papers/halting_time.md``) and bootstrap confidence intervals. Statistics are numpy float64 and call scipy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from itertools import combinations
from typing import Any, Literal

import numpy as np
import torch
from scipy import stats
from torch import Tensor

Direction = Literal["below", "at_least"]
GumbelSide = Literal["right", "left"]

EULER_GAMMA = 0.5772156649015329
GUMBEL_SKEWNESS = 12 * math.sqrt(6) * 1.2020569031595942 / math.pi**3  # 12 sqrt(6) zeta(3) / pi^3 = 1.1395


def update_first_hits(
    first: Tensor, values: Tensor, thresholds: Tensor, step: int, direction: Direction = "below"
) -> Tensor:
    """The first-hit record after observing ``values`` at ``step``: the halting time T(eps, N, A, E) of
    arXiv:1511.06444 (introduction) is the first step at which the stopping rule holds; several thresholds at once
    are ours (``docs/papers/halting_time.md``).

    Args:
        first: ``(..., E)`` int64, the step at which each run first met each of the E thresholds, -1 if not yet.
        values: ``(...)`` the monitored value of each run at ``step`` (loss, gradient norm, metric).
        thresholds: ``(E,)`` thresholds.
        step: the current step (the number of optimizer steps taken so far).
        direction: ``below`` (rule holds when ``value < threshold``) or ``at_least`` (``value >= threshold``).

    Returns a new tensor; entries already set are kept, so each is the *first* step the rule held.
    """
    values = values.detach().unsqueeze(-1).to(thresholds.dtype)
    holds = values < thresholds if direction == "below" else values >= thresholds
    return torch.where((first < 0) & holds, torch.full_like(first, step), first)


def push_cost(recent: Tensor, cost: Tensor) -> Tensor:
    """The window of recent costs after observing ``cost``: ``recent`` ``(..., window + 1)``, oldest first, NaN in the
    slots not yet observed, shifted by one, with ``cost`` ``(...)`` last. A new tensor, of ``recent``'s dtype. The
    window of the plateau rule that stops the deep networks of arXiv:1511.06444 (abstract: the MNIST and
    random-input networks; :func:`mean_successive_decrease`)."""
    return torch.cat([recent[..., 1:], cost.detach().to(recent).unsqueeze(-1)], dim=-1)


def mean_successive_decrease(recent: Tensor) -> Tensor:
    """The value the plateau rule of arXiv:1511.06444 watches (the deep networks of the abstract, trained on MNIST
    or random inputs: training stops "when the average of successive differences in cost values goes below a
    prescribed value"): for the last ``w + 1`` costs ``c_{t-w}, ..., c_t`` (``recent``, ``(..., w + 1)``, oldest
    first) the mean of the ``w`` successive decreases ``c_{i-1} - c_i``, which is ``(c_{t-w} - c_t) / w``, the
    cost's mean progress per observation over the window. NaN while a slot is still NaN (not yet observed), and a
    NaN never meets a threshold, so the rule first holds once ``w + 1`` costs were seen.

    Our reading (``docs/papers/halting_time.md``): the differences are signed, as the sentence says (differences,
    not their sizes), and taken as decreases, so that a small positive threshold means "the cost has stopped
    falling"; a cost that rose over the window (value <= 0) has stopped falling too, whereas the mean of absolute
    differences would let a cost that oscillates without progress run on. The window ``w`` is ours: the paper
    does not give one.
    """
    return (recent[..., :-1] - recent[..., 1:]).mean(dim=-1)


def halting_times(first: Tensor, last_step: int) -> tuple[Tensor, Tensor]:
    """``(T, censored)``, the halting times of arXiv:1511.06444 (introduction): runs that never met a threshold are
    right-censored at ``last_step``, never dropped (ours, ``docs/papers/halting_time.md``)."""
    censored = first < 0
    return torch.where(censored, torch.full_like(first, last_step), first), censored


def standardized_gumbel(side: GumbelSide = "right") -> Any:
    """The Gumbel law scaled to mean 0 and variance 1, the reference law of the Gumbel-like class of
    arXiv:1511.06444 (abstract and introduction): ``(G - gamma) / (pi / sqrt(6))`` for the maximum type
    ``G ~ gumbel_r(0, 1)`` (right tail, skewness +1.1395); ``left`` is its mirror image (``gumbel_l``, skewness
    -1.1395; the orientation is ours, ``docs/papers/halting_time.md``). A frozen ``scipy.stats`` distribution."""
    scale = math.sqrt(6) / math.pi
    if side == "right":
        return stats.gumbel_r(loc=-EULER_GAMMA * scale, scale=scale)
    return stats.gumbel_l(loc=EULER_GAMMA * scale, scale=scale)


def fluctuations(times: Any) -> np.ndarray:
    """The fluctuations ``tau = (T - mean T) / std T`` of arXiv:1511.06444 (introduction), with the sample mean and
    the unbiased (ddof=1) standard deviation."""
    times = np.asarray(times, dtype=np.float64)
    if times.size < 2 or times.std() == 0:
        raise ValueError(f"tau needs at least two distinct halting times, got {times.size} values")
    return (times - times.mean()) / times.std(ddof=1)


def describe(times: Any, censored: Any | None = None) -> dict[str, float]:
    """Counts and moments of one ensemble's halting times (arXiv:1511.06444, introduction; the report of
    ``docs/papers/halting_time.md``, ours): ``n``, ``n_censored``,
    ``censored_fraction``, and over the halted runs ``mean``, ``std`` (the raw scale, reported beside tau as
    the report gives), ``skewness`` and excess ``kurtosis`` (bias-corrected), ``median``, ``min``, ``max``."""
    times = np.asarray(times, dtype=np.float64)
    censored = np.zeros(times.shape, bool) if censored is None else np.asarray(censored, bool)
    halted = times[~censored]
    counts = {
        "n": int(times.size),
        "n_censored": int(censored.sum()),
        "censored_fraction": float(censored.mean()) if times.size else 0.0,
    }
    if halted.size < 2:  # nothing to describe: the caller reports the counts and marks the ensemble
        nan = float("nan")
        return {**counts, **dict.fromkeys(("mean", "std", "skewness", "kurtosis", "median", "min", "max"), nan)}
    return {
        **counts,
        "mean": float(halted.mean()),
        "std": float(halted.std(ddof=1)),
        "skewness": float(stats.skew(halted, bias=False)),
        "kurtosis": float(stats.kurtosis(halted, bias=False)),
        "median": float(np.median(halted)),
        "min": float(halted.min()),
        "max": float(halted.max()),
    }


def _anderson_pvalue(sample: np.ndarray, dist: str) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.anderson(sample, dist=dist, method="interpolate")
    return float(result.statistic), float(result.pvalue)


def _standardized(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return (x - x.mean(axis=axis, keepdims=True)) / x.std(axis=axis, ddof=1, keepdims=True)


def _ks_to_law(sorted_tau: np.ndarray, cdf) -> np.ndarray:
    """Kolmogorov-Smirnov distance of each row of ``sorted_tau`` (sorted along the last axis) to ``cdf``."""
    n = sorted_tau.shape[-1]
    f = cdf(sorted_tau)
    above = np.arange(1, n + 1) / n - f
    below = f - np.arange(n) / n
    return np.maximum(above.max(axis=-1), below.max(axis=-1))


def reference_tests(
    tau: Any, gumbel_side: GumbelSide = "right", groups: list[int] | None = None, n_null: int = 999, seed: int = 0
) -> dict[str, dict[str, float]]:
    """One-sample tests of ``tau`` against N(0, 1) (``normal``) and the standardised Gumbel (``gumbel``), the two
    classes of arXiv:1511.06444 (abstract). The paper overlays histograms; these tests are ours
    (``docs/papers/halting_time.md``).

    Tau is standardised by its own sample moments, so a KS p-value against the fully specified law would be far
    too large (Lilliefors 1967, J. Amer. Statist. Assoc. 62: two parameters were estimated). ``ks_pvalue`` is
    therefore calibrated by
    Monte Carlo: ``n_null`` samples of the same size are drawn from the reference law, standardised the same way
    (per group when ``groups`` lists the sizes of separately standardised parts, as for pooled ensembles), and
    the p-value is the share of null distances at least as large, ``(1 + #) / (1 + n_null)``.
    ``ad_statistic``/``ad_pvalue``: Anderson-Darling for the family with location and scale fitted
    (``scipy.stats.anderson``, ``method="interpolate"``, whose tables account for the fit; p-values clipped
    to [0.01, 0.25]).
    """
    tau = np.asarray(tau, dtype=np.float64)
    groups = groups or [tau.size]
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for name, law, family in (
        ("normal", stats.norm(), "norm"),
        ("gumbel", standardized_gumbel(gumbel_side), "gumbel_r" if gumbel_side == "right" else "gumbel_l"),
    ):
        observed = float(_ks_to_law(np.sort(tau), law.cdf))
        null = np.concatenate(
            [_standardized(law.rvs(size=(n_null, g), random_state=rng)) for g in groups], axis=1
        )  # fmt: skip
        null_distances = _ks_to_law(np.sort(null, axis=1), law.cdf)
        ad_statistic, ad_pvalue = _anderson_pvalue(tau, family)
        out[name] = {
            "ks_statistic": observed,
            "ks_pvalue": float((1 + np.sum(null_distances >= observed)) / (1 + n_null)),
            "ad_statistic": ad_statistic,
            "ad_pvalue": ad_pvalue,
        }
    return out


def universality_tests(
    taus: Mapping[str, Any], n_permutations: int = 999, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Two-sample tests between every pair of ensembles' tau, keyed ``"a vs b"``: the universality of
    arXiv:1511.06444 (abstract: the law of tau does not depend on the ensemble), tested by us where the paper
    overlays histograms (``docs/papers/halting_time.md``). The Kolmogorov-Smirnov distance (``scipy.stats.ks_2samp``)
    and the k-sample Anderson-Darling statistic (``scipy.stats.anderson_ksamp``, midrank) of the two standardised
    samples, each with a permutation p-value: the pooled taus are split at random
    ``n_permutations`` times, each part standardised again, and the p-value is ``(1 + #) / (1 + n_permutations)``
    of the permuted statistics at least as large. (scipy's own p-values assume nothing was estimated; with each
    sample standardised by its own moments they almost never reject.)"""
    out: dict[str, dict[str, float]] = {}
    for index, (a, b) in enumerate(combinations(taus, 2)):
        x, y = np.asarray(taus[a], np.float64), np.asarray(taus[b], np.float64)

        def statistics_of(u: np.ndarray, v: np.ndarray) -> tuple[float, float]:
            u, v = _standardized(u), _standardized(v)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(stats.ks_2samp(u, v).statistic), float(stats.anderson_ksamp([u, v]).statistic)

        ks, ad = statistics_of(x, y)
        rng = np.random.default_rng(seed + index)
        pooled = np.concatenate([x, y])
        exceed = np.zeros(2)
        for _ in range(n_permutations):
            shuffled = rng.permutation(pooled)
            ks_null, ad_null = statistics_of(shuffled[: x.size], shuffled[x.size :])
            exceed += [ks_null >= ks, ad_null >= ad]
        p_ks, p_ad = (1 + exceed) / (1 + n_permutations)
        out[f"{a} vs {b}"] = {
            "ks_statistic": ks,
            "ks_pvalue": float(p_ks),
            "ad_statistic": ad,
            "ad_pvalue": float(p_ad),
        }
    return out


def bootstrap_ci(
    sample: Any, statistic: Literal["skewness", "kurtosis", "mean", "std"] = "skewness", *,
    confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0,
) -> tuple[float, float]:  # fmt: skip
    """Percentile bootstrap confidence interval of a statistic of one sample (``scipy.stats.bootstrap``; Efron 1979,
    Ann. Statist. 7), for the skewness of tau that places an ensemble in a class of arXiv:1511.06444 (abstract; ours,
    ``docs/papers/halting_time.md``)."""
    functions = {
        "skewness": lambda x, axis: stats.skew(x, axis=axis, bias=False),
        "kurtosis": lambda x, axis: stats.kurtosis(x, axis=axis, bias=False),
        "mean": lambda x, axis: np.mean(x, axis=axis),
        "std": lambda x, axis: np.std(x, axis=axis, ddof=1),
    }
    result = stats.bootstrap(
        (np.asarray(sample, np.float64),),
        functions[statistic],
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def dithered(times: Any, seed: int = 0) -> np.ndarray:
    """Integer halting times spread uniformly over their unit cell, ``T + U - 1/2`` with ``U ~ U(0, 1)`` (ours,
    ``docs/papers/halting_time.md``; the halting times of arXiv:1511.06444, introduction, are integers).

    Tau of integer data lives on a lattice of spacing ``1 / std``; two ensembles whose means differ by a
    fraction of an iteration have offset lattices, and a KS distance then reaches the mass of one lattice point
    however equal the laws are. Dithering removes that artefact (variance grows by 1/12, negligible when
    ``std >> 1``); moments and raw statistics are always reported on the undithered times.
    """
    times = np.asarray(times, dtype=np.float64)
    return times + np.random.default_rng(seed).uniform(-0.5, 0.5, times.shape)


def ensemble_report(
    times: Mapping[str, Any], censored: Mapping[str, Any] | None = None, gumbel_side: GumbelSide = "right",
    n_resamples: int = 2000, seed: int = 0, dither: bool = True,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:  # fmt: skip
    """``(report, taus)``: the statistics of ``docs/papers/halting_time.md`` (ours) for several ensembles of the same
    (algorithm, eps, N) of arXiv:1511.06444 (introduction): per ensemble :func:`describe` (raw times), the skewness
    of tau with its bootstrap 95% CI, and :func:`reference_tests`; between ensembles :func:`universality_tests`; and
    the same class tests on all ensembles' tau pooled. Tau is computed per ensemble over its halted runs, from
    :func:`dithered` times when ``dither`` (seeded by ``seed`` and the ensemble's position); the censored counts are
    reported beside it.
    ``taus`` maps each ensemble to its tau sample (for figures)."""
    censored = censored or {}
    per_ensemble, taus = {}, {}
    for index, (name, t) in enumerate(times.items()):
        t = np.asarray(t, np.float64)
        mask = np.asarray(censored.get(name, np.zeros(t.shape, bool)), bool)
        described = describe(t, mask)
        if (~mask).sum() < 2 or np.ptp(t[~mask]) == 0:
            per_ensemble[name] = {**described, "insufficient": True}  # too few halted runs for tau
            continue
        halted = dithered(t[~mask], seed * 7919 + index) if dither else t[~mask]
        taus[name] = fluctuations(halted)
        per_ensemble[name] = {
            **described,
            "insufficient": False,
            "tau_skewness": float(stats.skew(taus[name], bias=False)),
            "tau_skewness_ci95": bootstrap_ci(taus[name], "skewness", n_resamples=n_resamples, seed=seed),
            "tests": reference_tests(taus[name], gumbel_side, seed=seed + index),
        }
    gumbel_skewness = GUMBEL_SKEWNESS if gumbel_side == "right" else -GUMBEL_SKEWNESS
    n_censored = int(sum(e["n_censored"] for e in per_ensemble.values()))
    report: dict[str, Any] = {
        "dithered": dither,
        "ensembles": per_ensemble,
        "n_censored": n_censored,  # censored runs are left out of tau: a non-zero count truncates the right tail
        "universality": universality_tests(taus, seed=seed),
        "reference_skewness": {"normal": 0.0, "gumbel": gumbel_skewness},
    }
    if taus:
        pooled = np.concatenate(list(taus.values()))
        report["pooled"] = {
            "n": int(pooled.size),
            "skewness": float(stats.skew(pooled, bias=False)),
            "skewness_ci95": bootstrap_ci(pooled, "skewness", n_resamples=n_resamples, seed=seed),
            "tests": reference_tests(pooled, gumbel_side, groups=[len(v) for v in taus.values()], seed=seed),
        }
    return report, taus
