"""scripts/gpu_machine.sh: its plan names real studies with arguments they accept and fits the machine, `pack` and
`run` refuse what would make rows lie or fail (uncommitted code, a copy that is not the packed commit, missing data)
before anything starts, and `merge` appends exactly the complete rows a committed ledger lacks."""

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from iclr17.__main__ import main
from iclr17.studies.catalog import STUDIES

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_machine.sh"


def script_value(bash_expression: str) -> str:
    """A value of the script's settings (the lines from MAX_WORKERS to the end of PLAN), printed by bash itself."""
    return subprocess.run(
        ["bash", "-c", f"source <(sed -n '/^MAX_WORKERS=/,/^)/p' {SCRIPT}); printf '%s\\n' {bash_expression}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def plan_entries() -> list[list[str]]:
    """The script's PLAN entries as words."""
    return [line.split() for line in script_value('"${PLAN[@]}"').splitlines()]


def test_plan_fits_the_machine():
    assert sum(int(workers) for _, _, workers, *_ in plan_entries()) <= int(script_value("$MAX_WORKERS")) <= 16


def test_plan_is_not_empty_and_every_entry_parses(monkeypatch, capsys):
    entries = plan_entries()
    assert entries
    monkeypatch.chdir(ROOT)
    for study, config, workers, *extra in entries:
        assert study in STUDIES, study
        assert (ROOT / config).is_file(), config
        assert int(workers) >= 1
        main([study, "--config", config, *extra, "status"])  # construction validates every argument
        assert " done, " in capsys.readouterr().out


def call(repo: Path, *args: str, check: bool = True, env: dict[str, str] | None = None):
    return subprocess.run(
        ["bash", str(repo / "scripts" / "gpu_machine.sh"), *args], cwd=repo, capture_output=True, text=True,
        check=check, env=env,
    )  # fmt: skip


def run_merge(repo: Path, returned: Path) -> str:
    return call(repo, "merge", str(returned)).stdout


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


def test_merge_leaves_out_a_line_cut_short_and_lines_that_are_not_rows(repo, tmp_path):
    returned = tmp_path / "returned"
    returned.mkdir()
    # a killed run's half-written row at the end, and a line that is not a JSON object
    (returned / "a.jsonl").write_text('{"row": 1}\n{"row": 3}\n[1, 2]\n{"row": 4}\n{"row": 5, "metr')
    ledgers = repo / "results" / "ledgers"
    (ledgers / "a.jsonl").write_text('{"row": 1}\n{"row": 2}')  # no newline at its end

    out = run_merge(repo, returned)
    assert "a.jsonl: 2 new row(s), 2 incomplete line(s) left out" in out
    assert (ledgers / "a.jsonl").read_text() == '{"row": 1}\n{"row": 2}\n{"row": 3}\n{"row": 4}\n'


@pytest.fixture
def packed(repo: Path) -> Path:
    """`repo` as `pack` leaves it on the machine: the commit, its files' checksums and the data (fake files)."""
    whl = repo / ".gpu_pack" / "whl"
    whl.mkdir(parents=True)
    (whl / "COMMIT").write_text("0123456789abcdef0123456789abcdef01234567\n")
    script = "scripts/gpu_machine.sh"
    (whl / "FILES.sha256").write_text(f"{hashlib.sha256((repo / script).read_bytes()).hexdigest()}  {script}\n")
    images = repo / ".gpu_pack" / "data" / "mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    images.parent.mkdir(parents=True)
    images.write_text("data")
    return repo


def refusal(repo: Path, tmp_path: Path, commit: str = "") -> str:
    """`run`'s message when it refuses; it must refuse before it installs or starts anything (OUT not made)."""
    env = {"PATH": "/usr/bin:/bin", "ICLR17_COMMIT": commit}
    done = call(repo, "run", str(tmp_path / "out"), "5", check=False, env=env)
    assert done.returncode != 0 and not (tmp_path / "out").exists(), done
    return done.stderr


def test_run_refuses_a_copy_that_is_not_the_packed_commit(packed, tmp_path):
    with (packed / "scripts" / "gpu_machine.sh").open("a") as script:
        script.write("# an edit after packing\n")
    assert "this copy differs from commit 0123456789abcdef" in refusal(packed, tmp_path)


def test_run_refuses_another_commit_than_the_packed_one(packed, tmp_path):
    assert "ICLR17_COMMIT=fedcba9 but" in refusal(packed, tmp_path, commit="fedcba9")


def test_run_refuses_missing_data(packed, tmp_path):
    (packed / ".gpu_pack" / "data" / "mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").unlink()
    assert "mnist/MNIST/raw/train-images-idx3-ubyte.gz is missing" in refusal(packed, tmp_path, commit="0123456")


def test_run_refuses_without_a_pack(repo, tmp_path):
    assert "run `pack` here" in refusal(repo, tmp_path)


def test_pack_refuses_uncommitted_changes(repo):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=repo, check=True)
    (repo / "results" / "ledgers" / "a.jsonl").write_text("")
    done = call(repo, "pack", check=False, env={"PATH": "/usr/bin:/bin", "ICLR17_DATA_DIR": str(repo)})
    assert done.returncode != 0 and "uncommitted changes" in done.stderr
    assert not (repo / ".gpu_pack").exists()
