"""The studies runner: resumable, failure-tolerant, the same rows from local workers and submitit jobs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from iclr17.studies import runner
from iclr17.studies.ledger import read
from tests.conftest import REPO_ROOT
from tests.studies.toy_study import ToyStudy


def _executions(marks) -> list[int]:
    return sorted(int(p.name.split("-")[0]) for p in marks.iterdir())


def _study(tmp_path, **kwargs) -> ToyStudy:
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    return ToyStudy(marks=str(marks), ledger_dir=str(tmp_path / "ledgers"), runs_dir=str(tmp_path / "runs"), **kwargs)


def test_runs_land_in_the_ledger_once_and_a_rerun_skips_them(tmp_path):
    study = _study(tmp_path, seeds=[1, 2, 3])
    rows = study.run(workers=2)
    assert sorted((r["seed"], r["metrics"]["square"], r["status"]) for r in rows) == [
        (1, 1, "finished"), (2, 4, "finished"), (3, 9, "finished")
    ]  # fmt: skip
    row = read(study.ledger)[0]
    assert len(row["commit"]) == 40 and isinstance(row["dirty"], bool) and "thread" in row["machine"]
    assert study.run(workers=2) == [] and _executions(tmp_path / "marks") == [1, 2, 3]
    assert study.status() == {"done": ["{'x': 1} seed 1", "{'x': 2} seed 2", "{'x': 3} seed 3"], "missing": [],
                              "capped": [], "failed": []}  # fmt: skip
    study.run(force=True)
    assert _executions(tmp_path / "marks") == [1, 1, 2, 2, 3, 3] and len(read(study.ledger)) == 6


def test_a_run_that_raises_and_a_worker_that_dies_are_failed_rows_and_the_study_goes_on(tmp_path):
    study = _study(tmp_path, seeds=[1, 2, 3, 4], raise_on=2, die_on=3)
    rows = {r["seed"]: r for r in study.run(workers=2)}
    assert {s: r["status"] for s, r in rows.items()} == {1: "finished", 2: "failed", 3: "failed", 4: "finished"}
    assert rows[2]["metrics"]["error"] == "RuntimeError: seed 2 raises"
    assert rows[3]["metrics"]["error"] == "worker process died with exit code 3"
    report = study.status()
    assert len(report["done"]) == 2 and len(report["failed"]) == 2
    retry = _study(tmp_path, seeds=[1, 2, 3, 4])  # failed runs are tried again, finished ones are not
    assert sorted(r["seed"] for r in retry.run()) == [2, 3]


def test_local_workers_record_the_source_of_the_code_their_forkserver_imported_not_the_checkout_s_later_one(
    tmp_path, monkeypatch
):
    first, later = ("a" * 40, False), ("b" * 40, True)
    monkeypatch.setattr(runner, "_forkserver_source", None)  # as in a process whose forkserver has not started
    monkeypatch.setattr(runner, "source_commit", lambda: first)
    study = _study(tmp_path, seeds=[1, 2], die_on=2)
    rows = {r["seed"]: r for r in study.run(workers=2)}
    assert {(r["commit"], r["dirty"]) for r in rows.values()} == {first}  # the finished row and the dead worker's
    assert rows[1]["metrics"]["source"] == list(first)  # what the run itself sees (a resumed fit's segments)
    assert rows[2]["metrics"]["error"] == "worker process died with exit code 3"
    monkeypatch.setattr(runner, "source_commit", lambda: later)  # a commit while the process's forkserver lives
    (tmp_path / "again").mkdir()
    (row,) = _study(tmp_path / "again", seeds=[3]).run()
    assert (row["commit"], row["dirty"]) == first and row["metrics"]["source"] == list(first)


def test_a_local_worker_starts_with_every_module_of_the_package_imported_so_checkout_edits_cannot_reach_it(tmp_path):
    """The forkserver imported the package when the study started: a worker reads no module from the checkout (it
    used to import the CLI's chain and late imports from disk, mixing edited modules with the forkserver's)."""
    (row,) = _study(tmp_path, seeds=[1], report_modules=True).run(workers=1)
    imported = set(row["metrics"]["imported"])
    late = {  # imported by no study module at import time: by the CLI's script, by a function, by a class path
        "iclr17.__main__", "iclr17.studies.catalog", "iclr17.studies.results_tables", "iclr17.studies.halting",
        "iclr17.callbacks.hessian.figures", "iclr17.callbacks.halting_time.figures", "iclr17.demo",
        "iclr17.modules.entnet.module", "iclr17.datamodules.babi",
    }  # fmt: skip
    assert late <= imported, sorted(late - imported)
    on_disk = {  # every module file of two subpackages, listed from the file system
        f"iclr17.{package}.{path.stem}" for package in ("studies", "functional")
        for path in (REPO_ROOT / package).glob("*.py") if path.stem != "__init__"
    }  # fmt: skip
    assert on_disk <= imported, sorted(on_disk - imported)


def test_a_module_that_fails_to_import_is_left_out_of_the_preload_with_a_warning(tmp_path, monkeypatch):
    (tmp_path / "half_edited.py").write_text("raise RuntimeError('half edited')\n")  # would stop the forkserver
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(UserWarning, match=r"half_edited \(RuntimeError: half edited\)"):
        preload = runner._forkserver_preload("half_edited")
    assert "half_edited" not in preload and {"iclr17.__main__", "iclr17.studies.runner"} <= set(preload)


def test_a_study_killed_midway_resumes_and_skips_its_finished_runs(tmp_path):
    study = _study(tmp_path, seeds=[1, 2, 3, 4], kill_group_on=3)
    script = (
        "from tests.studies.toy_study import ToyStudy; "
        f"ToyStudy(seeds=[1, 2, 3, 4], kill_group_on=3, marks={study.marks!r}, ledger_dir={study.ledger_dir!r}, "
        f"runs_dir={study.runs_dir!r}).run(workers=1)"
    )
    killed = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, start_new_session=True, timeout=300)
    assert killed.returncode == -9  # the study's own process was killed, not ended
    assert [r["seed"] for r in read(study.ledger)] == [1, 2]
    resumed = _study(tmp_path, seeds=[1, 2, 3, 4])
    assert sorted(r["seed"] for r in resumed.run(workers=2)) == [3, 4]
    assert _executions(tmp_path / "marks") == [1, 2, 3, 3, 4]


def test_the_submitit_engine_runs_a_two_run_study_through_its_local_executor(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the jobs import the toy study from tests/
    study = _study(tmp_path, seeds=[5, 6])
    rows = study.run(engine="submitit", cluster="local", threads=1, timeout_min=10)
    assert sorted((r["seed"], r["metrics"]["square"], r["status"]) for r in rows) == [
        (5, 25, "finished"), (6, 36, "finished")
    ]  # fmt: skip
    assert all("submitit local" in r["machine"] for r in rows)
    assert study.run(engine="submitit", cluster="local") == []


def test_bad_arguments_are_refused_before_any_run(tmp_path):
    study = _study(tmp_path)
    with pytest.raises(ValueError, match="workers and threads must be >= 1"):
        study.run(workers=0)
    with pytest.raises(ValueError, match="engine must be local or submitit, got 'slurm'"):
        study.run(engine="slurm")
    assert not study.ledger.exists()


def test_a_checkout_is_dirty_for_changed_sources_not_for_changed_records(tmp_path):
    from iclr17.studies.runner import source_commit

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "results" / "ledgers").mkdir(parents=True)
    files = {name: tmp_path / name for name in ("model.py", "results/ledgers/runs.jsonl", "RESULTS.md")}
    for path in files.values():
        path.write_text("first\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    files["results/ledgers/runs.jsonl"].write_text("first\nsecond\n")  # another run's row
    files["RESULTS.md"].write_text("regenerated\n")
    assert source_commit(tmp_path) == (head.strip(), False)
    files["model.py"].write_text("changed\n")
    assert source_commit(tmp_path) == (head.strip(), True)
