"""The results ledger: rows round-trip, bad lines are refused by file and line, two processes never interleave."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from iclr17.studies.fit_study import FitStudy
from iclr17.studies.ledger import (
    ROW_KEYS,
    LedgerError,
    append,
    config_file_digest,
    current_runs,
    digest,
    done_keys,
    read,
    run_key,
)
from tests.conftest import REPO_ROOT
from tests.studies.study_configs import shipped_study


def _row(seed: int = 1, status: str = "finished", payload: str = "") -> dict:
    return {
        "study": "toy", "config": "configs/entnet/world_model.yaml", "config_digest": "ab" * 8, "params": {"lr": 0.1},
        "overrides": ["--a=1", payload], "seed": seed,
        "commit": "0" * 40, "dirty": False, "machine": "test", "command": "iclr17 fit ...", "status": status,
        "steps": 10, "fit_seconds": 1.5, "metrics": {"test/error": 0.25, "val/loss": float("nan")},
    }  # fmt: skip


def test_rows_round_trip_one_line_each(tmp_path):
    path = tmp_path / "ledgers" / "toy.jsonl"
    rows = [_row(1), _row(2, "capped")]
    for row in rows:
        append(path, row)
    assert path.read_text().count("\n") == 2
    back = read(path)
    assert [r["seed"] for r in back] == [1, 2] and back[1]["status"] == "capped"
    assert back[0]["metrics"]["test/error"] == 0.25 and back[0]["metrics"]["val/loss"] != back[0]["metrics"]["val/loss"]


def test_a_missing_ledger_has_no_rows(tmp_path):
    assert read(tmp_path / "none.jsonl") == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"toy.jsonl:2: not valid JSON"),
        ("[1, 2]", r"toy.jsonl:2: a ledger row is a JSON object, got list"),
        (json.dumps({k: v for k, v in _row().items() if k != "commit"}), r"toy.jsonl:2: missing key\(s\) commit"),
        (json.dumps(_row(status="done")), r"toy.jsonl:2: status must be one of finished, capped, failed"),
        ("", r"toy.jsonl:2: empty line"),
    ],
)
def test_a_bad_line_is_refused_with_its_file_and_line(tmp_path, line, message):
    path = tmp_path / "toy.jsonl"
    path.write_text(json.dumps(_row()) + "\n" + line + "\n")
    with pytest.raises(LedgerError, match=message):
        read(path)


def test_a_line_cut_short_is_refused(tmp_path):
    path = tmp_path / "toy.jsonl"
    full = json.dumps(_row())
    path.write_text(full + "\n" + full[: len(full) // 2])
    with pytest.raises(LedgerError, match=r"toy.jsonl:2: not valid JSON"):
        read(path)
    path.write_text(full)  # whole, but without its newline
    with pytest.raises(LedgerError, match="the last line has no newline"):
        read(path)


def test_a_row_without_every_key_is_not_appended(tmp_path):
    path = tmp_path / "toy.jsonl"
    with pytest.raises(LedgerError, match="missing key"):
        append(path, {"study": "toy"})
    assert not path.exists()


def _append_many(path: str, worker: int, n: int) -> None:
    for i in range(n):
        append(path, _row(seed=worker * 1000 + i, payload="x" * 20_000))  # 20 kB lines: larger than a pipe's buffer


def test_two_processes_appending_at_once_never_interleave(tmp_path):
    path = str(tmp_path / "toy.jsonl")
    context = multiprocessing.get_context("fork")  # appends need no fresh interpreter: a fork starts at once
    workers = [context.Process(target=_append_many, args=(path, w, 60)) for w in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    rows = read(path)
    assert sorted(r["seed"] for r in rows) == sorted([1000 + i for i in range(60)] + [2000 + i for i in range(60)])


def test_the_run_key_is_the_config_digest_the_overrides_in_order_and_the_seed():
    key = run_key("c0ffee", ["--a=1", "--b=2"], 1)
    assert key == run_key("c0ffee", ("--a=1", "--b=2"), 1)
    others = {run_key("c0ffee", ["--b=2", "--a=1"], 1), run_key("c0ffee", ["--a=1", "--b=2"], 2)}
    others.add(run_key("decaf0", ["--a=1", "--b=2"], 1))
    assert len({key} | others) == 4
    assert done_keys([_row(1), _row(2, "capped"), _row(3, "failed")]) == {
        run_key(_row(1)["config_digest"], _row(1)["overrides"], 1)
    }


def test_the_digest_is_sha256_of_the_text():
    assert digest("abc") == digest(b"abc") == "ba7816bf8f01cfea"  # FIPS 180-2 test vector, first 16 hex digits


def test_a_config_file_digest_is_of_its_content_not_its_comments_or_layout(tmp_path):
    config = tmp_path / "fit.yaml"
    config.write_text("trainer:\n  max_epochs: 3\n  devices: [0, 1]\nseed_everything: 1\n")
    expected = digest('{"seed_everything": 1, "trainer": {"devices": [0, 1], "max_epochs": 3}}')  # json.dumps by hand
    assert config_file_digest(config) == expected
    config.write_text(
        "# Measured: a header line\nseed_everything: 1  # seed\ntrainer: {devices: [0, 1], max_epochs: 3}\n"
    )
    assert config_file_digest(config) == expected
    for changed in ("seed_everything: 2\n", "trainer:\n  max_epochs: 3\n  devices: [1, 0]\nseed_everything: 1\n"):
        config.write_text(changed)
        assert config_file_digest(config) != expected
    config.write_text("trainer: [unclosed\n")
    with pytest.raises(LedgerError, match=r"fit\.yaml: not a YAML config"):
        config_file_digest(config)


def test_the_committed_rows_of_a_shipped_fit_config_are_done_under_its_content_digest():
    # Lua LeNet with Adam: five seeds finished (RESULTS.md); a digest of the config's text would lose them whenever
    # its header comment changes
    study = shipped_study(FitStudy, "entropy_sgd_table1_lenet_lua_adam")
    planned = study.planned()
    done = done_keys(read(REPO_ROOT / "results" / "ledgers" / f"{study.name}.jsonl"))
    assert [r.seed for r in planned] == [1, 2, 3, 4, 5] and all(r.key in done for r in planned)


def test_the_committed_ledgers_read_and_keep_their_capped_runs():
    paths = sorted((REPO_ROOT / "results" / "ledgers").glob("*.jsonl"))
    assert paths
    for path in paths:
        rows = read(path)
        assert rows and all(set(ROW_KEYS) <= set(r) for r in rows)
    world_model = read(REPO_ROOT / "results" / "ledgers" / "entnet_world_model.jsonl")
    assert any(r["status"] == "capped" for r in world_model) and any(r["status"] == "finished" for r in world_model)


def test_a_table_shows_each_runs_last_finished_row_else_its_last_capped_row():
    def row(seed, status, error, lr=0.1):
        return _row(seed, status) | {"params": {"lr": lr}, "metrics": {"test/error": error}}

    rows = [
        row(1, "capped", 0.5), row(1, "finished", 0.4), row(1, "capped", 0.3),  # a later capped rerun: not shown
        row(2, "finished", 0.2), row(2, "finished", 0.1),  # a rerun replaces
        row(3, "capped", 0.6), row(3, "capped", 0.7), row(3, "failed", 0.0),  # failed never shown
        row(1, "finished", 0.9, lr=0.01),  # other params: another run
    ]  # fmt: skip
    shown = [(r["seed"], r["params"]["lr"], r["status"], r["metrics"]["test/error"]) for r in current_runs(rows)]
    assert shown == [
        (1, 0.1, "finished", 0.4),
        (2, 0.1, "finished", 0.1),
        (3, 0.1, "capped", 0.7),
        (1, 0.01, "finished", 0.9),
    ]
