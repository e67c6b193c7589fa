"""The halting-time study: the vmapped MLP ensemble against a plain one-run loop; a tiny study run into a ledger and
its table and figure from the ledger alone; the statistics' plumbing on hand-written rows; the committed ledgers
against the raw JSON they were migrated from. (Conjugate gradient, the other system, is pure math:
tests/functional/test_conjugate_gradient.py checks it against a numpy loop.)"""

import shlex

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jsonargparse import CLI

from iclr17.functional.halting import ensemble_report
from iclr17.modules.nets import MLP
from iclr17.studies.halting import (
    ConjugateGradientRuns,
    HaltingStudy,
    SpinGlassRuns,
    ensembles_summary,
    experiments,
    halting_figures,
    mlp_table,
    p_text,
    pairs_summary,
    span,
    spin_glass_table,
    threshold_reports,
)
from iclr17.studies.ledger import done_keys, read
from iclr17.studies.mlp_ensemble import init_ensemble, train_until_halted
from iclr17.studies.runner import record_run
from tests.conftest import REPO_ROOT


def test_ensemble_member_equals_a_plain_sgd_loop_with_its_seed_and_order():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=generator)
    widths, seeds, order_seeds = [5, 8, 3], [11, 12, 13], [21, 22, 23]
    thresholds = [1.0, 0.8]
    base, params = init_ensemble(widths, seeds)
    params = {k: v.double() for k, v in params.items()}
    first, _ = train_until_halted(
        base, params, x, y, torch.tensor(thresholds, dtype=torch.float64), order_seeds, lr=0.2, batch_size=16,
        every_n_steps=2, max_steps=2000,
    )  # fmt: skip
    for k in range(3):
        torch.manual_seed(seeds[k])
        net = MLP(widths).double()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.2)
        order_generator, expected, step = torch.Generator().manual_seed(order_seeds[k]), [-1, -1], 0
        while min(expected) < 0:
            if step % 2 == 0:
                with torch.no_grad():
                    loss = F.cross_entropy(net(x), y).item()
                expected = [step if e < 0 and loss < t else e for e, t in zip(expected, thresholds, strict=True)]
            if step % 3 == 0:  # 60 // 16 = 3 steps an epoch
                order = torch.randperm(60, generator=order_generator)
            batch = order[(step % 3) * 16 : (step % 3 + 1) * 16]
            optimizer.zero_grad()
            F.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
            step += 1
        assert first[k].tolist() == expected
    assert len(set(first[:, 1].tolist())) > 1  # members differ: own seeds and orders


def _tiny_cg_study(tmp_path) -> HaltingStudy:
    system = ConjugateGradientRuns(n=20, eps=[1.0e-4, 1.0e-8], chunk_size=25)
    return HaltingStudy(system, n_runs=60, n_resamples=100, name="tiny", ledger_dir=str(tmp_path / "ledgers"),
                        runs_dir=str(tmp_path / "runs"))  # fmt: skip


def test_a_tiny_study_records_each_ensembles_raw_times_and_draws_its_table_from_the_ledger(tmp_path, capsys):
    study = _tiny_cg_study(tmp_path)
    runs = study.planned()
    assert [r.params for r in runs] == [
        {"system": "ConjugateGradientRuns", "n": 20, "ensemble": "gaussian", "ensemble_index": 0},
        {"system": "ConjugateGradientRuns", "n": 20, "ensemble": "bernoulli", "ensemble_index": 1},
    ]
    for run in runs:
        record_run(study, run, threads=1, machine="test")
    rows = read(study.ledger)
    assert done_keys(rows) == {run.key for run in runs} and all(r["status"] == "finished" for r in rows)
    times, censored = ConjugateGradientRuns(n=20, eps=[1.0e-4, 1.0e-8], chunk_size=25).run("bernoulli", 1, 60, 0)
    assert rows[1]["metrics"]["times"] == times.T.tolist() and not censored.any()
    assert rows[1]["metrics"]["censored_runs"] == [[], []] and rows[1]["metrics"]["thresholds"] == [1e-4, 1e-8]

    table = study.markdown(rows).splitlines()
    assert table[0].startswith("| eps | mean T (std) Gaussian / Bernoulli | pooled tau skewness [95% CI] |")
    assert [line.split(" | ")[0] for line in table[2:]] == ["| 0.0001", "| 1e-08"]
    bernoulli = f"{times[:, 1].mean():.1f} ({times[:, 1].std(ddof=1):.1f})"  # numpy, not the report
    assert table[3].split(" | ")[1].endswith(f" / {bernoulli}")
    assert study.figure(rows, tmp_path / "tiny.png") and (tmp_path / "tiny.png").stat().st_size > 10_000

    # the row's command reruns that run alone: the same run key, so it is done
    capsys.readouterr()
    args = shlex.split(rows[0]["command"])
    assert args[:2] == ["iclr17", "halting"] and args[-1] == "run"
    CLI(HaltingStudy, args=[*args[2:-1], "status"], as_positional=False)
    assert "tiny (" in capsys.readouterr().out.splitlines()[0] and study.status()["done"]


def test_a_study_draws_the_figure_of_its_own_system_description_and_two_of_one_size_get_two_files(tmp_path):
    paper = _tiny_cg_study(tmp_path)
    square = HaltingStudy(ConjugateGradientRuns(n=20, c=0.0, eps=[1.0e-4, 1.0e-8], chunk_size=25), n_runs=60,
                          n_resamples=100, name="tiny", ledger_dir=str(tmp_path / "ledgers"),
                          runs_dir=str(tmp_path / "runs"))  # fmt: skip
    for study in (paper, square):
        for run in study.planned():
            record_run(study, run, threads=1, machine="test")
    rows = read(paper.ledger)  # one ledger, two system descriptions of N = 20 (M = 28 and M = 20)
    assert len({r["config_digest"] for r in rows}) == 2
    drawn = []
    for study, name in ((paper, "paper.png"), (square, "square.png")):
        assert study.figure(rows, tmp_path / "own" / name)
        drawn.append(name)
        assert sorted(p.name for p in (tmp_path / "own").iterdir()) == drawn  # its path, no other file
    assert (tmp_path / "own" / "paper.png").read_bytes() != (tmp_path / "own" / "square.png").read_bytes()

    assert halting_figures(rows, tmp_path / "both" / "cg.png", n_resamples=100)
    digests = sorted({r["config_digest"] for r in rows})
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == [f"cg_20_{d}.png" for d in digests]


def _row(ensemble, index, times, censored_runs, seed=0, config_digest="d32", n_spins=32, status="finished"):
    return {
        "study": "s", "config": "c", "config_digest": config_digest, "overrides": [f"--ensembles=[{ensemble}]"],
        "params": {"system": "SpinGlassRuns", "n_spins": n_spins, "ensemble": ensemble, "ensemble_index": index},
        "seed": seed, "status": status, "metrics": {"threshold_name": "eps", "thresholds": [1.0, 0.5], "times": times,
                                                    "censored_runs": censored_runs},
    }  # fmt: skip


def test_experiments_pool_seeds_keep_a_runs_latest_row_and_leave_failed_rows_out():
    rows = [
        _row("bernoulli", 1, [[5, 5], [6, 6]], [[], []]),
        _row("gaussian", 0, [[1, 2, 3], [4, 5, 9]], [[], [2]]),
        _row("gaussian", 0, [[30, 30], [40, 40]], [[], []], n_spins=64, config_digest="d64"),
        _row("gaussian", 0, [[7], [8]], [[0], [0]], seed=1),
        _row("bernoulli", 1, [[9], [9]], [[], []], seed=1, status="failed"),
        _row("bernoulli", 1, [[5, 6], [7, 8]], [[], [1]]),  # the rerun of the first row
    ]
    small, large = experiments(rows)
    assert (small["params"], large["params"]) == ({"system": "SpinGlassRuns", "n_spins": 32},
                                                  {"system": "SpinGlassRuns", "n_spins": 64})  # fmt: skip
    assert list(small["times"]) == ["gaussian", "bernoulli"] and small["seed"] == 0
    assert small["times"]["gaussian"].tolist() == [[1, 4], [2, 5], [3, 9], [7, 8]]
    assert small["censored"]["gaussian"].tolist() == [[False, False], [False, False], [False, True], [True, True]]
    assert small["times"]["bernoulli"].tolist() == [[5, 7], [6, 8]]
    assert small["censored"]["bernoulli"].tolist() == [[False, False], [False, True]]


def test_p_values_and_ranges_read_as_the_tables_write_them():
    assert [p_text(p) for p in (0.001, 0.3, 0.018, 0.0123)] == ["<= 0.001", "0.3", "0.018", "0.0123"]
    assert span([0.007, 0.001], p_text) == "<= 0.001-0.007" and span([0.001, 0.001], p_text) == "<= 0.001"
    assert span([8.31, 8.49, 8.4]) == "8.3-8.5" and span([2.74, 2.71]) == "2.7"


def test_spin_glass_table_takes_ranges_over_ensembles_from_hand_written_rows():
    rng = np.random.default_rng(0)
    raw = {e: rng.gumbel(20, 4, size=(50, 2)).round().astype(int) + [0, 10] for e in ("gaussian", "bernoulli")}
    rows = [
        _row(e, i, raw[e].T.tolist(), [[], [3, 7] if e == "bernoulli" else []]) for i, e in enumerate(raw)
    ]  # fmt: skip
    lines = spin_glass_table(rows, n_resamples=200).splitlines()
    assert lines[0].startswith("| N | eps | mean T (std), 2 ensembles |") and "(1 pairs)" in lines[0]
    assert len(lines) == 4 and lines[2].startswith("| 32 | 1 | ") and lines[3].startswith("| 32 | 0.5 | ")
    means = [raw["gaussian"][:, 0].mean(), raw["bernoulli"][:, 0].mean()]  # numpy, independent of the report
    stds = [raw["gaussian"][:, 0].std(ddof=1), raw["bernoulli"][:, 0].std(ddof=1)]
    cells = lines[2].split(" | ")
    assert cells[2] == f"{span(means)} ({span(stds)})" and cells[-1] == "0 |"
    assert lines[3].split(" | ")[-1] == "2 |"  # the two censored runs
    report, _ = ensemble_report({e: raw[e][:, 0] for e in raw}, {}, n_resamples=200, seed=0)
    low, high = report["pooled"]["skewness_ci95"]
    assert cells[3] == f"{report['pooled']['skewness']:.2f} [{low:.2f}, {high:.2f}]"
    assert cells[6] == p_text(report["universality"]["gaussian vs bernoulli"]["ks_pvalue"])


def test_the_ensembles_summary_restates_the_reports_in_one_line():
    rng = np.random.default_rng(1)
    raw = {e: rng.gumbel(20, 4, size=(60, 2)).round().astype(int) + [0, 10] for e in ("gaussian", "bernoulli")}
    accuracy = {e: rng.uniform(0.9, 1.0, size=(60, 2)) for e in raw}
    censored = {"gaussian": [[], []], "bernoulli": [[], [3, 7]]}
    rows = [_row(e, i, raw[e].T.tolist(), censored[e]) for i, e in enumerate(raw)]
    rows += [_row("gaussian", 0, [[40] * 5, [50] * 5], [[], []], n_spins=64, config_digest="d64")]  # another size
    for row in rows[:2]:
        row["metrics"]["test_accuracy"] = accuracy[row["params"]["ensemble"]].T.tolist()
    reports = [ensemble_report({e: raw[e][:, k] for e in raw}, {"bernoulli": np.isin(np.arange(60), censored[
        "bernoulli"][k])}, n_resamples=200, seed=0)[0] for k in (0, 1)]  # fmt: skip
    skewness = sorted(f"{r['pooled']['skewness']:.2f}" for r in reports)
    normal = {e: span([r["ensembles"][e]["tests"]["normal"]["ks_pvalue"] for r in reports], p_text) for e in raw}
    pairs = span([r["universality"]["gaussian vs bernoulli"]["ks_pvalue"] for r in reports], p_text)
    halted = [np.ones(60, bool), ~np.isin(np.arange(60), [3, 7])]
    means = {e: span([100 * accuracy[e][halted[k] if e == "bernoulli" else slice(None), k].mean() for k in (0, 1)])
             for e in raw}  # fmt: skip
    summary = ensembles_summary(rows, size="32", n_resamples=200)
    assert summary == (
        f"n_spins 32, 2 ensembles x 60 runs, eps 1, 0.5: pooled tau skewness "
        f"{skewness[0] if skewness[0] == skewness[1] else f'{min(skewness, key=float)} to {max(skewness, key=float)}'}"
        f", KS p vs N(0,1) Gaussian {normal['gaussian']}, Bernoulli {normal['bernoulli']}, smallest two-sample KS p "
        f"{pairs}, test accuracy % at halting Gaussian {means['gaussian']}, Bernoulli {means['bernoulli']}"
    )
    low, high = reports[1]["pooled"]["skewness_ci95"]
    one = ensembles_summary(rows, size="32", thresholds=(0.5,), n_resamples=200)
    assert one.startswith(f"n_spins 32, 2 ensembles x 60 runs, eps 0.5: pooled tau skewness "
                          f"{reports[1]['pooled']['skewness']:.2f} [{low:.2f}, {high:.2f}], ")  # fmt: skip
    assert ensembles_summary(rows, size="32", thresholds=(0.5, 1.0), n_resamples=200) == summary
    assert ensembles_summary(rows, size="32", thresholds=(0.25,)) == "(no finished runs)"
    assert ensembles_summary(rows, n_resamples=200).count("; n_spins 64, 1 ensemble x 5 runs, eps 1, 0.5") == 1
    assert ensembles_summary(rows, size="128") == "(no finished runs)"


def test_the_pairs_summary_lists_every_pair_of_one_size_and_threshold_from_the_smallest_ad_p():
    rng = np.random.default_rng(2)
    raw = {e: rng.gumbel(20, 4, size=(80, 2)) for e in ("gaussian", "bernoulli")}
    raw["exponential"] = 20 + rng.exponential(4, size=(80, 2))  # another law: its pairs come first
    raw = {e: t.round().astype(int) + [0, 10] for e, t in raw.items()}
    rows = [_row(e, i, raw[e].T.tolist(), [[], []]) for i, e in enumerate(raw)]
    rows += [_row("gaussian", 0, [[40] * 5, [50] * 5], [[], []], n_spins=64, config_digest="d64")]  # one ensemble
    report, _ = ensemble_report({e: raw[e][:, 1] for e in raw}, {}, n_resamples=200, seed=0)
    tests = report["universality"]
    assert sorted(tests) == ["bernoulli vs exponential", "gaussian vs bernoulli", "gaussian vs exponential"]
    order = sorted(tests, key=lambda k: (tests[k]["ad_pvalue"], tests[k]["ks_pvalue"]))
    shown = {"gaussian vs bernoulli": "Gaussian vs Bernoulli", "gaussian vs exponential": "Gaussian vs exponential",
             "bernoulli vs exponential": "Bernoulli vs exponential"}  # fmt: skip
    cells = [f"{shown[k]} {p_text(tests[k]['ks_pvalue'])} ({p_text(tests[k]['ad_pvalue'])})" for k in order]
    summary = pairs_summary(rows, size="32", threshold=0.5, n_resamples=200)
    assert summary == "n_spins 32, eps 0.5, two-sample KS p (AD p): " + ", ".join(cells)
    assert summary.index("exponential") < summary.index("Gaussian vs Bernoulli")
    assert pairs_summary(rows, size="32", threshold=1.0, n_resamples=200) != summary  # the other threshold's times
    with pytest.raises(ValueError, match=r"eps 0.25 is not one of the thresholds \[1.0, 0.5\] of size 32"):
        pairs_summary(rows, size="32", threshold=0.25)
    one = pairs_summary(rows, size="64", threshold=1.0)
    assert one == "n_spins 64, eps 1, two-sample KS p (AD p): n/a (one ensemble)"
    assert pairs_summary(rows, size="128", threshold=1.0) == "(no finished runs)"
    rows += [_row(e, i, raw[e].T.tolist(), [[], []], config_digest="other") for i, e in enumerate(raw)]  # same size
    assert pairs_summary(rows, size="32", threshold=0.5, n_resamples=200) == f"{summary}; {summary}"


def _ledger(stem):
    return read(REPO_ROOT / "results" / "ledgers" / f"{stem}.jsonl")


def test_committed_ledgers_hold_the_raw_times_of_978148c():
    # literals: results/halting_time/<name>.json at 978148c (the RESULTS.md tables' source)
    n32, n64 = experiments(_ledger("halting_spin_glass"))
    assert n32["params"]["n_spins"] == 32 and n64["params"]["n_spins"] == 64 and (n32["seed"], n64["seed"]) == (0, 1)
    assert [len(t) for t in n32["times"].values()] == [2000] * 4 and [len(t) for t in n64["times"].values()] == [
        1000
    ] * 4
    assert [int(sum(c[:, e].sum() for c in n32["censored"].values())) for e in range(5)] == [0, 0, 0, 2, 15]
    (cg,) = experiments(_ledger("halting_cg"))
    gaussian = cg["times"]["gaussian"][:, 2]  # eps 1e-8
    assert gaussian.mean() == pytest.approx(104.913) and gaussian.std(ddof=1) == pytest.approx(4.263510262668537)
    # a whole table line, statistics recomputed (the MLP table, theta 0.2, alone: its permutation tests take 2 s)
    rows = _ledger("halting_mlp")
    for row in rows:
        metrics = row["metrics"]
        row["metrics"] = metrics | {k: metrics[k][1:2] for k in ("thresholds", "times", "censored_runs")}
    assert mlp_table(rows).splitlines()[2] == (
        "| 0.2 | 76.3 (2.6) / 183.6 (4.0) | -0.15 / 0.14 | 0.00 [-0.09, 0.10] | 0.166 / <= 0.001 | <= 0.001 | "
        "<= 0.001 (<= 0.001) |"
    )


@pytest.mark.slow
def test_spin_glass_and_cg_reproduce_the_papers_universality_findings(tmp_path):
    """arXiv:1511.06444 (``docs/papers/halting_time.md``): spin glass, Gaussian vs Bernoulli couplings, ~2,000 runs
    each: two-sample KS does not reject at 5%, skewness positive and closer to the Gumbel's 1.14 than to 0; CG at
    critical scaling: skewness near 0 (15-60 s)."""

    def study_reports(system, ensembles=None):
        study = HaltingStudy(system, ensembles=ensembles, ledger_dir=str(tmp_path), runs_dir=str(tmp_path),
                             name=type(system).__name__)  # fmt: skip
        for run in study.planned():
            record_run(study, run, threads=1, machine="test")
        (experiment,) = experiments(read(study.ledger))
        return [report for _, report, _ in threshold_reports(experiment)]

    (sg,) = study_reports(SpinGlassRuns(n_spins=32, eps=[1.0], max_steps=5000), ["gaussian", "bernoulli"])
    assert sg["universality"]["gaussian vs bernoulli"]["ks_pvalue"] > 0.05
    assert abs(sg["pooled"]["skewness"] - 1.14) < sg["pooled"]["skewness"]
    (cg,) = study_reports(ConjugateGradientRuns(n=100, eps=[1.0e-8]))
    assert abs(cg["pooled"]["skewness"]) < 0.2 and cg["universality"]["gaussian vs bernoulli"]["ks_pvalue"] > 0.05
