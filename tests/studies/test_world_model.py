"""The world-model study (arXiv:1612.03969 Table 1 layout): its plan, its tables on hand-written rows, the committed
ledgers and the study config."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from iclr17.studies.ledger import read
from iclr17.studies.world_model import (
    WorldModelStudy,
    errors_by_length,
    explore_markdown,
    selected_markdown,
    selected_summary,
    variant_overrides,
    world_model_markdown,
)
from tests.conftest import REPO_ROOT
from tests.studies.study_configs import shipped_study

LEDGERS = REPO_ROOT / "results" / "ledgers"
GEN_TEST = [20, 30, 40, 50, 60, 70, 80]


def _row(variant, lr, max_step, seed, val, metrics, status="finished", command="iclr17 fit ...", seconds=600.0):
    return {
        "study": "entnet_world_model", "config": "entnet/world_model.yaml", "config_digest": "ab" * 8,
        "params": {"variant": variant, "lr": lr, "max_step": max_step}, "overrides": [], "seed": seed,
        "commit": "0" * 40, "dirty": False, "machine": "test", "command": command, "status": status,
        "steps": 100_000, "fit_seconds": seconds, "metrics": {"val/error": val, **metrics},
    }  # fmt: skip


ROWS = [
    _row("t10", 0.001, 5, 1, 0.05, {"test/error": 0.06}, seconds=500.0),
    _row("t10", 0.001, 5, 2, 0.04, {"test/error": 0.03}, seconds=510.0),
    _row("t10", 0.001, 5, 3, 0.5, {"test/error": 0.5}, "capped", "x --trainer.max_time=00:00:14:00", 840.0),
    _row("t10", 0.001, 1, 1, 0.0, {"test/error": 0.9}, "failed"),
    _row("gen", 0.01, 5, 1, 0.3, {"test/error": 0.4} | {f"test/error_task{t}": t / 100 for t in GEN_TEST}),
]


def test_variant_overrides_write_the_lengths_without_spaces():
    assert variant_overrides("t20") == ["--data.init_args.train_lengths=[20]", "--data.init_args.test_lengths=[20]"]
    train, test = variant_overrides("gen")
    assert train == "--data.init_args.train_lengths=[" + ",".join(map(str, range(2, 21))) + "]"
    assert test == "--data.init_args.test_lengths=[20,30,40,50,60,70,80]"
    with pytest.raises(ValueError, match="t30"):
        variant_overrides("t30")


def test_planned_runs_carry_variant_lr_max_step_and_digest_the_config_text(tmp_path):
    config = tmp_path / "world.yaml"
    config.write_text("seed_everything: 1\n")
    study = WorldModelStudy(fit_config=str(config), variants=["t10", "gen"], lr=[0.1, 0.001], max_step=[1, 5],
                            seeds=[1, 2], ledger_dir=str(tmp_path))  # fmt: skip
    runs = study.planned()
    assert len(runs) == 2 * 2 * 2 * 2
    assert runs[0].params == {"variant": "t10", "max_step": 1, "lr": 0.1} and runs[0].seed == 1
    assert runs[0].overrides == (
        "--data.init_args.train_lengths=[10]", "--data.init_args.test_lengths=[10]", "--data.init_args.max_step=1",
        "--model.init_args.optimizer.init_args.lr=0.1", "--seed_everything=1",
    )  # fmt: skip
    assert runs[-1].params == {"variant": "gen", "max_step": 5, "lr": 0.001} and runs[-1].seed == 2
    assert {r.config_digest for r in runs} == {hashlib.sha256(b'{"seed_everything": 1}').hexdigest()[:16]}
    config.write_text("seed_everything: 3\n")
    assert study.planned()[0].key != runs[0].key
    assert WorldModelStudy.cli_name() == "entnet-world-model"


def test_errors_by_length_single_and_generalisation():
    assert errors_by_length(ROWS[0]) == {10: 0.06}
    assert errors_by_length(ROWS[4]) == {t: t / 100 for t in GEN_TEST}


def test_table_1_on_hand_written_rows():
    lines = world_model_markdown(ROWS).splitlines()
    assert lines[0].startswith(
        "| training lengths | story mask | max_step | Adam lr | status | runs (seeds) | test T = 10 | 20 |"
    )
    # t10, max_step 5, lr 0.001, finished: seed 2 has the lower val error (0.04): its test error 0.03, 510 s;
    # mean and sample std of 0.06 and 0.03
    spread = f"{np.mean([0.06, 0.03]):.3f} +- {np.std([0.06, 0.03], ddof=1):.3f}"
    assert lines[2] == (
        f"| T = 10 | N(0, 0.1) | 5 | 0.001 | finished | 2 (1, 2) | 0.030 |  |  |  |  |  |  |  | 510 s | {spread} |"
    )
    capped = (
        "| T = 10 | N(0, 0.1) | 5 | 0.001 | capped (14-min cap) | 1 (3) | 0.500 |  |  |  |  |  |  |  | 840 s | 0.500 |"
    )
    assert lines[3] == capped
    assert lines[4] == (
        "| T <= 20 (2..20) | N(0, 0.1) | 5 | 0.01 | finished | 1 (1) |  | 0.200 | 0.300 | 0.400 | 0.500 | 0.600 "
        "| 0.700 | 0.800 | 600 s | 0.400 |"
    )
    assert lines[5] == "| paper (EntNet) |  |  |  |  |  | 0 | 0 |  | 0 |  |  |  |  |  |  |"
    assert lines[6] == "| paper, trained on T <= 20 |  |  |  |  |  |  | 0 | 0 | 0 | 0.01 | 0.03 | 0.05 | 0.08 |  |  |"
    assert len(lines) == 7  # the failed run (max_step 1) has no row


def test_table_1_keeps_the_two_story_masks_apart():
    ones = [row | {"config_digest": "7714a51bdadcd60a"} for row in ROWS[:2]]  # a config of before issue 15
    lines = world_model_markdown([*ROWS[:2], *ones]).splitlines()
    assert [line.split(" | ")[1:6] for line in lines[2:4]] == [
        ["N(0, 0.1)", "5", "0.001", "finished", "2 (1, 2)"],
        ["ones", "5", "0.001", "finished", "2 (1, 2)"],
    ]
    assert explore_markdown([*ROWS[:2], *ones]).splitlines()[2:] == [
        f"| N(0, 0.1) | 0.001 | {0.045:.3f} +- {np.std([0.05, 0.04], ddof=1):.3f} (2 runs) |",
        f"| ones | 0.001 | {0.045:.3f} +- {np.std([0.05, 0.04], ddof=1):.3f} (2 runs) |",
    ]


def test_the_selected_table_picks_by_validation_over_the_whole_grid():
    rows = [
        _row("t10", 0.001, 5, 1, 0.05, {"test/error": 0.06}), _row("t10", 0.001, 5, 2, 0.04, {"test/error": 0.03}),
        _row("t10", 0.01, 5, 1, 0.02, {"test/error": 0.09}), _row("t10", 0.01, 5, 2, 0.30, {"test/error": 0.31}),
        _row("t10", 0.1, 5, 1, 0.02, {"test/error": 0.02}),  # ties lr 0.01 seed 1 on val: the lower lr wins
        _row("t10", 0.1, 5, 2, 0.0, {"test/error": 0.0}, "capped", "x --trainer.max_time=00:00:14:00"),
        _row("t10", 0.1, 5, 3, 0.0, {"test/error": 0.0}, "failed"),
        _row("t20", 0.1, 1, 4, 0.5, {"test/error": 0.6}),
    ]  # fmt: skip
    lines = selected_markdown(rows).splitlines()
    assert lines[0].startswith("| training lengths | story mask | max_step | finished runs (Adam lr: seeds) |")
    # selected: lr 0.01 seed 1 (val 0.02, the capped and failed val 0.0 take no part); its test error 0.09 is not
    # the lowest; the mean is over lr 0.01's two seeds
    spread = f"{np.mean([0.09, 0.31]):.3f} +- {np.std([0.09, 0.31], ddof=1):.3f} (2)"
    assert lines[2] == (
        "| T = 10 | N(0, 0.1) | 5 | 0.001: 1, 2; 0.01: 1, 2; 0.1: 1 | 0.01, 1 | 0.0200 | 0.090 |  |  |  |  |  |  |  "
        f"| {spread} |"
    )
    assert lines[3] == "| T = 20 | N(0, 0.1) | 1 | 0.1: 4 | 0.1, 4 | 0.5000 |  | 0.600 |  |  |  |  |  |  | 0.600 (1) |"
    assert [line.split(" | ")[0] for line in lines[4:]] == ["| paper (EntNet)", "| paper, trained on T <= 20"]


def test_the_summary_gives_each_masks_selected_runs_in_one_line():
    ones = "7714a51bdadcd60a"  # a config of before issue 15: the ones mask
    rows = [
        _row("t10", 0.001, 5, 1, 0.05, {"test/error": 0.06}), _row("t10", 0.01, 5, 1, 0.02, {"test/error": 0.09}),
        _row("t10", 0.1, 5, 2, 0.0, {"test/error": 0.0}, "capped", "x --trainer.max_time=00:00:14:00"),
        _row("t20", 0.1, 1, 4, 0.5, {"test/error": 0.6}),
        _row("t10", 0.001, 1, 4, 0.3, {"test/error": 0.25}),
        _row("gen", 0.01, 5, 1, 0.3, {"test/error": 0.4} | {f"test/error_task{t}": t / 100 for t in GEN_TEST}),
        _row("t10", 0.001, 5, 1, 0.1, {"test/error": 0.125}) | {"config_digest": ones},
    ]  # fmt: skip
    # max_step 5 first (Table 1's order), then training lengths; lr 0.01's run selected by validation (0.02)
    assert selected_summary(rows, "N(0, 0.1)") == (
        "max_step 5: T = 10 0.090 (2 runs), trained on T <= 20 (2..20), tested on T = 20-80 (pooled) 0.400 (1 run); "
        "max_step 1: T = 10 0.250 (1 run), T = 20 0.600 (1 run)"
    )
    assert selected_summary(rows, "ones") == "max_step 5: T = 10 0.125 (1 run)"
    assert selected_summary(rows[:4], "ones") == "(no finished runs with the ones story mask)"
    with pytest.raises(ValueError, match=r"mask: one of \['N\(0, 0.1\)', 'ones'\], got 'zeros'"):
        selected_summary(rows, "zeros")


def test_the_exploration_table_on_hand_written_rows():
    rows = [
        _row("t10", 0.01, 1, 1, 0.1, {}), _row("t10", 0.01, 1, 2, 0.2, {}), _row("t10", 0.01, 5, 1, 0.4, {}, "capped"),
        _row("t10", 0.1, 5, 1, 0.9, {}), _row("t10", 0.1, 1, 1, 0.9, {}, "failed"), _row("t20", 0.1, 1, 1, 0.3, {}),
    ]  # fmt: skip
    lines = explore_markdown(rows).splitlines()
    assert lines[0] == (
        "| story mask | Adam lr | moves of 1 square (`max_step=1`) | moves of 1-5 squares (`max_step=5`) |"
    )
    spread = f"{np.mean([0.1, 0.2]):.3f} +- {np.std([0.1, 0.2], ddof=1):.3f} (2 runs)"
    assert lines[2:] == [f"| N(0, 0.1) | 0.01 | {spread} | 0.400 (capped) |", "| N(0, 0.1) | 0.1 |  | 0.900 |"]


def test_the_committed_world_model_ledger():
    rows = read(LEDGERS / "entnet_world_model.jsonl")
    assert len(rows) >= 17 and all({"variant", "lr", "max_step"} == set(r["params"]) for r in rows)
    table = world_model_markdown(rows[:17])  # the migrated rows; the ledger grows as the study runs
    # results/entnet_world_model.json at 978148c, run "gen": test/error_task20..80 0.489, 0.6328, 0.747, 0.8489,
    # 0.9046, 0.8993, 0.8864, fit_seconds 637, test/error 0.7755; run "t20_step1": test/error 0.016, 688 s
    assert (
        "| T <= 20 (2..20) | ones | 5 | 0.001 | finished | 1 (1) |  | 0.489 | 0.633 | 0.747 | 0.849 | 0.905 | 0.899 "
        "| 0.886 | 637 s | 0.775 |" in table
    )
    assert "| T = 20 | ones | 1 | 0.001 | finished | 1 (1) |  | 0.016 |  |  |  |  |  |  | 688 s | 0.016 |" in table


def test_the_committed_ledgers_grid_rows_carry_the_overrides_the_study_plans():
    """The 11 rows issue 15's grid wrote before the runner: WorldModelStudy plans the same overrides for them, so
    its run keys match theirs while the config's text is what they ran."""
    migrated = read(LEDGERS / "entnet_world_model.jsonl")[:17]  # the ledger grows as the study runs
    rows = [r for r in migrated if "--seed_everything" in " ".join(r["overrides"])]
    assert len(rows) == 11
    for row in rows:
        p = row["params"]
        study = WorldModelStudy(variants=[p["variant"]], lr=[p["lr"]], max_step=[p["max_step"]], seeds=[row["seed"]])
        assert [list(r.overrides) for r in study.planned()] == [row["overrides"]]


def test_the_committed_exploration_ledger():
    rows = read(LEDGERS / "entnet_world_model_t10_explore.jsonl")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"capped"}
    # results/world_model_t10_explore.json at 978148c: last validation errors 0.0695 (lr 0.001, max_step 1),
    # 0.3225 (0.001, 5), 0.1705 (0.01, 1), 0.4575 (0.01, 5)
    assert explore_markdown(rows).splitlines()[2:] == [
        f"| ones | 0.001 | {0.0695:.3f} (capped) | {0.3225:.3f} (capped) |",
        f"| ones | 0.01 | {0.1705:.3f} (capped) | {0.4575:.3f} (capped) |",
    ]


def test_the_study_config_parses_and_plans_the_full_grid():
    study = shipped_study(WorldModelStudy, "entnet_world_model", arxiv="1612.03969")
    assert study.name == "entnet_world_model" and len(study.planned()) == 4 * 3 * 2 * 5
