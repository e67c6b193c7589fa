"""scripts/gpu_machine.sh: its plan names real studies with arguments they accept, and `merge` appends exactly the
rows a committed ledger lacks."""

import shutil
import subprocess
from pathlib import Path

import pytest

from iclr17.__main__ import main
from iclr17.studies.catalog import STUDIES

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_machine.sh"


def plan_entries() -> list[list[str]]:
    """The script's PLAN entries as words, read by bash itself."""
    printed = subprocess.run(
        ["bash", "-c", f"source <(sed -n '/^PLAN=(/,/^)/p' {SCRIPT}); printf '%s\\n' \"${{PLAN[@]}}\""],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [line.split() for line in printed.splitlines()]


def test_plan_is_not_empty_and_every_entry_parses(monkeypatch, capsys):
    entries = plan_entries()
    assert len(entries) >= 5
    monkeypatch.chdir(ROOT)
    for study, config, workers, *extra in entries:
        assert study in STUDIES, study
        assert (ROOT / config).is_file(), config
        assert int(workers) >= 1
        main([study, "--config", config, *extra, "status"])  # construction validates every argument
        assert " done, " in capsys.readouterr().out


def run_merge(repo: Path, returned: Path) -> str:
    return subprocess.run(
        ["bash", str(repo / "scripts" / "gpu_machine.sh"), "merge", str(returned)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo" / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, tmp_path / "repo" / "scripts")
    ledgers = tmp_path / "repo" / "results" / "ledgers"
    ledgers.mkdir(parents=True)
    (ledgers / "a.jsonl").write_text('{"row": 1}\n{"row": 2}\n')
    return tmp_path / "repo"


def test_merge_appends_only_the_rows_the_committed_ledger_lacks(repo, tmp_path):
    returned = tmp_path / "returned"
    returned.mkdir()
    (returned / "a.jsonl").write_text('{"row": 1}\n{"row": 2}\n{"row": 3}\n{"row": 4}\n')
    (returned / "b.jsonl").write_text('{"row": 5}\n')  # a study with no committed ledger yet
    (returned / "c.jsonl").write_text("")  # a planned study that finished nothing
    ledgers = repo / "results" / "ledgers"
    (ledgers / "a.jsonl").write_text('{"row": 1}\n{"row": 2}\n{"row": 9}\n')  # a row appended here meanwhile

    out = run_merge(repo, returned)
    assert "a.jsonl: 2 new row(s)" in out and "b.jsonl: 1 new row(s)" in out
    assert (ledgers / "a.jsonl").read_text() == '{"row": 1}\n{"row": 2}\n{"row": 9}\n{"row": 3}\n{"row": 4}\n'
    assert (ledgers / "b.jsonl").read_text() == '{"row": 5}\n'
    assert not (ledgers / "c.jsonl").exists()

    run_merge(repo, returned)  # merging the same folder again changes nothing
    assert (ledgers / "a.jsonl").read_text().count("\n") == 5
    assert (ledgers / "b.jsonl").read_text() == '{"row": 5}\n'
