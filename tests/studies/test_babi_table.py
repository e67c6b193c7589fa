"""The bAbI study (arXiv:1612.03969 Table 2 layout): its plan, its table on hand-written rows, its committed ledgers,
its study configs, and one two-batch run on the fixture data."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml
from jsonargparse import ArgumentParser

from iclr17.studies.babi_table import (
    PAPER_TABLE2_ENTNET,
    BabiStudy,
    babi_markdown,
    best_by_validation,
    stopped_by,
    task_summaries,
)
from iclr17.studies.ledger import read
from tests.conftest import REPO_ROOT

LEDGERS = REPO_ROOT / "results" / "ledgers"


def _row(task, seed, val, test, status="finished", epochs=10, command="iclr17 fit ...", seconds=100.0):
    return {
        "study": "entnet_babi", "config": "entnet/babi10k.yaml", "config_digest": "ab" * 8, "params": {"task": task},
        "overrides": [f"--data.init_args.tasks=[{task}]", f"--seed_everything={seed}"], "seed": seed,
        "commit": "0" * 40, "dirty": False, "machine": "test", "command": command, "status": status, "steps": 5,
        "fit_seconds": seconds, "metrics": {"val/error": val, "test/error": test, "epochs": epochs},
    }  # fmt: skip


ROWS = [
    _row(1, 2, 0.01, 0.02, epochs=9, seconds=30.0),
    _row(1, 1, 0.0, 0.0, epochs=4, seconds=50.0),
    _row(2, 1, 0.1, 0.08, "capped", 7, "iclr17 fit --trainer.max_time=00:00:55:00", 3300.0),
    _row(5, 1, 0.9, 0.9, "failed"),
]


def test_best_by_validation_breaks_ties_by_the_lowest_seed():
    runs = [_row(1, 3, 0.02, 0.5), _row(1, 2, 0.01, 0.4), _row(1, 1, 0.01, 0.3)]
    assert best_by_validation(runs)["seed"] == 1
    assert best_by_validation(runs[:2])["seed"] == 2


def test_stopped_by_reads_the_cap_from_the_command():
    assert stopped_by(_row(1, 1, 0.1, 0.1, "capped", command="x --trainer.max_time=00:00:05:00")) == "5-min cap"
    assert stopped_by(_row(1, 1, 0.1, 0.1, "capped", command="x --trainer.max_time 00:01:30:00")) == "90-min cap"
    assert stopped_by(_row(1, 1, 0.1, 0.1, "capped")) == "time cap"
    assert stopped_by(_row(1, 1, 0.0, 0.1)) == "val error 0"
    assert stopped_by(_row(1, 1, 0.05, 0.1)) == "epoch budget"


def test_task_summaries_leave_failed_runs_out():
    summaries = task_summaries(ROWS)
    assert list(summaries) == [1, 2]
    assert summaries[1]["best"]["seed"] == 1 and summaries[1]["seeds"] == 2
    assert summaries[1]["mean"] == pytest.approx(np.mean([0.02, 0.0]))
    assert summaries[1]["std"] == pytest.approx(np.std([0.02, 0.0], ddof=1))
    assert summaries[2]["std"] == 0.0


def test_the_table_on_hand_written_rows():
    lines = babi_markdown(ROWS).splitlines()
    assert lines[0].startswith("| task | ours: best by val | ours: mean +- std | seeds | epochs run | stopped by |")
    # task 1: best by val is seed 1 (val 0, test 0, 4 epochs, 50 s); errors 0 and 2%: mean 1.0, std sqrt(2) = 1.4
    assert lines[2] == "| 1 | 0.0 | 1.0 +- 1.4 | 2 | 4 | val error 0 | 50 s | 0.0 |"
    assert lines[3] == "| 2 | 8.0 | 8.0 +- 0.0 | 1 | 7 | 55-min cap | 55 min | 0.1 |"
    # over tasks 1 and 2: best (0 + 8) / 2, means (1 + 8) / 2, paper (0.0 + 0.1) / 2; task 5's failed run is out
    assert lines[4] == "| mean (2 tasks) | 4.00 | 4.50 | | | | | 0.05 |"
    assert lines[5] == "| failed (> 5%) | 1 (2) | 1 (2) | | | | | 0 |"
    assert len(lines) == 6


def test_the_paper_column_is_the_papers_table_2():
    assert len(PAPER_TABLE2_ENTNET) == 20 and PAPER_TABLE2_ENTNET[3] == 4.1 and PAPER_TABLE2_ENTNET[19] == 2.3
    assert round(sum(PAPER_TABLE2_ENTNET.values()) / 20, 1) == 0.5  # the paper's mean error, 0.5%


def test_planned_runs_one_task_per_run_and_digest_the_config_text(tmp_path):
    config = tmp_path / "babi.yaml"
    config.write_text("seed_everything: 1\n")
    study = BabiStudy(fit_config=str(config), tasks=[2, 5], seeds=[1, 3], ledger_dir=str(tmp_path))
    runs = study.planned()
    assert [(r.params["task"], r.seed) for r in runs] == [(2, 1), (2, 3), (5, 1), (5, 3)]
    assert runs[1].overrides == ("--data.init_args.tasks=[2]", "--seed_everything=3")
    assert {r.config_digest for r in runs} == {hashlib.sha256(b"seed_everything: 1\n").hexdigest()[:16]}
    config.write_text("seed_everything: 2\n")
    changed = study.planned()
    assert changed[0].config_digest != runs[0].config_digest and changed[0].key != runs[0].key
    assert BabiStudy().tasks == list(range(1, 21)) and BabiStudy().seeds == [1]
    assert BabiStudy.cli_name() == "entnet-babi"


def test_the_committed_paper_schedule_ledger():
    rows = read(LEDGERS / "entnet_babi10k.jsonl")
    assert len(rows) == 7 and {r["status"] for r in rows if r["params"]["task"] in (2, 17, 18)} == {"capped"}
    table = babi_markdown(rows)
    # results/entnet_babi10k_paper_schedule_seed1.json at 978148c: task 2 test_error 0.014, 193 epochs, 3302.6 s,
    # its command's --trainer.max_time=00:00:55:00; task 13 val_error 0.0, test_error 0.004, 130 epochs, 776.9 s
    assert "| 2 | 1.4 | 1.4 +- 0.0 | 1 | 193 | 55-min cap | 55 min | 0.1 |" in table
    assert "| 13 | 0.4 | 0.4 +- 0.0 | 1 | 130 | val error 0 | 13 min | 1.3 |" in table
    assert "| failed (> 5%) | 3 (14, 16, 19) |" in table


def test_the_committed_five_minute_ledger():
    rows = read(LEDGERS / "entnet_babi10k_5min.jsonl")
    assert len(rows) == 19 and sum(r["status"] == "capped" for r in rows) == 11
    table = babi_markdown(rows)
    # results/entnet_babi10k_seed1_5min.json at 978148c: the 19 test errors, and its summary's best_by_val
    errors = [0.2639999985694885, 0.5299999713897705, 0.5820000171661377, 0.009999999776482582,
              0.03400000184774399, 0.06800000369548798, 0.06300000101327896, 0.006000000052154064,
              0.009999999776482582, 0.0, 0.00800000037997961, 0.0010000000474974513, 0.0, 0.0020000000949949026,
              0.0, 0.0, 0.0, 0.0, 0.0]  # fmt: skip
    assert f"{100 * np.mean(errors):.2f}" == "8.31" and "| mean (19 tasks) | 8.31 | 8.31 |" in table
    assert "| failed (> 5%) | 5 (2, 13, 14, 16, 19) |" in table
    assert "| 2 | 26.4 | 26.4 +- 0.0 | 1 | 8 | 5-min cap | 5 min | 0.1 |" in table


@pytest.mark.parametrize(("name", "tasks", "seeds"), [("entnet_babi10k", 19, 10), ("entnet_babi10k_5min", 19, 1)])
def test_the_study_configs_parse_and_plan(name, tasks, seeds):
    path = REPO_ROOT / "configs" / "studies" / f"{name}.yaml"
    header = "".join(line for line in path.read_text().splitlines(True) if line.startswith("#"))
    assert "Command:" in header and "Paper:" in header and "arXiv:1612.03969" in header
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(BabiStudy, "study")
    study = parser.instantiate(parser.parse_object({"study": yaml.safe_load(path.read_text())})).study
    assert study.name == name and len(study.planned()) == tasks * seeds
    assert 3 not in study.tasks  # its 10k training file is missing from our data


def test_one_two_batch_run_on_the_fixture_data(fixture_data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("ICLR17_DATA_DIR", str(fixture_data_root))
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.accelerator=cpu"]  # one epoch
    study = BabiStudy(tasks=[1], extra=short, ledger_dir=str(tmp_path))  # (max_steps=2 would end before validating,
    outcome = study.execute(study.planned()[0], tmp_path / "run")  # and the config's EarlyStopping needs val/error)
    assert outcome.status == "finished" and outcome.steps == 2 and outcome.metrics["epochs"] == 1
    assert 0.0 <= outcome.metrics["test/error"] <= 1.0 and 0.0 <= outcome.metrics["val/error"] <= 1.0
