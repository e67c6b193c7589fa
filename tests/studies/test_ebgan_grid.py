"""EBGAN's Table 1 grid study (arXiv:1609.03126 section 4.1): grid sizes and seeds, the tables and Fig. 2 counts
on hand-written rows, a two-run grid end to end into a ledger on the fixture MNIST, and the committed ledger."""

import itertools
import math
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from jsonargparse import CLI
from pytorch_lightning import Callback

import iclr17.studies.ebgan_grid as ebgan_grid_module
from iclr17.studies.ebgan_grid import (
    CONFIG,
    EbganGridStudy,
    GridPoint,
    budget_digest,
    budget_table,
    build_module,
    fig2_table,
    histogram_counts,
    one_sided_p,
    score_bins,
    score_generator,
    settings_table,
    subset_runs_table,
    subset_summary,
    summary_table,
    table1_grid,
)
from iclr17.studies.ledger import done_keys, read
from iclr17.studies.runner import record_run
from tests.studies.study_configs import shipped_study

ROOT = Path(__file__).resolve().parents[2]
B200 = {"epochs": 1, "limit_batches": 200, "score_samples": 2000, "val_size": 10_000}
EPOCH = {"epochs": 1, "limit_batches": None, "score_samples": 10_000, "val_size": 10_000}


def row(model, score, n_g=2, n_d=2, pt=0.0, budget=B200, seed=0, status="finished", lr=1e-3, size_d=128):
    """A hand-written ledger row of one grid run."""
    point = GridPoint(model, n_g, n_d, 400, size_d, False, "adam", "adam", lr, pt)
    return {
        "study": "ebgan_grid", "config": CONFIG, "config_digest": budget_digest(budget),
        "params": point.__dict__ | budget, "overrides": list(point.overrides), "seed": seed, "commit": "x",
        "dirty": False, "machine": "m", "command": "c", "status": status, "steps": None, "fit_seconds": 1.0,
        "metrics": {"score": score},
    }  # fmt: skip


def test_full_grids_have_the_papers_sizes_and_seeds_are_grid_indices():
    assert len(table1_grid("ebgan")) == 512 and len(table1_grid("gan")) == 6144
    assert {p.lr for p in table1_grid("ebgan")} == {1e-3}
    runs = EbganGridStudy().planned()
    assert len(runs) == 512 + 6144 and len({r.key for r in runs}) == len(runs)
    ebgan, gan = runs[0:1024:2], [*runs[1:1024:2], *runs[1024:]]  # the models in turn while both have runs
    assert [r.params["model"] for r in ebgan] == ["ebgan"] * 512 and [r.params["model"] for r in gan] == ["gan"] * 6144
    assert [r.seed for r in ebgan] == list(range(512)) and [r.seed for r in gan] == list(range(6144))
    sampled = EbganGridStudy(subset=5).planned()
    assert [r.params["model"] for r in sampled] == ["ebgan", "gan"] * 5
    drawn = random.Random(0).sample(range(512), 5)  # the order drawn, not sorted: each prefix is a uniform sample
    assert [r.seed for r in sampled[::2]] == drawn and drawn != sorted(drawn)
    full = {(r.params["model"], r.seed): r.overrides for r in runs}
    assert all(full[(r.params["model"], r.seed)] == r.overrides for r in sampled)  # a sample keeps its seeds
    assert EbganGridStudy(limit_batches=200).planned()[0].key != runs[0].key  # the budget is part of the key


def test_budget_table_medians_and_counts_by_hand():
    rows = [
        row("ebgan", 0.5, seed=0), row("ebgan", 2.0, seed=1), row("ebgan", 3.0, seed=2),  # median 2.0, 2 > 1
        row("ebgan", 1.0, pt=0.1, seed=3), row("ebgan", 4.0, pt=0.1, seed=4),  # median 2.5; 1.0 is not > 1
        row("gan", 0.1, seed=0), row("gan", 0.3, seed=1), row("gan", 1.5, seed=2), row("gan", 0.2, seed=3),
        row("gan", 9.0, seed=4, status="failed"),  # never in a table
        row("gan", 0.0, seed=0, budget=EPOCH), row("gan", 0.5, seed=1, budget=EPOCH),  # median 0.25
        row("gan", 0.3, seed=1, budget=EPOCH),  # a rerun of seed 1 replaces its row: median 0.15
    ]  # fmt: skip
    assert budget_table(rows) == "\n".join([
        "| budget | EBGAN | EBGAN-PT | GAN |",
        "|---|---|---|---|",
        "| 200 batches (2,000 scored samples) | 2.00 / 2 of 3 | 2.50 / 1 of 2 | 0.25 / 1 of 4 |",
        "| 1 epoch (10,000 scored samples) |  |  | 0.15 / 0 of 2 |",
    ])  # fmt: skip
    assert budget_table(rows[:-1]).splitlines()[-1].endswith("| 0.25 / 0 of 2 |")


def test_the_reduced_summary_is_the_longest_budgets_finished_runs_in_one_line():
    ebgan, pt, gan = [0.5, 2.0, 3.5], [1.0, 4.0], [0.1, 0.7, 1.5, 0.2]
    rows = [row("ebgan", v, seed=i, budget=EPOCH) for i, v in enumerate(ebgan)]
    rows += [row("ebgan", v, pt=0.1, seed=10 + i, budget=EPOCH) for i, v in enumerate(pt)]
    rows += [row("gan", v, seed=i, budget=EPOCH) for i, v in enumerate(gan)]
    rows += [row("gan", 9.0, seed=7, budget=EPOCH, status="capped"), row("ebgan", 0.1, seed=9)]  # not in the medians
    expected = [f"{name} {np.median(v):.2f} ({sum(x > 1 for x in v)} of {len(v)})"
                for name, v in (("EBGAN", ebgan), ("EBGAN-PT", pt), ("GAN", gan))]  # fmt: skip
    summary = ebgan_grid_module.reduced_summary(rows)
    assert summary == "1 epoch (10,000 scored samples), median I' (runs with I' > 1): " + ", ".join(expected) + (
        "; 1 capped run not shown"
    )
    assert "\n" not in summary and ebgan_grid_module.reduced_summary(rows[-2:-1]) == "(no finished runs)"
    capped = [row("gan", 2.0, seed=8, budget=EPOCH, status="capped"), row("ebgan", 1.5, pt=0.5, seed=9, budget=B200)]
    assert ebgan_grid_module.reduced_summary(rows + capped).endswith(  # PT weights named as the table names them
        f"EBGAN-PT 0.1 {np.median(pt):.2f} (1 of 2), GAN {np.median(gan):.2f} (1 of 4); 2 capped runs not shown"
    )


def test_capped_runs_are_labelled_and_pt_weights_named_when_several():
    rows = [row("ebgan", 2.0, pt=0.1), row("ebgan", 3.0, pt=0.5, seed=1), row("gan", 0.5, status="capped")]
    assert budget_table(rows).splitlines() == [
        "| budget | EBGAN-PT 0.1 | EBGAN-PT 0.5 | GAN |",
        "|---|---|---|---|",
        "| 200 batches (2,000 scored samples) | 2.00 / 1 of 1 | 3.00 / 1 of 1 |  |",
        "| 200 batches (2,000 scored samples), capped |  |  | 0.50 / 0 of 1 |",
    ]


def test_summary_table_names_the_best_run():
    rows = [row("gan", 0.2, n_g=3, lr=0.01), row("gan", 0.7, n_g=3, n_d=2, size_d=256, lr=0.01, seed=1)]
    rows += [row("ebgan", 1.5, n_d=3), row("ebgan", 0.25, seed=1)]
    assert summary_table(rows).splitlines()[2:] == [
        "| 200 batches (2,000 scored samples) | EBGAN (lambda_PT 0) | 2 | 0.875 | 1/2 | 1.500 (2_3_400_128) |",
        "| 200 batches (2,000 scored samples) | GAN | 2 | 0.450 | 0/2 | 0.700 (3_2_400_256, adam/adam lr 0.01) |",
    ]


def test_histogram_counts_by_hand_and_against_numpy():
    bins = [0.0, 1.0, 2.0, 3.0]
    rows = [row("ebgan", 0.0, n_g=5), row("ebgan", 1.0, n_d=4, seed=1), row("ebgan", 3.0, seed=2)]
    rows += [row("gan", 3.5, seed=0), row("gan", 2.5, n_g=3, n_d=3, seed=1), row("gan", -0.1, seed=2)]
    counts = histogram_counts(rows, bins)
    assert counts["(a) all"] == {"ebgan": [1, 1, 1], "gan": [0, 0, 1]}  # 3.0 in the closed last bin; 3.5 out
    assert counts["(b) nLayer <= 4"] == {"ebgan": [0, 1, 1], "gan": [0, 0, 1]}
    assert counts["(c) nLayer <= 3"] == {"ebgan": [0, 0, 1], "gan": [0, 0, 1]}
    scores = np.random.default_rng(0).uniform(-1, 6, 200)
    bins = [0.0, 0.5, 2.0, 2.5, 5.0]
    counts = histogram_counts([row("gan", float(s), seed=i) for i, s in enumerate(scores)], bins)
    assert counts["(a) all"]["gan"] == np.histogram(scores, bins)[0].tolist()


def exact_mann_whitney_greater(x, y):
    """P(U >= U_observed) under H0 by enumerating every split of the pooled values (no ties): the reference."""

    def u(xs, ys):
        return sum(a > b for a in xs for b in ys)

    pooled, observed = [*x, *y], u(x, y)
    splits = list(itertools.combinations(range(len(pooled)), len(x)))
    hits = 0
    for chosen in splits:
        xs = [pooled[i] for i in chosen]
        hits += u(xs, [pooled[i] for i in range(len(pooled)) if i not in chosen]) >= observed
    return hits / len(splits)


def test_fig2_table_counts_quartiles_and_the_one_sided_test_by_hand():
    rows = [row("ebgan", 1.0, seed=0), row("ebgan", 2.0, n_d=3, seed=1), row("ebgan", 3.0, n_g=4, n_d=4, seed=2),
            row("ebgan", 4.0, n_g=5, seed=3), row("gan", 0.5, seed=0), row("gan", 1.5, n_g=3, n_d=3, seed=1),
            row("gan", 2.5, n_g=5, n_d=5, seed=2), row("gan", 9.0, seed=3, status="failed"),
            row("ebgan", 7.0, budget=EPOCH), row("gan", 6.0, budget=EPOCH)]  # fmt: skip
    p_all = exact_mann_whitney_greater([1, 2, 3, 4], [0.5, 1.5, 2.5])
    p_four = exact_mann_whitney_greater([1, 2, 3], [0.5, 1.5])
    p_three = exact_mann_whitney_greater([1, 2], [0.5, 1.5])
    # U = 9 of 12 (U >= 9: 1 + 1 + 2 + 3 splits), 5 of 6, 3 of 4
    assert (p_all, p_four, p_three) == (7 / 35, 2 / 10, 2 / 6)
    assert fig2_table(rows).splitlines()[2:] == [
        f"| 200 batches | (a) all | 4 | 3 | 2.50 (1.75-3.25) | 1.50 (1.00-2.00) | {p_all:.3g} |",
        f"| 200 batches | (b) nLayer <= 4 | 3 | 2 | 2.00 (1.50-2.50) | 1.00 (0.75-1.25) | {p_four:.3g} |",
        f"| 200 batches | (c) nLayer <= 3 | 2 | 2 | 1.50 (1.25-1.75) | 1.00 (0.75-1.25) | {p_three:.3g} |",
        "| 1 epoch | (a) all | 1 | 1 | 7.00 (7.00-7.00) | 6.00 (6.00-6.00) | - |",
        "| 1 epoch | (b) nLayer <= 4 | 1 | 1 | 7.00 (7.00-7.00) | 6.00 (6.00-6.00) | - |",
        "| 1 epoch | (c) nLayer <= 3 | 1 | 1 | 7.00 (7.00-7.00) | 6.00 (6.00-6.00) | - |",
    ]  # the failed run counts nowhere; one run a side gives no test
    assert fig2_table([row("gan", 1.0, status="failed")]) == "(no finished runs)"
    diverged = [*rows, row("gan", float("nan"), seed=5)]  # a finished run whose generator gave NaN images
    assert fig2_table(diverged).splitlines()[2] == (
        "| 200 batches | (a) all | 4 | 4 (1 non-finite I', left out) | 2.50 (1.75-3.25) | 1.50 (1.00-2.00) | "
        f"{p_all:.3g} |"
    )
    assert score_bins(diverged, n=2) == [0.5, 3.75, 7.0]
    assert (
        fig2_table([row("gan", 1.0)]).splitlines()[2] == "| 200 batches | (a) all | 0 | 1 | - | 1.00 (1.00-1.00) | - |"
    )


def test_subset_runs_table_counts_scores_times_and_lists_the_competing_gan_runs_by_hand():
    def timed(r, seconds):
        return r | {"fit_seconds": seconds}

    rows = [
        timed(row("ebgan", 3.0, seed=1), 100.0), timed(row("ebgan", 7.5, seed=2), 3500.0),
        timed(row("ebgan", 5.0, seed=3), 1000.0), timed(row("ebgan", 99.0, seed=4, status="failed"), 5.0),
        timed(row("gan", 0.001, seed=5), 60.0), timed(row("gan", 0.004, seed=6, lr=0.01), 70.0),
        timed(row("gan", 3.0, seed=7, size_d=256), 80.0), timed(row("gan", 4.25, seed=8, n_g=3), 90.0),
        timed(row("gan", float("nan"), seed=9), 40.0), timed(row("gan", 1.5, seed=10), 50.0),
    ]  # fmt: skip
    lines = subset_runs_table(rows).splitlines()
    assert lines[2:4] == [
        "| 200 batches | EBGAN | 3 | 3.00 / 5.00 / 7.50 | 3 | 0 | 100-3,500 | 1.3 |",
        "| 200 batches | GAN | 6 (1 non-finite I', left out) | 0.00 / 1.50 / 4.25 | 3 | 2 | 40-90 | 0.1 |",
    ]
    assert lines[4] == ""
    assert lines[7:] == [  # the GAN runs at or above 3.0, the lowest EBGAN I'; the failed EBGAN run does not count
        "| 200 batches | 3_2_400_128, adam/adam lr 0.001 | 4.25 |",
        "| 200 batches | 2_2_400_256, adam/adam lr 0.001 | 3.00 |",
    ]
    assert subset_runs_table(rows[:3]).splitlines()[-1] == "| - | none | - |"
    assert subset_runs_table([row("gan", 1.0, status="failed")]) == "(no finished runs)"


def test_settings_table_splits_the_gan_runs_by_optimiser_setting_by_hand():
    def gan(score, optim_d, optim_g, lr, seed):
        r = row("gan", score, lr=lr, seed=seed)
        r["params"] |= {"optim_d": optim_d, "optim_g": optim_g}
        return r

    rows = [row("ebgan", v, seed=i) for i, v in enumerate([3.0, 5.0, 7.0, 9.0])] + [
        gan(0.5, "sgd", "sgd", 0.01, 0), gan(4.0, "sgd", "sgd", 0.01, 1), gan(8.0, "sgd", "sgd", 0.01, 2),
        gan(1.5, "adam", "adam", 1e-3, 3), gan(0.2, "adam", "adam", 1e-3, 4),
        gan(float("nan"), "adam", "adam", 1e-4, 5), gan(2.0, "adam", "adam", 1e-4, 6),
        gan(6.0, "sgd", "sgd", 0.001, 7, ), gan(9.5, "sgd", "sgd", 0.001, 8, ),
        gan(5.5, "sgd", "sgd", 0.001, 9),  # its failed rerun below does not replace it
        {**gan(1.0, "sgd", "sgd", 0.001, 9), "status": "failed"},
        gan(1.0, "adam", "sgd", 0.01, 10), gan(2.5, "adam", "sgd", 0.01, 11),  # D adam, G sgd; I' 1 is not above 1
    ]  # fmt: skip
    lines = settings_table(rows).splitlines()
    sgd = exact_mann_whitney_greater([3, 5, 7, 9], [0.5, 4.0, 8.0])  # 0.314: U = 8 of 12
    adam = exact_mann_whitney_greater([3, 5, 7, 9], [0.2, 1.5])  # 1 / C(6, 2): complete separation
    sgd_low = exact_mann_whitney_greater([3, 5, 7, 9], [5.5, 6.0, 9.5])
    assert lines[2:] == [  # EBGAN first, then each setting by optimisers and falling learning rate
        "| 200 batches | EBGAN | adam/adam, 0.001 | 4 | 6.00 (3.00-9.00) | 4 | - |",
        f"| 200 batches | GAN | adam/adam, 0.001 | 2 | 0.85 (0.20-1.50) | 1 | {adam:.3g} |",
        "| 200 batches | GAN | adam/adam, 0.0001 | 2 (1 non-finite I', left out) | 2.00 (2.00-2.00) | 1 | - |",
        f"| 200 batches | GAN | adam/sgd, 0.01 | 2 | 1.75 (1.00-2.50) | 1 | {adam:.3g} |",
        f"| 200 batches | GAN | sgd/sgd, 0.01 | 3 | 4.00 (0.50-8.00) | 2 | {sgd:.3g} |",
        f"| 200 batches | GAN | sgd/sgd, 0.001 | 3 | 6.00 (5.50-9.50) | 3 | {sgd_low:.3g} |",
    ]
    assert f"{adam:.3g}" == "0.0667" and settings_table([row("gan", 1.0, status="failed")]) == "(no finished runs)"
    # each budget tests its own EBGAN runs: one EBGAN run at the epoch budget gives no test there
    two = settings_table([*rows, row("ebgan", 0.1, budget=EPOCH), row("gan", 0.3, budget=EPOCH, seed=1),
                          row("gan", 0.2, budget=EPOCH, seed=2)]).splitlines()  # fmt: skip
    assert two[:-2] == lines and two[-2:] == [
        "| 1 epoch | EBGAN | adam/adam, 0.001 | 1 | 0.10 (0.10-0.10) | 0 | - |",
        "| 1 epoch | GAN | adam/adam, 0.001 | 2 | 0.25 (0.20-0.30) | 0 | - |",
    ]


def test_one_sided_p_is_exact_in_the_far_tail_and_with_ties():
    ebgan, gan = [1.0, 2.0, 3.0, 9.0], [0.5, 1.5, 4.0]
    assert one_sided_p(ebgan, gan) == f"{exact_mann_whitney_greater(ebgan, gan):.3g}" == "0.314"  # U = 8: 11 of 35
    assert one_sided_p([1.0], [0.0, 0.5]) == "-"
    # complete separation of 20 against 20, the GAN runs tied at 0: the exact p is 1 / C(40, 20), 7.25e-12
    # (scipy's normal approximation, which it uses for ties, gives 4.0e-09)
    assert one_sided_p([float(v) for v in range(20, 40)], [0.0] * 20) == f"{1 / math.comb(40, 20):.3g}" == "7.25e-12"


def test_one_sided_p_says_when_it_falls_back_to_the_normal_approximation(monkeypatch):
    monkeypatch.setattr(ebgan_grid_module, "MANN_WHITNEY_MAX_WORK", 10)  # as for the full grid's 512 against 6,144
    # U = 8 of 12 pairs, mean 6, variance 4 * 3 * 8 / 12 = 8, continuity correction 0.5 (scipy's default)
    p = 0.5 * math.erfc((8 - 6 - 0.5) / math.sqrt(8) / math.sqrt(2))
    assert (
        one_sided_p([1.0, 2.0, 3.0, 9.0], [0.5, 1.5, 4.0])
        == f"{p:.3g} (normal approximation)"
        == "0.298 (normal approximation)"
    )
    assert one_sided_p([float(v) for v in range(20, 40)], [0.0] * 20) == "< 1e-6 (normal approximation)"


def test_subset_summary_is_fig2a_in_one_line_by_hand():
    rows = [row("ebgan", 9.0, seed=3), row("ebgan", 1.0, seed=0), row("ebgan", 3.0, n_g=4, seed=2),
            row("ebgan", 2.0, n_d=3, seed=1), row("gan", 4.0, n_g=5, seed=2), row("gan", 0.5, seed=0),
            row("gan", 1.5, n_g=3, seed=1), row("gan", 9.0, seed=3, status="failed"),
            row("gan", float("nan"), seed=4)]  # fmt: skip
    p = exact_mann_whitney_greater([1, 2, 3, 9], [0.5, 1.5, 4.0])  # the NaN run is counted, not tested
    line = (
        "8 runs (4 EBGAN, 4 GAN (1 with non-finite I', left out)), I' median (range) EBGAN 2.50 (1.00-9.00), "
        f"GAN 1.50 (0.50-4.00), one-sided Mann-Whitney p {p:.3g}"
    )
    assert subset_summary(rows) == line and f"{p:.3g}" == "0.314"
    two = subset_summary([*rows, row("ebgan", 7.0, budget=EPOCH)])  # in budget order, as fig2_table
    epoch = "1 run (1 EBGAN, 0 GAN), I' median (range) EBGAN 7.00 (7.00-7.00), GAN -, one-sided Mann-Whitney p -"
    assert two == f"200 batches: {line}; 1 epoch: {epoch}"
    assert "\n" not in two and subset_summary([row("gan", 1.0, status="failed")]) == "(no finished runs)"
    # with the study's size per model, the counts say how much of it has run (a failed run is not counted)
    partial_line = line.replace("8 runs (4 EBGAN, 4 GAN", "8 of 10 runs (4 of 5 EBGAN, 4 of 5 GAN")
    assert subset_summary(rows, planned=5) == partial_line
    assert subset_summary([row("ebgan", 2.0)], planned=1).startswith("1 of 2 runs (1 of 1 EBGAN, 0 of 1 GAN), ")


def test_a_tiny_grid_runs_into_a_ledger_and_draws_its_table_and_figure(fixture_data_root, tmp_path):
    study = EbganGridStudy(
        n_layer_g=(2,), n_layer_d=(2,), size_g=(16,), size_d=(8,), dropout_d=(False,), gan_optim=("adam",),
        gan_lr=(0.001,), limit_batches=2, score_samples=50, val_size=100, data_dir=str(fixture_data_root),
        ledger_dir=str(tmp_path / "ledgers"), runs_dir=str(tmp_path / "runs"),
    )  # fmt: skip
    for run in study.planned():
        record_run(study, run, threads=1, machine="test")
    rows = read(study.ledger)
    assert [(r["params"]["model"], r["status"], r["steps"]) for r in rows] == [("ebgan", "finished", 4)] + [
        ("gan", "finished", 4)
    ]  # two optimizer steps per batch
    assert all(r["metrics"]["score"] >= 0 for r in rows) and "--name=ebgan_grid" in rows[0]["command"]
    assert len(list((tmp_path / "runs").glob("ebgan_grid/*/samples.png"))) == 2
    assert study.run() == []  # every planned run is done: nothing to do
    assert study.markdown(rows).count("| 2 batches (50 scored samples) |") == 2
    assert study.figure(rows, tmp_path / "fig2.png") and (tmp_path / "fig2.png").is_file()


@pytest.mark.parametrize(("n_layer_g", "size_g", "seed"), [(2, 400, 0), (5, 1600, 7)])
def test_an_untrained_generator_scores_i_prime_zero_the_floor_of_the_grid(n_layer_g, size_g, seed):
    # G at its shipped init (weights ~ N(0, 2e-4), third-party: docs/papers/ebgan.md) draws near-constant grey
    # digits, every one given the same class probabilities by the score net: I' = E KL(p(y) || p(y|x)) is 0, so a
    # trained run at I' 0.00 is no better
    torch.manual_seed(seed)
    module = build_module(GridPoint("gan", n_layer_g, 2, size_g, 128, False, "adam", "adam", 1e-3))
    score, samples = score_generator(module, 500, seed)
    assert samples.shape == (100, 1, 28, 28) and float(samples.max() - samples.min()) < 0.01
    assert 0.0 <= score < 1e-4


# The committed ledger, migrated by results/migrations/ebgan.py from results/ebgan/grid*/runs.csv at 978148c.
REDUCED = ["ebgan_grid_reduced.yaml", "ebgan_grid_reduced_1epoch.yaml"]


def test_the_committed_ledger_is_the_reduced_configs_runs_and_gives_results_md_table():
    rows = read(ROOT / "results/ledgers/ebgan_grid_reduced.jsonl")[:64]  # the migrated rows; the ledger may grow
    assert len(rows) == 64 and {r["status"] for r in rows} == {"finished"}
    assert {r["commit"] for r in rows} == {"606ebf7a67fdf9b47f4593a1553160221810ea56"}
    scores = {(r["params"]["model"], r["params"]["score_samples"], r["seed"]): r["metrics"]["score"] for r in rows}
    assert scores[("gan", 2000, 5)] == 2.4846869100430573  # grid/runs.csv, gan 2_3_400_128 lr 0.001
    assert scores[("ebgan", 10_000, 12)] == 5.6753118560195475  # grid_1epoch/runs.csv, ebgan 3_3_400_128 PT 0
    assert scores[("gan", 10_000, 12)] == 0.0  # grid_1epoch/runs.csv, gan 3_3_400_128 lr 0.01
    planned = set()
    for name in REDUCED:
        planned |= {r.key for r in EbganGridStudy(**yaml.safe_load((ROOT / "configs/studies" / name).open())).planned()}
    assert planned == done_keys(rows)
    assert budget_table(rows) == "\n".join([  # RESULTS.md, section EBGAN (medians of the CSVs' scores)
        "| budget | EBGAN | EBGAN-PT | GAN |",
        "|---|---|---|---|",
        "| 200 batches (2,000 scored samples) | 2.09 / 4 of 8 | 1.50 / 4 of 8 | 0.34 / 1 of 16 |",
        "| 1 epoch (10,000 scored samples) | 3.22 / 5 of 8 | 2.90 / 4 of 8 | 0.07 / 0 of 16 |",
    ])  # fmt: skip


@pytest.mark.parametrize(
    ("name", "done", "missing"), [(REDUCED[0], 32, 0), (REDUCED[1], 32, 0), ("ebgan_grid.yaml", 0, 6656)]
)
def test_study_configs_parse_and_find_the_committed_runs(name, done, missing, capsys):
    config = str(ROOT / "configs/studies" / name)
    report = CLI(EbganGridStudy, args=["--config", config, "--ledger_dir", str(ROOT / "results/ledgers"), "status"])
    assert (len(report["done"]), len(report["missing"])) == (done, missing)


def test_the_subset_config_draws_96_points_per_model_covering_every_axis_value():
    study = shipped_study(EbganGridStudy, "ebgan_grid_subset", arxiv="1609.03126")
    planned = study.planned()
    axes = {"n_layer_g": {2, 3, 4, 5}, "n_layer_d": {2, 3, 4, 5}, "size_g": {400, 800, 1600, 3200},
            "size_d": {128, 256, 512, 1024}, "dropout_d": {True, False}}  # fmt: skip
    for model, more in (("ebgan", {}), ("gan", {"optim_d": {"adam", "sgd"}, "optim_g": {"adam", "sgd"},
                                                "lr": {0.01, 0.001, 0.0001}})):  # fmt: skip
        runs = [r for r in planned if r.params["model"] == model]
        assert len(runs) == 96 and len({r.seed for r in runs}) == 96  # distinct points: seed = index in the grid
        for axis, values in (axes | more).items():
            assert {r.params[axis] for r in runs} == values, (model, axis)
        assert all(r.params["epochs"] == 10 and r.params["score_samples"] == 10_000 for r in runs)
    assert study.subset == ebgan_grid_module.SUBSET_PLANNED  # what RESULTS.md's summary counts against


def test_the_accelerator_is_not_part_of_a_runs_identity():
    small = dict(n_layer_g=[2], n_layer_d=[2], size_g=[400], size_d=[128], dropout_d=[False], gan_lr=[0.01])
    keys = [[r.key for r in EbganGridStudy(accelerator=a, **small).planned()] for a in ("cpu", "gpu")]
    assert keys[0] == keys[1] and len(keys[0]) == 1 + 4


class StopInSecondEpoch(Callback):
    """A crash in the middle of the second epoch (its second batch), after the first epoch's checkpoint."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1:
            raise RuntimeError("killed")


def test_a_killed_run_continues_from_its_last_epoch_to_the_unbroken_runs_weights(
    fixture_data_root, tmp_path, monkeypatch
):
    def study(folder):
        return EbganGridStudy(
            models=("ebgan",), n_layer_g=(2,), n_layer_d=(2,), size_g=(16,), size_d=(8,), dropout_d=(True,),
            epochs=3, limit_batches=3, score_samples=200, val_size=100, data_dir=str(fixture_data_root),
            ledger_dir=str(tmp_path / folder / "ledgers"), runs_dir=str(tmp_path / folder / "runs"),
        )  # fmt: skip

    unbroken_study, broken_study = study("unbroken"), study("broken")
    (run,) = unbroken_study.planned()
    unbroken = unbroken_study.execute(run, unbroken_study.run_dir(run))
    out_dir = broken_study.run_dir(run)
    quiet = ebgan_grid_module.quiet_trainer
    monkeypatch.setattr(ebgan_grid_module, "quiet_trainer",
                        lambda callbacks, **kw: quiet(callbacks=[*callbacks, StopInSecondEpoch()], **kw))  # fmt: skip
    with pytest.raises(RuntimeError, match="killed"):
        broken_study.execute(run, out_dir)
    assert (out_dir / "resume" / "last.ckpt").is_file()  # the first epoch's
    monkeypatch.undo()
    start = time.perf_counter()
    resumed = broken_study.execute(run, out_dir)
    second_call = time.perf_counter() - start
    assert resumed.steps == unbroken.steps == 2 * 3 * 3  # D and G steps, 3 batches, 3 epochs
    assert resumed.metrics["score"] == unbroken.metrics["score"]  # dropout in D: the random state is restored too
    assert (out_dir / "samples.png").read_bytes() == (unbroken_study.run_dir(run) / "samples.png").read_bytes()
    assert [s["first_epoch"] for s in resumed.metrics["segments"]] == [0, 1] and "segments" not in unbroken.metrics
    earlier = resumed.metrics["segments"][0]
    assert 0 < resumed.fit_seconds - earlier["seconds"] <= second_call  # the first epoch's seconds and this fit's
    assert not (out_dir / "resume").exists()  # nothing left to continue from once the run has its score

    def crash(*args, **kwargs):
        raise RuntimeError("killed while scoring")

    monkeypatch.setattr(ebgan_grid_module, "score_generator", crash)
    with pytest.raises(RuntimeError, match="while scoring"):
        broken_study.execute(run, out_dir)  # a rerun from epoch 0 (its checkpoint is gone), then a kill
    assert (out_dir / "resume" / "last.ckpt").is_file()  # the last epoch's: the fit is not lost
    monkeypatch.undo()
    rescored = broken_study.execute(run, out_dir)  # trains nothing, scores the same weights
    assert (rescored.steps, rescored.metrics["score"]) == (unbroken.steps, unbroken.metrics["score"])
    assert [s["first_epoch"] for s in rescored.metrics["segments"]] == [0, 3]  # the second segment had none left
    broken_study.start_over(run)  # nothing there: no error
