"""The benchmarks' ledgers: each measured case of ``benchmarks/<name>.py --ledger DIR`` is a row of
``DIR/benchmarks_<name>.jsonl`` (the rows of ``iclr17.studies.ledger``), so that RESULTS.md's benchmark tables are
drawn from recorded measurements (``iclr17.studies.benchmark_tables``), never typed.

A benchmark row: ``study`` ``benchmarks_<name>``; ``config`` the script's path and ``config_digest`` the digest of
its text; ``params`` the case (model, K, N, memory mode, the script's arguments that change the measurement);
``overrides`` empty and ``seed`` 0 (a benchmark is a script, not a config); ``commit``, ``dirty`` and ``machine``
where it ran; ``command`` the command line; ``status`` finished; ``steps`` None; ``fit_seconds`` the seconds the
case's timed calls took together (None where a row was transcribed and they are unknown); ``metrics`` the peer's
time, ours, their ratio and whatever else the script prints for the case.
"""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from iclr17.studies.ledger import ROW_KEYS, append, digest
from iclr17.studies.runner import source_commit

ROOT = Path(__file__).resolve().parent.parent


def ledger_path(benchmark: str, ledger_dir: str | Path = "results/ledgers") -> Path:
    """Where the rows of ``benchmarks/<benchmark>.py`` go."""
    return Path(ledger_dir) / f"benchmarks_{benchmark}.jsonl"


def machine() -> str:
    """This machine for a benchmark row: host, cores, GPU, platform, Python, torch, torch threads and the load."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.node()} ({os.cpu_count()} cores, {device}, {platform.processor() or platform.machine()}), "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch thread(s), load average {load:.1f} when recorded"
    )


def command_line(*env: str) -> str:
    """The command that ran this script: ``python`` and its arguments, after the named environment variables that
    are set (``ICLR17_DATA_DIR`` for a script that reads data)."""
    prefix = [f"{name}={shlex.quote(os.environ[name])}" for name in env if name in os.environ]
    return " ".join([*prefix, "python", shlex.join(sys.argv)])


def record(
    benchmark: str,
    case: dict[str, Any],
    metrics: dict[str, Any],
    command: str,
    ledger_dir: str | Path = "results/ledgers",
    seconds: float | None = None,
    script: str | Path | None = None,
) -> dict[str, Any]:
    """Append one measured case of ``benchmarks/<benchmark>.py`` to its ledger in ``ledger_dir``; return the row.

    Args:
        benchmark: the script's name without ``.py`` (``lightning_overhead``).
        case: what was measured: the row's ``params``.
        metrics: the measurements by name.
        command: the command line (:func:`command_line`).
        ledger_dir: folder of the ledgers.
        seconds: the seconds the case's timed calls took together (``fit_seconds``).
        script: the script's file, whose text is digested (default ``benchmarks/<benchmark>.py`` of this checkout).
    """
    text = Path(script or ROOT / "benchmarks" / f"{benchmark}.py").read_bytes()
    commit, dirty = source_commit()
    values = {
        "study": f"benchmarks_{benchmark}", "config": f"benchmarks/{benchmark}.py", "config_digest": digest(text),
        "params": dict(case), "overrides": [], "seed": 0, "commit": commit, "dirty": dirty, "machine": machine(),
        "command": command, "status": "finished", "steps": None, "fit_seconds": seconds, "metrics": dict(metrics),
    }  # fmt: skip
    row = {key: values[key] for key in ROW_KEYS}
    append(ledger_path(benchmark, ledger_dir), row)
    return row


def record_peer_vs_ours(
    benchmark: str, case: dict[str, Any], times: dict[str, list[float]], ledger_dir: str | Path, script: str | Path
) -> dict[str, Any]:
    """:func:`record` a side-by-side timing: ``times`` holds the peer's runs, then ours (seconds each); the row
    keeps both medians, their ratio (ours / peer) and every run."""
    peer_runs, ours_runs = times.values()
    peer, ours = statistics.median(peer_runs), statistics.median(ours_runs)
    metrics = {"peer_seconds": peer, "ours_seconds": ours, "ratio": ours / peer, "peer_runs": peer_runs,
               "ours_runs": ours_runs}  # fmt: skip
    return record(benchmark, case, metrics, command_line("ICLR17_DATA_DIR"), ledger_dir,
                  seconds=sum(peer_runs) + sum(ours_runs), script=script)  # fmt: skip
