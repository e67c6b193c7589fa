"""Halting-time statistics against scipy and closed forms, on samples whose law is known."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from iclr17.functional.halting import (
    GUMBEL_SKEWNESS,
    bootstrap_ci,
    describe,
    dithered,
    ensemble_report,
    fluctuations,
    halting_times,
    reference_tests,
    standardized_gumbel,
    universality_tests,
    update_first_hits,
)


def test_first_hits_equal_a_loop_over_runs_and_thresholds():
    generator = torch.Generator().manual_seed(0)
    trajectories = torch.rand(5, 40, generator=generator).cumsum(1).neg() + 30  # decreasing, one row per run
    thresholds = torch.tensor([25.0, 20.0, 10.0, -100.0], dtype=torch.float64)
    first = torch.full((5, 4), -1)
    for step in range(40):
        first = update_first_hits(first, trajectories[:, step], thresholds, step)
    for run in range(5):
        for e, threshold in enumerate(thresholds.tolist()):
            hits = [t for t in range(40) if trajectories[run, t] < threshold]
            assert first[run, e].item() == (hits[0] if hits else -1)
    times, censored = halting_times(first, last_step=39)
    assert torch.equal(censored, first < 0) and censored[:, 3].all() and not censored[:, 0].any()
    assert torch.equal(times, torch.where(censored, 39, first))


def test_at_least_direction_and_first_hit_is_kept():
    first = torch.full((1,), -1)
    first = update_first_hits(first, torch.tensor(0.8), torch.tensor([0.7]), 3, "at_least")
    first = update_first_hits(first, torch.tensor(0.9), torch.tensor([0.7]), 4, "at_least")
    assert first.tolist() == [3]


def test_standardized_gumbel_has_mean_zero_variance_one_and_known_skewness():
    for side, sign in (("right", 1), ("left", -1)):
        mean, var, skew = standardized_gumbel(side).stats(moments="mvs")
        assert (
            mean == pytest.approx(0, abs=1e-12)
            and var == pytest.approx(1)
            and skew == pytest.approx(sign * 1.1395, abs=1e-4)
        )
    assert pytest.approx(float(stats.gumbel_r.stats(moments="s")), rel=1e-12) == GUMBEL_SKEWNESS


def test_fluctuations_and_describe_match_numpy_and_scipy():
    times = np.array([10, 12, 15, 11, 30, 14, 13, 50.0])
    censored = np.array([0, 0, 0, 0, 0, 0, 0, 1], bool)
    tau = fluctuations(times[:7])
    np.testing.assert_allclose(tau, (times[:7] - times[:7].mean()) / np.std(times[:7], ddof=1))
    d = describe(times, censored)
    assert d["n"] == 8 and d["n_censored"] == 1 and d["censored_fraction"] == 1 / 8
    assert d["skewness"] == pytest.approx(stats.skew(times[:7], bias=False))
    assert d["mean"] == pytest.approx(times[:7].mean())


def test_a_gumbel_sample_of_2000_is_accepted_as_gumbel_and_rejected_as_normal():
    rng = np.random.default_rng(0)
    tau = fluctuations(rng.gumbel(size=2000) * 3 + 7)  # any location and scale
    tests = reference_tests(tau)
    assert tests["gumbel"]["ks_pvalue"] > 0.05 and tests["gumbel"]["ad_pvalue"] > 0.05
    assert tests["normal"]["ks_pvalue"] < 0.01 and tests["normal"]["ad_pvalue"] <= 0.01
    assert tests["normal"]["ks_statistic"] == pytest.approx(stats.kstest(tau, "norm").statistic)
    low, high = bootstrap_ci(tau, "skewness", n_resamples=500)
    assert low < GUMBEL_SKEWNESS < high and low > 0.5


def test_a_normal_sample_is_accepted_as_normal_and_rejected_as_gumbel():
    tau = fluctuations(np.random.default_rng(1).normal(size=2000))
    tests = reference_tests(tau)
    assert tests["normal"]["ks_pvalue"] > 0.05 and tests["normal"]["ad_pvalue"] > 0.05
    assert tests["gumbel"]["ks_pvalue"] < 0.01 and tests["gumbel"]["ad_pvalue"] <= 0.01


def test_universality_tests_accept_one_law_and_reject_two():
    rng = np.random.default_rng(2)
    taus = {
        "gumbel_a": fluctuations(rng.gumbel(size=2000)),
        "gumbel_b": fluctuations(rng.gumbel(size=2000) * 10 - 4),
        "normal": fluctuations(rng.normal(size=2000)),
    }
    result = universality_tests(taus)
    assert set(result) == {"gumbel_a vs gumbel_b", "gumbel_a vs normal", "gumbel_b vs normal"}
    same = result["gumbel_a vs gumbel_b"]
    assert same["ks_pvalue"] > 0.05 and same["ad_pvalue"] > 0.05
    assert same["ks_statistic"] == pytest.approx(stats.ks_2samp(taus["gumbel_a"], taus["gumbel_b"]).statistic)
    assert result["gumbel_a vs normal"]["ks_pvalue"] < 0.01 and result["gumbel_a vs normal"]["ad_pvalue"] <= 0.001


def test_ensemble_report_is_complete_and_counts_censored_runs():
    rng = np.random.default_rng(3)
    times = {"a": rng.gumbel(size=300) * 5 + 50, "b": rng.gumbel(size=300) * 5 + 50}
    censored = {"a": np.arange(300) < 3}
    report, taus = ensemble_report(times, censored, n_resamples=200)
    assert report["ensembles"]["a"]["n_censored"] == 3 and len(taus["a"]) == 297 and len(taus["b"]) == 300
    assert report["pooled"]["n"] == 597 and "a vs b" in report["universality"]
    assert math.isfinite(report["pooled"]["skewness"])


def test_offset_lattices_of_integer_times_do_not_fool_the_tests():
    """One continuous law, shifted by half an iteration before rounding: the same law of tau on offset lattices.
    scipy's KS p-value tells them apart by the lattice alone; the permutation p-values do not, with or without
    dithering (which moves each time by at most half a step)."""
    rng = np.random.default_rng(4)
    a = np.floor(rng.gumbel(size=2000) * 3 + 20)
    b = np.floor(rng.gumbel(size=2000) * 3 + 20.5)
    assert stats.ks_2samp(fluctuations(a), fluctuations(b)).pvalue < 0.01
    raw = universality_tests({"a": fluctuations(a), "b": fluctuations(b)})["a vs b"]
    spread = universality_tests({"a": fluctuations(dithered(a, 0)), "b": fluctuations(dithered(b, 1))})["a vs b"]
    assert raw["ks_pvalue"] > 0.05 and spread["ks_pvalue"] > 0.05
    assert np.all(np.abs(dithered(a, 0) - a) <= 0.5)


def test_the_tests_reject_a_true_null_about_five_percent_of_the_time():
    """Calibration: tau standardised by its own moments must not make the p-values conservative (scipy's
    fully specified KS on such samples rejects almost never; spec 6 needs tests that can fail)."""
    rng = np.random.default_rng(11)
    one_sample = [
        reference_tests(fluctuations(rng.normal(size=60)), n_null=199, seed=i)["normal"]["ks_pvalue"]
        for i in range(150)
    ]
    two_sample = [
        universality_tests({"a": fluctuations(rng.gumbel(size=60)), "b": fluctuations(rng.gumbel(size=60))},
                           n_permutations=99, seed=i)["a vs b"]["ks_pvalue"]
        for i in range(120)
    ]  # fmt: skip
    for p_values in (one_sample, two_sample):
        assert 0.01 <= np.mean(np.asarray(p_values) <= 0.05) <= 0.12
    skewed = [reference_tests(fluctuations(rng.gumbel(size=300)), n_null=199)["normal"]["ks_pvalue"] for _ in range(20)]
    assert np.mean(np.asarray(skewed) <= 0.05) > 0.5  # and they have power against a skewed law
