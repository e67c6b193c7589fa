"""The bAbI study (arXiv:1612.03969 Table 2 layout): the authors' protocol through the runner with scripted runs (seeds
in order, skipped after a zero, final-validation selection, resumable, capped runs flagged), its table on hand-written
rows, its committed ledgers, its study configs, and one two-batch run on the fixture data."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml
from pytorch_lightning.callbacks import EarlyStopping

from iclr17.studies import fit_study
from iclr17.studies.babi_table import (
    PAPER_TABLE2_ENTNET,
    STOP_AT_ZERO_VAL_ERROR,
    BabiStudy,
    all_tasks_summary,
    authors_schedule,
    babi_markdown,
    best_by_validation,
    epoch_budget,
    stopped_by,
    task_summaries,
    task_summary,
)
from iclr17.studies.ledger import read
from tests.conftest import REPO_ROOT
from tests.studies.scripted_babi import ScriptedBabiStudy
from tests.studies.study_configs import shipped_study

LEDGERS = REPO_ROOT / "results" / "ledgers"


def _row(task, seed, val, test, status="finished", epochs=10, command="iclr17 fit ...", seconds=100.0):
    return {
        "study": "entnet_babi", "config": "entnet/babi10k.yaml", "config_digest": "ab" * 8, "params": {"task": task},
        "overrides": [f"--data.init_args.tasks=[{task}]", f"--seed_everything={seed}"], "seed": seed,
        "commit": "0" * 40, "dirty": False, "machine": "test", "command": command, "status": status, "steps": 5,
        "fit_seconds": seconds, "metrics": {"val/error": val, "test/error": test, "epochs": epochs},
    }  # fmt: skip


def _scripted(tmp_path, script, **kwargs) -> ScriptedBabiStudy:
    config = tmp_path / "babi.yaml"
    config.write_text("seed_everything: 1\n")
    return ScriptedBabiStudy(script, fit_config=str(config), ledger_dir=str(tmp_path / "ledgers"),
                             runs_dir=str(tmp_path / "runs"), **kwargs)  # fmt: skip


SCRIPT = {  # task 1 reaches validation error 0 at seed 2: seeds 3 and 4 are not in the script (they would fail)
    (1, 1): ("finished", 0.02, 0.03), (1, 2): ("finished", 0.0, 0.01),
    (2, 1): ("finished", 0.10, 0.12), (2, 2): ("finished", 0.05, 0.07), (2, 3): ("finished", 0.05, 0.04),
    (2, 4): ("finished", 0.20, 0.21),
}  # fmt: skip


def test_the_authors_protocol_through_the_runner(tmp_path):
    study = _scripted(tmp_path, SCRIPT, tasks=[1, 2], seeds=[1, 2, 3, 4])
    rows = study.run(workers=2)
    assert sorted((r["params"]["task"], r["seed"], r["status"]) for r in rows) == [
        (1, 1, "finished"), (1, 2, "finished"), (2, 1, "finished"), (2, 2, "finished"), (2, 3, "finished"),
        (2, 4, "finished"),
    ]  # fmt: skip
    # seeds in order: each run started after every earlier seed of its task had finished, never beside one
    assert all(r["metrics"]["finished_before"] == list(range(1, r["seed"])) for r in rows)
    report = study.status()
    assert report["skipped"] == ["{'task': 1} seed 3", "{'task': 1} seed 4"]
    assert len(report["done"]) == 6 and report["missing"] == report["waiting"] == report["failed"] == []
    lines = babi_markdown(read(study.ledger)).splitlines()
    # task 1: selected = seed 2 (val 0), test 1%; task 2: val 0.05 at seeds 2 and 3, the lower seed is selected
    task1, task2 = [3, 1], [12, 7, 4, 21]
    spread = [f"{np.mean(e):.1f} +- {np.std(e, ddof=1):.1f}" for e in (task1, task2)]
    assert lines[2] == f"| 1 | 1.0 | {spread[0]} | 2 | 200 | epoch budget | 2 s | 0.0 |"
    assert lines[3] == f"| 2 | 7.0 | {spread[1]} | 4 | 200 | epoch budget | 2 s | 0.1 |"
    assert lines[4] == f"| mean (2 tasks) | 4.00 | {(np.mean(task1) + np.mean(task2)) / 2:.2f} | | | | | 0.05 |"
    assert lines[5] == "| failed (> 5%) | 1 (2) | 1 (2) | | | | | 0 |"


def test_without_the_skip_rule_seeds_after_a_zero_run_in_order_and_the_selection_is_the_same(tmp_path):
    script = SCRIPT | {(1, 3): ("finished", 0.0, 0.02), (1, 4): ("finished", 0.01, 0.05)}  # another zero at seed 3
    study = _scripted(tmp_path, script, tasks=[1, 2], seeds=[1, 2, 3, 4], skip_after_zero=False)
    rows = study.run(workers=2)
    assert sorted((r["params"]["task"], r["seed"]) for r in rows) == [(t, s) for t in (1, 2) for s in (1, 2, 3, 4)]
    assert all(r["metrics"]["finished_before"] == list(range(1, r["seed"])) for r in rows)
    assert study.status()["skipped"] == []
    task1 = [3, 1, 2, 5]  # selected: seed 2, the first zero (seed 3's zero ties and loses on the seed)
    lines = babi_markdown(read(study.ledger)).splitlines()
    spread = f"{np.mean(task1):.1f} +- {np.std(task1, ddof=1):.1f}"
    assert lines[2] == f"| 1 | 1.0 | {spread} | 4 | 200 | epoch budget | 2 s | 0.0 |"
    with_rule = _scripted(tmp_path, script, tasks=[1, 2], seeds=[1, 2, 3, 4])  # the same ledger, the authors' rule
    assert with_rule.run() == [] and with_rule.status()["skipped"] == []  # seeds 3-4 ran: done, not skipped


def test_a_second_run_executes_nothing_and_a_longer_plan_resumes_from_the_ledger(tmp_path):
    first = _scripted(tmp_path, SCRIPT, tasks=[1, 2], seeds=[1, 2])
    assert len(first.run()) == 4 and first.run() == [] and len(read(first.ledger)) == 4
    longer = _scripted(tmp_path, SCRIPT, tasks=[1, 2], seeds=[1, 2, 3, 4])  # same ledger: task 1 ended at seed 2
    assert sorted((r["params"]["task"], r["seed"]) for r in longer.run()) == [(2, 3), (2, 4)]
    assert longer.run() == [] and len(read(longer.ledger)) == 6


def test_capped_and_failed_runs_hold_their_task_are_flagged_and_retried_by_the_next_call(tmp_path):
    script = {(5, 1): ("capped", 0.0, 0.3), (5, 2): ("finished", 0.0, 0.0)}  # task 6's seed 1 raises: failed
    study = _scripted(tmp_path, script, tasks=[5, 6], seeds=[1, 2], max_time="00:00:05:00")
    rows = study.run(workers=2)  # each tried once; a capped run at val error 0 is no zero of the protocol
    assert sorted((r["params"]["task"], r["seed"], r["status"]) for r in rows) == [(5, 1, "capped"), (6, 1, "failed")]
    report = study.status()
    assert report["capped"] == ["{'task': 5} seed 1"] and report["failed"] == ["{'task': 6} seed 1"]
    assert report["waiting"] == ["{'task': 5} seed 2", "{'task': 6} seed 2"] and report["skipped"] == []
    lines = babi_markdown(read(study.ledger)).splitlines()
    assert lines[2] == "| 5 | 30.0 | 30.0 +- 0.0 | 1 (1 capped) | 60 | 5-min cap | 2 s | 0.3 |" and len(lines) == 5
    study.script = {(5, 1): ("finished", 0.01, 0.02), (5, 2): ("finished", 0.0, 0.0), (6, 1): ("finished", 0.0, 0.0)}
    assert sorted((r["params"]["task"], r["seed"]) for r in study.run()) == [(5, 1), (5, 2), (6, 1)]
    lines = babi_markdown(read(study.ledger)).splitlines()  # the finished rerun of seed 1 replaces its capped row
    assert lines[2] == "| 5 | 0.0 | 1.0 +- 1.4 | 2 | 200 | epoch budget | 2 s | 0.3 |"


def test_force_is_refused():
    with pytest.raises(ValueError, match="another name"):
        BabiStudy().run(force=True)


def test_authors_schedule_on_hand_written_rows(tmp_path):
    config = tmp_path / "babi.yaml"
    config.write_text("seed_everything: 1\n")
    runs = BabiStudy(fit_config=str(config), tasks=[1, 2], seeds=[1, 2, 3]).planned()  # empty ledger: the first seeds
    assert [(r.params["task"], r.seed) for r in runs] == [(1, 1), (2, 1)]
    every = fit_study.FitStudy.planned(BabiStudy(fit_config=str(config), tasks=[1, 2], seeds=[1, 2, 3]))
    rows = [dict(_row(1, 1, 0.0, 0.0), overrides=list(every[0].overrides), config_digest=every[0].config_digest),
            dict(_row(2, 1, 0.5, 0.5), overrides=list(every[3].overrides), config_digest=every[3].config_digest),
            _row(2, 2, 0.0, 0.0)]  # another config's row (another digest) does not count  # fmt: skip
    schedule = authors_schedule(every, rows)
    seeds = {state: [(r.params["task"], r.seed) for r in runs] for state, runs in schedule.items()}
    assert seeds == {"planned": [(1, 1), (2, 1), (2, 2)], "waiting": [(2, 3)], "skipped": [(1, 2), (1, 3)]}
    tried = authors_schedule(every, rows, tried=frozenset({every[4].key}))
    assert [(r.params["task"], r.seed) for r in tried["waiting"]] == [(2, 2), (2, 3)]


ROWS = [
    _row(1, 2, 0.01, 0.02, epochs=200, seconds=30.0),
    _row(1, 1, 0.0, 0.0, epochs=4, seconds=50.0),
    _row(2, 1, 0.1, 0.08, "capped", 7, "iclr17 fit --trainer.max_time=00:00:55:00", 3300.0),
    _row(2, 2, 0.2, 0.16, epochs=200),
    _row(5, 1, 0.9, 0.9, "failed"),
]


def test_best_by_validation_breaks_ties_by_the_lowest_seed():
    runs = [_row(1, 3, 0.02, 0.5), _row(1, 2, 0.01, 0.4), _row(1, 1, 0.01, 0.3)]
    assert best_by_validation(runs)["seed"] == 1
    assert best_by_validation(runs[:2])["seed"] == 2


def test_stopped_by_reads_the_cap_and_the_epoch_budget_from_the_command():
    assert stopped_by(_row(1, 1, 0.1, 0.1, "capped", command="x --trainer.max_time=00:00:05:00")) == "5-min cap"
    assert stopped_by(_row(1, 1, 0.1, 0.1, "capped", command="x --trainer.max_time 00:01:30:00")) == "90-min cap"
    assert stopped_by(_row(1, 1, 0.1, 0.1, "capped")) == "time cap"
    assert stopped_by(_row(1, 1, 0.0, 0.1, epochs=200)) == "epoch budget"  # a full run that ends at 0
    assert stopped_by(_row(1, 1, 0.0, 0.1, epochs=130)) == "early stop, val error 0 (ours)"
    assert stopped_by(_row(1, 1, 0.05, 0.1, epochs=3, command="x --trainer.max_epochs=3")) == "epoch budget"
    assert stopped_by(_row(1, 1, 0.05, 0.1, epochs=3)) == "ended early"
    assert epoch_budget("iclr17 fit --trainer.max_epochs 5 --trainer.max_epochs=7") == 7 and epoch_budget("x") == 200


def test_task_summaries_leave_failed_runs_out_and_count_capped_ones():
    summaries = task_summaries(ROWS)
    assert list(summaries) == [1, 2]
    assert summaries[1]["best"]["seed"] == 1 and summaries[1]["seeds"] == 2 and summaries[1]["capped"] == 0
    assert summaries[1]["mean"] == pytest.approx(np.mean([0.02, 0.0]))
    assert summaries[1]["std"] == pytest.approx(np.std([0.02, 0.0], ddof=1))
    assert summaries[2]["best"]["seed"] == 1 and summaries[2]["seeds"] == 2 and summaries[2]["capped"] == 1


def test_the_table_on_hand_written_rows():
    lines = babi_markdown(ROWS).splitlines()
    assert lines[0] == (
        "| task | ours: selected by val (paper protocol) | ours: mean +- std over seeds | seeds | epochs run | "
        "stopped by | wall time | paper (EntNet) |"
    )
    # task 1: selected is seed 1 (val 0, test 0, 4 epochs, 50 s); errors 0 and 2%: mean 1.0, std sqrt(2) = 1.4
    assert lines[2] == "| 1 | 0.0 | 1.0 +- 1.4 | 2 | 4 | early stop, val error 0 (ours) | 50 s | 0.0 |"
    # task 2: selected is the capped seed 1 (val 0.1 < 0.2); errors 8 and 16%: mean 12.0, std sqrt(32) = 5.7
    assert lines[3] == "| 2 | 8.0 | 12.0 +- 5.7 | 2 (1 capped) | 7 | 55-min cap | 55 min | 0.1 |"
    # over tasks 1 and 2: selected (0 + 8) / 2, means (1 + 12) / 2, paper (0.0 + 0.1) / 2; task 5's failed run is out
    assert lines[4] == "| mean (2 tasks) | 4.00 | 6.50 | | | | | 0.05 |"
    assert lines[5] == "| failed (> 5%) | 1 (2) | 1 (2) | | | | | 0 |"
    assert len(lines) == 6


def test_the_all_tasks_summary_takes_each_task_from_the_first_study_that_ran_it():
    def at(study, *args, **kwargs):
        return _row(*args, **kwargs) | {"study": study}

    long, short = "entnet_babi10k", "entnet_babi10k_5min"
    rows = [
        at(short, 2, 1, 0.20, 0.30), at(short, 5, 1, 0.01, 0.02), at(short, 16, 1, 0.5, 0.55),
        at(long, 2, 1, 0.02, 0.04), at(long, 2, 2, 0.01, 0.08, status="capped"),  # seed 2 selected by validation
        at(long, 16, 1, 0.4, 0.45), at(long, 16, 2, 0.0, 0.0, status="failed"),  # failed: never selected
    ]  # fmt: skip
    errors = {2: 8.0, 16: 45.0, 5: 2.0}  # tasks 2 and 16 from the long schedule, 5 from the short one
    paper = [PAPER_TABLE2_ENTNET[t] for t in errors]
    assert all_tasks_summary(rows) == (
        "3 tasks (2 from the paper-schedule study, 1 from the 5-minute study), each the run selected by validation: "
        f"mean test error {np.mean(list(errors.values())):.2f}%, failed (> 5%) 2 (2, 16); paper on the same tasks: "
        f"mean {np.mean(paper):.2f}%, failed 0"
    )
    assert all_tasks_summary(rows[:3]).startswith("3 tasks (3 from the 5-minute study), each")
    assert all_tasks_summary([]) == "(no runs)"
    with pytest.raises(ValueError, match=r"rows of studies \['entnet_babi'\]: not bAbI schedules"):
        all_tasks_summary([_row(1, 1, 0.0, 0.0)])


def test_a_tasks_summary_is_its_selected_run_and_every_seed():
    capped = "iclr17 fit --trainer.max_time=00:00:55:00"
    rows = [
        _row(2, 3, 0.010, 0.020, status="capped", command=capped), _row(2, 1, 0.030, 0.045),
        _row(2, 2, 0.005, 0.013), _row(2, 4, 0.0, 0.0, status="failed"), _row(5, 1, 0.2, 0.25),
    ]  # fmt: skip
    # the lowest validation error among seeds 1-3 (the failed seed 4 is no run): seed 2
    selected = "1.3% (seed 2 of 3, selected by validation; by seed 1, 2, 3: 4.5%, 1.3%, 2.0% capped)"
    assert task_summary(rows, 2) == selected
    assert task_summary(rows, 5) == "25.0% (seed 1, the one run)"
    assert task_summary(rows[:1], 2) == "2.0% (seed 3, the one run, capped)"
    assert task_summary(rows, 7) == "(no runs of task 7)"


def test_the_paper_column_is_the_papers_table_2():
    assert len(PAPER_TABLE2_ENTNET) == 20 and PAPER_TABLE2_ENTNET[3] == 4.1 and PAPER_TABLE2_ENTNET[19] == 2.3
    assert round(sum(PAPER_TABLE2_ENTNET.values()) / 20, 1) == 0.5  # the paper's mean error, 0.5%


def test_planned_runs_one_task_per_run_and_digest_the_config_content(tmp_path):
    config = tmp_path / "babi.yaml"
    config.write_text("seed_everything: 1\n")
    study = BabiStudy(fit_config=str(config), tasks=[2, 5], seeds=[1, 3], ledger_dir=str(tmp_path))
    every = fit_study.FitStudy.planned(study)
    assert [(r.params["task"], r.seed) for r in every] == [(2, 1), (2, 3), (5, 1), (5, 3)]
    assert [(r.params["task"], r.seed) for r in study.planned()] == [(2, 1), (5, 1)]  # an empty ledger: first seeds
    assert every[1].overrides == ("--data.init_args.tasks=[2]", "--seed_everything=3")
    assert {r.config_digest for r in every} == {hashlib.sha256(b'{"seed_everything": 1}').hexdigest()[:16]}
    config.write_text("# a comment, and another layout: the same config\nseed_everything:   1  # first\n")
    assert [r.key for r in fit_study.FitStudy.planned(study)] == [r.key for r in every]
    config.write_text("seed_everything: 2\n")
    changed = study.planned()
    assert changed[0].config_digest != every[0].config_digest and changed[0].key != every[0].key
    quick = BabiStudy(fit_config=str(config), tasks=[2], stop_at_zero_val_error=True).planned()[0]
    assert quick.overrides == ("--data.init_args.tasks=[2]", STOP_AT_ZERO_VAL_ERROR, "--seed_everything=1")
    assert quick.key != changed[0].key and quick.params == changed[0].params
    assert BabiStudy().tasks == list(range(1, 21)) and BabiStudy().seeds == [1]
    assert BabiStudy.cli_name() == "entnet-babi"


def test_the_committed_paper_schedule_ledger():
    rows = read(LEDGERS / "entnet_babi10k.jsonl")[:7]  # the migrated rows; the ledger grows as the study runs
    assert len(rows) == 7 and {r["status"] for r in rows if r["params"]["task"] in (2, 17, 18)} == {"capped"}
    table = babi_markdown(rows)
    # results/entnet_babi10k_paper_schedule_seed1.json at 978148c: task 2 test_error 0.014, 193 epochs, 3302.6 s,
    # its command's --trainer.max_time=00:00:55:00; task 13 val_error 0.0, test_error 0.004, 130 epochs, 776.9 s
    assert "| 2 | 1.4 | 1.4 +- 0.0 | 1 (1 capped) | 193 | 55-min cap | 55 min | 0.1 |" in table
    assert "| 13 | 0.4 | 0.4 +- 0.0 | 1 | 130 | early stop, val error 0 (ours) | 13 min | 1.3 |" in table
    assert "| failed (> 5%) | 3 (14, 16, 19) |" in table


def test_the_committed_five_minute_ledger():
    rows = read(LEDGERS / "entnet_babi10k_5min.jsonl")[:19]  # the migrated rows; the ledger may grow
    assert len(rows) == 19 and sum(r["status"] == "capped" for r in rows) == 11
    table = babi_markdown(rows)
    # results/entnet_babi10k_seed1_5min.json at 978148c: the 19 test errors, and its summary's best_by_val
    errors = [0.2639999985694885, 0.5299999713897705, 0.5820000171661377, 0.009999999776482582,
              0.03400000184774399, 0.06800000369548798, 0.06300000101327896, 0.006000000052154064,
              0.009999999776482582, 0.0, 0.00800000037997961, 0.0010000000474974513, 0.0, 0.0020000000949949026,
              0.0, 0.0, 0.0, 0.0, 0.0]  # fmt: skip
    assert f"{100 * np.mean(errors):.2f}" == "8.31" and "| mean (19 tasks) | 8.31 | 8.31 |" in table
    assert "| failed (> 5%) | 5 (2, 13, 14, 16, 19) |" in table
    assert "| 2 | 26.4 | 26.4 +- 0.0 | 1 (1 capped) | 8 | 5-min cap | 5 min | 0.1 |" in table


@pytest.mark.parametrize(
    ("name", "tasks", "seeds", "stop"), [("entnet_babi10k", 19, 10, False), ("entnet_babi10k_5min", 19, 1, True)]
)
def test_the_study_configs_parse_and_plan(name, tasks, seeds, stop):
    study = shipped_study(BabiStudy, name, arxiv="1612.03969")
    assert study.name == name and len(fit_study.FitStudy.planned(study)) == tasks * seeds
    assert study.stop_at_zero_val_error is stop  # the paper schedule: the authors' full-length runs
    assert 3 not in study.tasks  # its 10k training file is missing from our data


def test_the_fit_config_has_no_early_stop_and_the_switch_adds_ours(fixture_data_root, monkeypatch, tmp_path):
    assert "callbacks" not in yaml.safe_load((REPO_ROOT / "configs" / "entnet" / "babi10k.yaml").read_text())["trainer"]
    monkeypatch.setenv("ICLR17_DATA_DIR", str(fixture_data_root))
    fits = []
    monkeypatch.setattr(fit_study, "cli", lambda args, real=fit_study.cli: fits.append(real(args)) or fits[-1])
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.accelerator=cpu"]  # one epoch
    study = BabiStudy(tasks=[1], stop_at_zero_val_error=True, extra=short, ledger_dir=str(tmp_path))
    outcome = study.execute(study.planned()[0], tmp_path / "run")
    assert outcome.status == "finished" and outcome.steps == 2 and outcome.metrics["epochs"] == 1
    assert 0.0 <= outcome.metrics["test/error"] <= 1.0 and 0.0 <= outcome.metrics["val/error"] <= 1.0
    (stop,) = [c for c in fits[0].trainer.callbacks if isinstance(c, EarlyStopping)]
    assert stop.monitor == "val/error" and stop.stopping_threshold == 1e-06 and stop.patience == 1000
