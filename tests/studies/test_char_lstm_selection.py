"""The char-LSTM step-size study (arXiv:1611.01838 Table 1, char-LSTM row; docs/papers/entropy_sgd.md): both phases
through the real runner with scripted runs (no training), the selection by validation only, resuming from the
ledger, ``status``, the table on hand-written rows, and the shipped study config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from iclr17.cli import cli
from iclr17.studies.catalog import RESULTS_TABLES, STUDIES
from iclr17.studies.char_lstm_selection import (
    ETA_PRIME,
    ETA_PRIMES,
    LR,
    LRS,
    CharLstmSelectionStudy,
    grid_edge_note,
    lowest_so_far,
    select,
    selected_markdown,
    selected_point,
    selected_summary,
)
from iclr17.studies.ledger import append, read
from iclr17.studies.runner import Outcome, Run
from tests.conftest import REPO_ROOT
from tests.studies.study_configs import shipped_study

STUDY_CONFIG = REPO_ROOT / "configs" / "studies" / "entropy_sgd_char_lstm_selected.yaml"


class ScriptedSelection(CharLstmSelectionStudy):
    """``script[(eta', lr)]`` = (final val loss, test loss) of the grid run at that point; ``full[variant]`` = (val,
    test) of every full-length run; a run missing from its script raises (a failed row). Each run records how many
    grid rows had finished before it started."""

    def __init__(self, script, full, **kwargs) -> None:
        super().__init__(**kwargs)
        self.script, self.full = script, full

    def execute(self, run: Run, out_dir: Path) -> Outcome:
        grid_done = sum(r["params"]["phase"] == "grid" and r["status"] == "finished" for r in read(self.ledger))
        p = run.params
        val, test = self.script[(p["eta_prime"], p["lr"])] if p["phase"] == "grid" else self.full[p["variant"]]
        epochs = self.grid_epochs if p["phase"] == "grid" else 30
        metrics = {"val/loss": val, "test/loss": test, "test/ppl": math.exp(test), "epochs": epochs,
                   "test/bits_per_char": test / math.log(2), "grid_done_before": grid_done}  # fmt: skip
        return Outcome("finished", 100 * epochs, 2.0, metrics)


def _configs(tmp_path: Path) -> tuple[str, str]:
    entropy, adam = tmp_path / "entropy.yaml", tmp_path / "adam.yaml"
    entropy.write_text("seed_everything: 0\n")
    adam.write_text("seed_everything: 1\n")
    return str(entropy), str(adam)


def _study(tmp_path: Path, script, full=None, **kwargs) -> ScriptedSelection:
    entropy, adam = _configs(tmp_path)
    kwargs = {"eta_primes": [0.002, 0.001], "lrs": [0.01, 0.005], "seeds": [1, 2]} | kwargs  # given unsorted
    dirs = {"ledger_dir": str(tmp_path / "ledgers"), "runs_dir": str(tmp_path / "runs")}
    return ScriptedSelection(script, full or FULL, fit_config=entropy, baseline_config=adam, **dirs, **kwargs)


# (0.002, 0.005) has the lowest validation loss; (0.001, 0.01) the lowest test loss but a worse validation loss
SCRIPT = {(0.001, 0.005): (1.60, 1.61), (0.001, 0.01): (1.55, 1.40), (0.002, 0.005): (1.50, 1.52),
          (0.002, 0.01): (float("nan"), float("nan"))}  # fmt: skip
FULL = {"char_entropy_adam": (1.30, 1.31), "char_adam": (1.35, 1.36)}


def test_both_phases_through_the_runner_select_by_validation_only(tmp_path):
    study = _study(tmp_path, SCRIPT, max_time="00:00:05:00")
    rows = study.run(workers=2)
    grid = [r for r in rows if r["params"]["phase"] == "grid"]
    full = [r for r in rows if r["params"]["phase"] == "full"]
    assert sorted((r["params"]["eta_prime"], r["params"]["lr"]) for r in grid) == sorted(SCRIPT)
    assert {r["seed"] for r in grid} == {0} and {r["status"] for r in rows} == {"finished"}
    for r in grid:  # the short budget is an epoch count, never a time cap
        assert r["overrides"][2:] == ["--trainer.max_epochs=5", "--seed_everything=0"]
        assert "max_time" not in r["command"] and r["config"] == study.config
    # every full-length run started after the whole grid had finished
    assert len(full) == 4 and all(r["metrics"]["grid_done_before"] == 4 for r in full)
    entropy = sorted((r for r in full if r["params"]["variant"] == "char_entropy_adam"), key=lambda r: r["seed"])
    adam = sorted((r for r in full if r["params"]["variant"] == "char_adam"), key=lambda r: r["seed"])
    assert [r["seed"] for r in entropy] == [r["seed"] for r in adam] == [1, 2]
    for r in entropy:  # the lowest validation loss, not the lowest test loss (0.001, 0.01)
        assert r["params"] == {"phase": "full", "variant": "char_entropy_adam", "eta_prime": 0.002, "lr": 0.005}
        assert r["overrides"][:2] == [f"{ETA_PRIME}=0.002", f"{LR}=0.005"] and r["config"] == study.config
        assert "--trainer.max_epochs" not in " ".join(r["overrides"])
        assert "--trainer.max_time=00:00:05:00" in r["command"]
    assert all(r["config"] == study.baseline_config and r["overrides"] == [f"--seed_everything={r['seed']}"]
               for r in adam)  # fmt: skip
    assert f"--config {study.baseline_config} --seed_everything=1" in adam[0]["command"]
    assert study.run() == [] and len(read(study.ledger)) == 8


def test_select_reads_validation_only_breaks_ties_by_grid_order_and_waits_for_the_whole_grid(tmp_path):
    study = _study(tmp_path, {})
    grid = study.grid_runs()
    assert [(r.params["eta_prime"], r.params["lr"]) for r in grid] == [(0.001, 0.005), (0.001, 0.01), (0.002, 0.005),
                                                                       (0.002, 0.01)]  # fmt: skip

    def rows(vals_tests, status="finished", runs=grid):
        return [
            {"config_digest": r.config_digest, "overrides": list(r.overrides), "seed": r.seed, "status": status,
             "metrics": {"val/loss": v, "test/loss": t}}
            for r, (v, t) in zip(runs, vals_tests, strict=True)
        ]  # fmt: skip

    # better test at grid[0], better validation at grid[3]: grid[3]
    assert select(grid, rows([(1.5, 1.0), (1.6, 1.6), (1.7, 1.7), (1.4, 1.9)])) is grid[3]
    # a tie on validation: the first in grid order
    assert select(grid, rows([(1.6, 1.0), (1.5, 1.9), (1.7, 1.7), (1.5, 1.1)])) is grid[1]
    # a diverged run (nan, inf or no val/loss) never wins, however low its test loss
    diverged = rows([(float("nan"), 0.1), (float("-inf"), 0.1), (1.7, 1.7), (1.8, 1.8)])
    diverged[1]["metrics"] = {"test/loss": 0.1}
    assert select(grid, diverged) is grid[2]
    # until every grid run has a finished row: None (a failed row, or a row of another config digest, is no finish)
    partial = rows([(1.5, 1.5)] * 3, runs=grid[:3])
    assert select(grid, partial) is None
    assert select(grid, partial + rows([(1.0, 1.0)], "failed", grid[3:])) is None
    other = rows([(1.0, 1.0)], runs=grid[3:])[0] | {"config_digest": "ff" * 8}
    assert select(grid, [*partial, other]) is None
    assert select(grid, partial + rows([(1.0, 1.0)], runs=grid[3:])) is grid[3]


def test_a_failed_grid_run_holds_phase_two_and_the_next_call_resumes(tmp_path):
    script = {k: v for k, v in SCRIPT.items() if k != (0.001, 0.01)}  # that grid run raises: a failed row
    study = _study(tmp_path, script)
    rows = study.run(workers=2)
    assert len(rows) == 4 and [r["params"] for r in rows if r["status"] == "failed"] == [
        {"phase": "grid", "eta_prime": 0.001, "lr": 0.01}
    ]
    assert len(study.planned()) == 4  # the grid only
    report = study.status()
    assert report["phase"] == ["grid"] and report["selected"] == []
    assert report["failed"] == ["{'phase': 'grid', 'eta_prime': 0.001, 'lr': 0.01} seed 0"] and len(report["done"]) == 3
    waiting = [f"Entropy-Adam at the selected point seed {s}" for s in (1, 2)] + ["Adam seed 1", "Adam seed 2"]
    assert report["waiting"] == waiting
    study.script = SCRIPT
    rows = study.run()  # the failed grid point, then phase 2 in the same call
    assert [r["params"]["phase"] for r in rows] == ["grid"] + ["full"] * 4
    report = study.status()
    assert report["phase"] == ["full"] and report["selected"] == ["eta' 0.002, lr 0.005"]
    assert len(report["done"]) == 8 and report["missing"] == report["failed"] == report["waiting"] == []
    assert study.run() == []
    more = _study(tmp_path, SCRIPT, seeds=[1, 2, 3])  # the same ledger, one more seed: only its two runs
    assert sorted((r["params"]["variant"], r["seed"]) for r in more.run()) == [("char_adam", 3),
                                                                              ("char_entropy_adam", 3)]  # fmt: skip


def test_a_grown_grid_runs_its_new_points_then_the_full_runs_of_its_selection_only_if_it_moved(tmp_path):
    _study(tmp_path, SCRIPT).run()  # the 2 x 2 grid selects (0.002, 0.005) and runs it at full length: 8 rows
    kept = _study(tmp_path, SCRIPT | {(0.004, 0.005): (1.55, 1.0), (0.004, 0.01): (1.7, 1.7)},
                  eta_primes=[0.001, 0.002, 0.004])  # fmt: skip
    assert [r["params"] for r in kept.run()] == [
        {"phase": "grid", "eta_prime": 0.004, "lr": lr} for lr in (0.005, 0.01)
    ]
    assert kept.selected().params["eta_prime"] == 0.002 and kept.status()["missing"] == []
    moved = _study(tmp_path, kept.script | {(0.008, 0.005): (1.45, 1.9), (0.008, 0.01): (1.8, 1.8)},
                   eta_primes=[0.001, 0.002, 0.004, 0.008])  # fmt: skip
    rows = moved.run()  # the two new grid points, then Entropy-Adam at the new selection; Adam's rows stand
    assert [r["params"]["phase"] for r in rows] == ["grid", "grid", "full", "full"]
    assert [(r["params"]["variant"], r["params"]["eta_prime"], r["seed"]) for r in rows[2:]] == [
        ("char_entropy_adam", 0.008, 1), ("char_entropy_adam", 0.008, 2)
    ]  # fmt: skip
    assert all(r["metrics"]["grid_done_before"] == 8 for r in rows[2:]) and moved.run() == []
    lines = moved.markdown(read(moved.ledger)).splitlines()
    assert lines[5] == "| 0.008 | **1.4500** (selected) | 1.8000 |"
    entropy = [line.split(" | ")[:2] for line in lines if line.startswith("| Entropy-Adam")]
    earlier = "| Entropy-Adam, L = 5, selected on validation by an earlier grid"
    assert entropy == [["| Entropy-Adam, L = 5, selected on validation", "eta' 0.008, lr 0.005"],
                       [earlier, "eta' 0.002, lr 0.005"]]  # fmt: skip


def test_status_before_any_run_and_force_is_refused(tmp_path, capsys):
    study = _study(tmp_path, SCRIPT)
    report = study.status()
    assert report["phase"] == ["grid"] and len(report["missing"]) == 4 and len(report["waiting"]) == 4
    assert "phase 1 (grid), 0 of 4 grid runs finished" in capsys.readouterr().out
    with pytest.raises(ValueError, match="another name"):
        study.run(force=True)


def test_an_edited_config_replans_the_grid(tmp_path):
    study = _study(tmp_path, SCRIPT)
    study.run()
    Path(study.config).write_text("seed_everything: 0\ntrainer: {max_epochs: 30}\n")
    assert study.selected() is None and len(study.planned()) == 4  # the old grid rows are another config's


def _row(params, seed, metrics, status="finished", command="iclr17 fit ..."):
    return {
        "study": "entropy_sgd_char_lstm_selected", "config": "c.yaml", "config_digest": "ab" * 8, "params": params,
        "overrides": [f"--seed_everything={seed}", json.dumps(params)], "seed": seed, "commit": "0" * 40,
        "dirty": False, "machine": "test", "command": command, "status": status, "steps": 5, "fit_seconds": 10.0,
        "metrics": metrics,
    }  # fmt: skip


def _grid(eta, lr, val, test=1.0, status="finished"):
    return _row({"phase": "grid", "eta_prime": eta, "lr": lr}, 0, {"val/loss": val, "test/loss": test, "epochs": 5},
                status)  # fmt: skip


def _full(variant, seed, val, test, epochs, status="finished", command="iclr17 fit ...", eta=0.002, lr=0.005):
    params = {"phase": "full", "variant": variant}
    if variant == "char_entropy_adam":
        params |= {"eta_prime": eta, "lr": lr}
    metrics = {"val/loss": val, "test/loss": test, "test/ppl": math.exp(test), "test/bits_per_char": test / math.log(2),
               "epochs": epochs}  # fmt: skip
    return _row(params, seed, metrics, status, command)


TABLE_ROWS = [
    _grid(0.002, 0.01, 1.61, test=1.0),  # the lowest test loss, not selected
    _grid(0.001, 0.005, 1.70),
    _grid(0.002, 0.005, 1.5512),
    _grid(0.001, 0.01, float("nan")),
    _grid(0.002, 0.0025, 1.2, status="failed"),  # failed rows never enter
    _full("char_adam", 2, 1.40, 1.41, 50),
    _full("char_entropy_adam", 1, 1.30, 1.32, 30),
    _full("char_entropy_adam", 2, 1.34, 1.36, 30),
    _full("char_adam", 1, 1.38, 1.39, 28, "capped", "x --trainer.max_time=00:00:03:30"),
    _full("char_adam", 3, 9.0, 9.0, 1, "failed"),
]


TABLE_AXES = ([0.001, 0.002], [0.005, 0.01])  # TABLE_ROWS' grid


def test_the_table_on_hand_written_rows():
    assert selected_point(TABLE_ROWS, *TABLE_AXES) == (0.002, 0.005) and selected_point(TABLE_ROWS) is None
    assert selected_point(TABLE_ROWS[1:], *TABLE_AXES) is None  # a point missing: no selection
    lines = selected_markdown(TABLE_ROWS, *TABLE_AXES).splitlines()
    assert lines[:4] == [
        "| val loss after 5 passes, seed 0: inner eta' (rows), outer lr (columns) | 0.005 | 0.01 |",
        "|---|---|---|",
        "| 0.001 | 1.7000 | nan |",
        "| 0.002 | **1.5512** (selected) | 1.6100 |",
    ]
    assert lines[4:6] == ["", grid_edge_note((0.002, 0.005), *TABLE_AXES)]  # a 2 x 2 grid: every point is an edge
    assert lines[6] == "" and lines[7].startswith("| optimizer | step sizes | seeds | reached | val loss | test loss |")

    def spread(values, digits):
        return f"{np.mean(values):.{digits}f} +- {np.std(values, ddof=1):.{digits}f}"

    e_test, a_test = [1.32, 1.36], [1.39, 1.41]  # seeds 1, 2 each; Adam's failed seed 3 is out
    assert lines[9] == (
        f"| Entropy-Adam, L = 5, selected on validation | eta' 0.002, lr 0.005 | 1, 2 | 30 passes = 25 effective "
        f"epochs (x L) | {spread([1.30, 1.34], 3)} | {spread(e_test, 3)} | {spread(np.exp(e_test), 2)} | "
        f"{spread(np.array(e_test) / np.log(2), 2)} | val 1.213, test 1.217 at 25 effective epochs (x L) |"
    )
    assert lines[10] == (
        f"| Adam | lr 0.002 | 1, 2 | 28 epochs, capped (3.5-min cap), 50 epochs | {spread([1.38, 1.40], 3)} | "
        f"{spread(a_test, 3)} | {spread(np.exp(a_test), 2)} | {spread(np.array(a_test) / np.log(2), 2)} | "
        "val 1.224, test 1.226 at 40 epochs |"
    )
    assert len(lines) == 11
    # one seed of a variant: its value alone, no "+- 0.000" it does not have
    one_seed = [r for r in TABLE_ROWS if r["params"].get("phase") == "grid" or r["seed"] == 2]
    assert "| 1.340 | 1.360 | 3.90 | 1.96 |" in selected_markdown(one_seed, *TABLE_AXES).splitlines()[9]


def test_the_summary_is_the_full_length_comparison_in_one_line():
    def spread(values):
        return f"{np.mean(values):.3f} +- {np.std(values, ddof=1):.3f}"

    assert selected_summary(TABLE_ROWS, *TABLE_AXES) == (
        f"Entropy-Adam, L = 5, selected on validation (eta' 0.002, lr 0.005), seeds 1, 2, 30 passes = 25 effective "
        f"epochs (x L): val {spread([1.30, 1.34])}, test {spread([1.32, 1.36])}; Adam (lr 0.002), seeds 1, 2, "
        f"28 epochs, capped (3.5-min cap), 50 epochs: val {spread([1.38, 1.40])}, test {spread([1.39, 1.41])} "
        "(nats per char)"
    )
    assert selected_summary(TABLE_ROWS) == "(no selection yet: the step-size grid has not finished)"
    grid_only = [r for r in TABLE_ROWS if r["params"]["phase"] == "grid"]
    assert selected_summary(grid_only, *TABLE_AXES) == (
        "Entropy-Adam, L = 5, selected on validation (eta' 0.002, lr 0.005): no full-length runs yet; "
        "Adam (lr 0.002): no full-length runs yet (nats per char)"
    )


def test_a_grown_grid_selects_again_and_labels_the_full_runs_of_the_earlier_selection():
    # TABLE_ROWS' 2 x 2 grid selected (0.002, 0.005) and ran it at full length; the grid then grows by eta' 0.004
    grown = ([0.001, 0.002, 0.004], TABLE_AXES[1])
    while_running = [*TABLE_ROWS, _grid(0.004, 0.005, 1.2)]
    assert selected_point(while_running, *grown) is None
    lines = selected_markdown(while_running, *grown).splitlines()
    assert "| **1.2000** (lowest so far: 5 of 6 grid points finished, no selection yet) |" in lines[4]
    assert "(selected)" not in "\n".join(lines) and "edge" not in "\n".join(lines)
    assert lines[8].startswith("| Adam | lr 0.002 |")
    assert lines[9].startswith(
        "| Entropy-Adam, L = 5, selected on validation by an earlier grid | eta' 0.002, lr 0.005 |"
    )
    # the new point wins: it is selected, its full-length runs are to come, the earlier ones stay labelled
    moved = [*while_running, _grid(0.004, 0.01, 1.9)]
    assert selected_point(moved, *grown) == (0.004, 0.005)
    lines = selected_markdown(moved, *grown).splitlines()
    assert lines[4] == "| 0.004 | **1.2000** (selected; its full-length runs are still to come) | 1.9000 |"
    assert lines[5:7] == ["", grid_edge_note((0.004, 0.005), *grown)]
    assert [line.split(" | ")[0] for line in lines[10:]] == [
        "| Adam",
        "| Entropy-Adam, L = 5, selected on validation by an earlier grid",
    ]
    with_new_runs = [*moved, _full("char_entropy_adam", 1, 1.25, 1.26, 30, eta=0.004, lr=0.005)]
    lines = selected_markdown(with_new_runs, *grown).splitlines()
    assert "**1.2000** (selected) |" in lines[4]
    assert [line.split(" | ")[:2] for line in lines[10:]] == [
        ["| Entropy-Adam, L = 5, selected on validation", "eta' 0.004, lr 0.005"],
        ["| Adam", "lr 0.002"],
        ["| Entropy-Adam, L = 5, selected on validation by an earlier grid", "eta' 0.002, lr 0.005"],
    ]
    # the earlier point wins again: its full-length runs are the selection's, as before the grid grew
    kept = [*while_running[:-1], _grid(0.004, 0.005, 1.7), _grid(0.004, 0.01, 1.9)]
    assert (
        selected_markdown(kept, *grown)
        .splitlines()[10]
        .startswith("| Entropy-Adam, L = 5, selected on validation | eta' 0.002, lr 0.005 |")
    )


def test_before_the_study_selects_the_table_marks_the_lowest_point_so_far_and_no_selection():
    # two of the grid's points: the lower validation loss leads (not the lower test loss); nothing is "selected" and
    # there is no full-length table until the study has selected, whatever the finished points
    rows = [_grid(0.004, 0.01, 1.70, test=0.5), _grid(0.001, 0.0025, 1.65, test=2.0)]
    assert lowest_so_far(rows) == (0.001, 0.0025) and selected_point(rows) is None
    assert selected_markdown(rows).splitlines() == [
        "| val loss after 5 passes, seed 0: inner eta' (rows), outer lr (columns) | 0.0025 | 0.01 |",
        "|---|---|---|",
        "| 0.001 | **1.6500** (lowest so far: 2 of 9 grid points finished, no selection yet) |  |",
        "| 0.004 |  | 1.7000 |",
    ]


def _complete_grid(val, etas=(0.001, 0.002, 0.004), lrs=(0.0025, 0.005, 0.01)):
    return [_grid(eta, lr, val(eta, lr), test=10.0 - val(eta, lr)) for eta in etas for lr in lrs]


def test_once_the_whole_grid_has_finished_the_table_marks_the_study_selection_before_its_full_runs():
    # every point of the shipped grid finished, no full-length row yet: the study has selected (select's rule: the
    # lowest validation loss, the first in grid order on a tie, a nan never), so the table says so
    def val(eta, lr):
        return {(0.002, 0.005): 1.40, (0.004, 0.0025): 1.40, (0.001, 0.0025): float("nan")}.get((eta, lr), 1.9)

    rows = _complete_grid(val)
    lines = selected_markdown(rows).splitlines()
    assert lines[3] == "| 0.002 | 1.9000 | **1.4000** (selected; its full-length runs are still to come) | 1.9000 |"
    assert lines[4] == "| 0.004 | 1.4000 | 1.9000 | 1.9000 |" and len(lines) == 5
    # a row from outside the grid never competes with it; a failed grid row does not complete the grid
    assert "**" not in selected_markdown([*rows, _grid(0.008, 0.01, 0.5)]).splitlines()[5]
    missing = [r for r in rows if (r["params"]["eta_prime"], r["params"]["lr"]) != (0.004, 0.01)]
    assert "lowest so far: 8 of 9" in selected_markdown([*missing, _grid(0.004, 0.01, 0.1, status="failed")])


def test_a_grid_missing_a_whole_row_of_points_is_not_complete():
    # 6 finished points that fill every cell of a 2 x 3 table are not the 3 x 3 grid: no selection yet
    rows = _complete_grid(lambda eta, lr: eta + lr, etas=(0.001, 0.002))
    assert "(lowest so far: 6 of 9 grid points finished, no selection yet)" in selected_markdown(rows)
    # the same rows are the whole grid of a study whose axes they are (the study's own table passes its axes)
    assert "(selected; its full-length runs" in selected_markdown(rows, [0.001, 0.002], [0.0025, 0.005, 0.01])


def test_a_selection_on_the_grids_edge_is_said_so_under_the_grid():
    assert grid_edge_note((0.002, 0.005), [0.001, 0.002, 0.004], [0.0025, 0.005, 0.01]) is None
    assert grid_edge_note((0.004, 0.005), [0.001, 0.002, 0.004], [0.0025, 0.005, 0.01]) == (
        "The selection is at the grid's edge (eta' 0.004 is the largest tried): the best step sizes may lie outside "
        "the grid."
    )
    assert grid_edge_note((0.001, 0.01), [0.004, 0.001, 0.002], [0.01, 0.0025]) == (
        "The selection is at the grid's edge (eta' 0.001 is the smallest tried; lr 0.01 is the largest tried): the "
        "best step sizes may lie outside the grid."
    )
    assert grid_edge_note((0.001, 0.01), [0.001], [0.01]) is None  # one value: no edge to speak of
    # the table: the note under the grid once the study has selected, not while a point only leads
    lines = selected_markdown(_complete_grid(lambda eta, lr: abs(eta - 0.004) + abs(lr - 0.005))).splitlines()
    assert lines[4] == "| 0.004 | 0.0025 | **0.0000** (selected; its full-length runs are still to come) | 0.0050 |"
    assert lines[5:] == ["", grid_edge_note((0.004, 0.005), [0.001, 0.002, 0.004], [0.0025, 0.005, 0.01])]
    assert "edge" not in selected_markdown([_grid(0.004, 0.005, 1.0)])


def test_the_table_of_a_ledger_without_finished_runs_says_so():
    assert selected_markdown([]) == "(no finished runs)"
    failed = {"status": "failed", "params": {"variant": "entropy_adam", "eta_prime": 0.002, "lr": 0.01}, "metrics": {}}
    assert selected_markdown([failed]) == "(no finished runs)"


def test_the_study_and_its_table_are_registered():
    assert STUDIES["entropy-sgd-char-lstm-selected"] is CharLstmSelectionStudy
    assert RESULTS_TABLES["entropy-sgd-char-lstm-selected"] == ("entropy_sgd_char_lstm_selected", selected_markdown)


def _shipped_study(tmp_path: Path) -> CharLstmSelectionStudy:
    return shipped_study(CharLstmSelectionStudy, STUDY_CONFIG.stem, ledger_dir=str(tmp_path))


def test_the_study_config_loads_and_plans_the_grid_then_the_full_runs(tmp_path):
    header = [line for line in STUDY_CONFIG.read_text().splitlines() if line.startswith("#")]
    text = "\n".join(header)
    command = f"# Command:  iclr17 entropy-sgd-char-lstm-selected --config configs/studies/{STUDY_CONFIG.name} run"
    assert all(key in text for key in (command, "# Paper:", "# Reduced:", "# Time:", "arXiv:1611.01838"))
    study = _shipped_study(tmp_path)
    assert study.name == "entropy_sgd_char_lstm_selected" and study.seeds == [1, 2, 3] and study.max_time is None
    grid = study.planned()
    assert len(grid) == len(study.eta_primes) * len(study.lrs) == 9
    assert (study.eta_primes, study.lrs) == (list(ETA_PRIMES), list(LRS))  # the axes RESULTS.md's table draws
    assert {r.config for r in grid} == {"entropy_sgd/char_lstm_entropy_adam.yaml"} and {r.seed for r in grid} == {0}
    assert all(f"--trainer.max_epochs={study.grid_epochs}" in r.overrides for r in grid) and study.grid_epochs == 5
    # the grid's rows in the ledger, the last point with the lowest validation loss: it is planned at full length
    for i, run in enumerate(grid):
        metrics = {"val/loss": 2.0 - 0.1 * (i == 8), "test/loss": 1.0, "epochs": 5}
        append(study.ledger, _row(run.params, run.seed, metrics) | {
            "config_digest": run.config_digest, "overrides": list(run.overrides)})  # fmt: skip
    full = study.planned()[9:]
    best = grid[8].params
    assert "**1.9000** (selected; its full-length runs are still to come)" in study.markdown(read(study.ledger))
    assert [(r.config, r.seed) for r in full] == [("entropy_sgd/char_lstm_entropy_adam.yaml", s) for s in (1, 2, 3)] + [
        ("entropy_sgd/char_lstm_adam.yaml", s) for s in (1, 2, 3)]  # fmt: skip
    assert full[0].overrides == (f"{ETA_PRIME}={best['eta_prime']}", f"{LR}={best['lr']}", "--seed_everything=1")


def test_the_grid_overrides_reach_the_optimizer_through_the_real_cli(tmp_path, capsys):
    study = _shipped_study(tmp_path)
    run = study.grid_runs()[-1]
    with pytest.raises(SystemExit):
        cli([*study.fit_args(run, tmp_path), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    optimizer = printed["model"]["init_args"]["optimizer"]["init_args"]
    assert (optimizer["eta_prime"], optimizer["lr"]) == (max(study.eta_primes), max(study.lrs))
    assert printed["trainer"]["max_epochs"] == 5 and printed["seed_everything"] == 0
