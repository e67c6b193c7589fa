"""A study's results ledger: JSON lines, one object per finished run, append-only.

Every row has the keys of ``ROW_KEYS`` (documented there, the one place); ``append`` writes a row as one line with
one ``write`` call under an exclusive ``flock``, so two processes appending to the same ledger never interleave, and
``read`` refuses a line that is not a JSON object with every key (a line cut by a crash included), naming the
file and the line. ``run_key`` is what makes a study resumable: a run whose key is in the ledger is done.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

ROW_KEYS = {
    "study": "the study's name, e.g. entnet_world_model",
    "config": "the config file the run trained, as given (a path or a shipped config's name), or what stands for it",
    "config_digest": "sha256 (16 hex digits) of what the config said when the run started: a YAML config's "
    "content (config_file_digest: comments and layout do not count), a generated config's text (with a "
    "FitStudy's evaluations, of that digest and the evaluations)",
    "params": "the run's coordinates in the study by name (e.g. task, lr): what its table groups and sorts by",
    "overrides": "the command-line overrides on top of the config, in order",
    "seed": "the run's seed_everything",
    "commit": "the git commit of the code that ran",
    "dirty": "whether the working tree had uncommitted changes to tracked files",
    "machine": "the machine and how it was shared (threads, other jobs beside the run)",
    "command": "the exact command, to rerun the run by hand",
    "status": "finished (the full budget), capped (cut by a time cap: never shown as a full run) or failed",
    "steps": "optimizer steps taken",
    "fit_seconds": "wall-clock seconds of the fit (of a resumed fit: its segments' seconds up to their last "
    "checkpoints, and the last segment's)",
    "metrics": "the final metrics by name (validation and test of the final weights; a FitStudy with several "
    "evaluations keeps each one's under evaluations.<name>; a resumed fit lists its segments under segments)",
}
STATUSES = ("finished", "capped", "failed")


class LedgerError(ValueError):
    """A ledger line or row that is not what ``ROW_KEYS`` documents."""


def run_key(config_digest: str, overrides: Iterable[str], seed: int) -> str:
    """The identity of a run within a study: its config's digest, its overrides (in order) and its seed."""
    text = json.dumps([config_digest, list(overrides), int(seed)])
    return digest(text)


def check_row(row: Any, where: str) -> dict[str, Any]:
    """``row`` if it is a ledger row, else a :class:`LedgerError` naming ``where`` and what is wrong."""
    if not isinstance(row, dict):
        raise LedgerError(f"{where}: a ledger row is a JSON object, got {type(row).__name__}")
    missing = sorted(set(ROW_KEYS) - set(row))
    if missing:
        raise LedgerError(f"{where}: missing key(s) {', '.join(missing)} (see iclr17.studies.ledger.ROW_KEYS)")
    if row["status"] not in STATUSES:
        raise LedgerError(f"{where}: status must be one of {', '.join(STATUSES)}, got {row['status']!r}")
    return row


def append(path: str | Path, row: dict[str, Any]) -> None:
    """Append ``row`` as one line: a single ``write`` under an exclusive lock, then ``fsync``."""
    line = json.dumps(check_row(row, f"{path} (new row)"), allow_nan=True) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        written = os.write(fd, line.encode())
        if written != len(line.encode()):
            raise OSError(f"{path}: wrote {written} of {len(line.encode())} bytes of a ledger row")
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def read(path: str | Path) -> list[dict[str, Any]]:
    """Every row of the ledger at ``path`` (none if it does not exist), in order; a bad line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text()
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}"
        if not line.strip():
            raise LedgerError(f"{where}: empty line (a ledger has one JSON object per line)")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise LedgerError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from err
        rows.append(check_row(row, where))
    if text and not text.endswith("\n"):
        raise LedgerError(f"{path}:{len(rows)}: the last line has no newline (a write was cut short)")
    return rows


def done_keys(rows: Iterable[dict[str, Any]]) -> set[str]:
    """The run keys of the rows that need no rerun: finished runs (a capped or failed run is tried again)."""
    return {row_key(r) for r in rows if r["status"] == "finished"}


def row_key(row: dict[str, Any]) -> str:
    """The run key of a ledger row."""
    return run_key(row["config_digest"], row["overrides"], row["seed"])


def digest(text: str | bytes) -> str:
    """The 16-hex-digit sha256 digest that ``config_digest`` holds."""
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:16]


def config_text_digest(text: str | bytes) -> str:
    """The digest of a YAML config's content: its text parsed, then written as JSON with sorted keys, so that
    comments and layout do not count and values do."""
    return digest(json.dumps(yaml.safe_load(text), sort_keys=True))


def config_file_digest(path: str | Path) -> str:
    """The ``config_digest`` of the YAML config at ``path`` (:func:`config_text_digest` of its text): editing a
    comment or the layout keeps its runs done, changing a value does not. A file that is not YAML is an error
    naming it."""
    try:
        return config_text_digest(Path(path).read_text())
    except yaml.YAMLError as err:
        raise LedgerError(f"{path}: not a YAML config ({err})") from err


def current_runs(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The row each table shows for a run (its params and seed): the last finished row, else the last capped one;
    failed rows never. A rerun at a later commit, or a finished run after a capped one, replaces the earlier row.
    Rows come back in the ledger order of their runs' first rows."""
    chosen: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["status"] == "failed":
            continue
        run = json.dumps([row["params"], row["seed"]], sort_keys=True)
        if run not in chosen or row["status"] == "finished" or chosen[run]["status"] == "capped":
            chosen[run] = row
    return list(chosen.values())


def per_evaluation(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with each row of several evaluations split into one row per evaluation, in their order: its
    ``params`` gain ``"evaluation": name`` and its metrics are the fit's (e.g. ``epochs``) and that evaluation's.
    Rows without evaluations are kept as they are."""
    split = []
    for row in rows:
        evaluations = row["metrics"].get("evaluations")
        if not evaluations:
            split.append(row)
            continue
        shared = {k: v for k, v in row["metrics"].items() if k != "evaluations"}
        split += [
            row | {"params": row["params"] | {"evaluation": name}, "metrics": shared | metrics}
            for name, metrics in evaluations.items()
        ]
    return split
