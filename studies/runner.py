"""The studies runner: a study is many runs of one config; each finished run is a row of the study's ledger.

    iclr17 <study> --config configs/studies/<study>.yaml run [--workers 2] [--threads 1] [--force true]
    iclr17 <study> --config configs/studies/<study>.yaml status
    iclr17 <study> --config configs/studies/<study>.yaml table [--figure out.png]

A :class:`Study` says which runs it plans (:meth:`Study.planned`), how one run executes (:meth:`Study.execute`, in
a worker process) and how its table and figure are drawn from ledger rows alone (:meth:`Study.markdown`,
:meth:`Study.figure`, thin wrappers of pure functions). ``run`` skips the runs whose key (config digest,
overrides, seed) has a finished row, unless ``--force``; every run appends its own row as soon as it ends, so a
study killed midway resumes where it stopped. Runs execute in local worker processes (one forked process per
run, ``workers`` at once, ``threads`` torch threads each) or as submitit jobs (SLURM on a cluster; submitit's
local executor elsewhere). A run that raises, or a worker that dies, is recorded as ``failed`` and the study goes
on.

Local workers fork from a forkserver that imported every module of the package when the runner started, so a run
executes the Python code of that moment even if the checkout is edited or committed while the study goes on (the
``iclr17`` console script a worker runs again imports only ``iclr17.__main__``, already imported; another script that
starts a runner is read again from disk, and the C++ kernels are built or loaded from the checkout's sources on
first use in each worker). A YAML config is read when its run starts, so a config edited mid-study reaches the runs
that start after the edit under the digest planned before it: stop the study, edit, and start it again.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import pkgutil
import platform
import subprocess
import sys
import time
import traceback
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from iclr17.studies.ledger import append, done_keys, read, row_key, run_key

Engine = Literal["local", "submitit"]


@dataclass(frozen=True)
class Run:
    """One planned run: what ``run_key`` identifies, plus its coordinates for the table.

    Args:
        config: the config the run trains (a path or a shipped config's name), or what stands for it.
        config_digest: what the config said when the run was planned: a YAML config's content digest
            (:func:`iclr17.studies.ledger.config_file_digest`), a generated config's text digest.
        overrides: command-line overrides on top of the config, in order.
        seed: the run's seed.
        params: the run's coordinates in the study by name (e.g. ``{"task": 2}``).
    """

    config: str
    config_digest: str
    overrides: tuple[str, ...]
    seed: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return run_key(self.config_digest, self.overrides, self.seed)


@dataclass(frozen=True)
class Outcome:
    """What :meth:`Study.execute` returns: ``finished`` or ``capped`` (a time cap cut the run; ``failed`` is
    the runner's), steps taken (None where a study has no optimizer steps), seconds of the fit and the final
    metrics by name."""

    status: Literal["finished", "capped", "failed"]
    steps: int | None
    fit_seconds: float
    metrics: dict[str, Any]


RECORDS = ("results/ledgers", "RESULTS.md")  # what runs write: changes there do not make the sources dirty


# In a local worker process: the source of the code its forkserver imported (the runner process's _forkserver_source).
_pinned_source: tuple[str, bool] | None = None
# In the runner's process: source_commit() at its first local run, when its forkserver started and imported the package
# (the forkserver lives as long as the process, so later local runs fork from that code too).
_forkserver_source: tuple[str, bool] | None = None


def source_commit(root: Path | None = None) -> tuple[str, bool]:
    """``(commit, dirty)`` of the git checkout the package runs from (``root``, default this package's checkout;
    ``$ICLR17_COMMIT`` for an installed wheel, else ``"unknown"``); dirty means uncommitted changes to tracked
    files other than ``RECORDS`` (ledgers that other runs append to while this one runs). In a run's local worker
    process (for the default checkout), the value when the runner's forkserver imported the package: a commit made
    while the runs go is not the code that runs."""
    if root is None and _pinned_source is not None:
        return _pinned_source
    root = root or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".",
             *(f":(exclude){path}" for path in RECORDS)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return commit, bool(changes.strip())
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("ICLR17_COMMIT", "unknown"), False


def machine_description(threads: int, workers: int, engine: str) -> str:
    """The machine and how the run shared it, for the ledger's ``machine`` key."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.node()} ({os.cpu_count()} cores, {device}, {platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, {threads} thread(s) per run, {workers} run(s) at once ({engine})"
    )


class Study(ABC):
    """Many runs of one config, one ledger (``<ledger_dir>/<name>.jsonl``).

    Args:
        name: the ledger's stem (default: the study's ``default_name``).
        ledger_dir: folder of the ledgers.
        runs_dir: folder of the runs' own files (logs, checkpoints), one sub-folder per run key.
    """

    default_name: ClassVar[str]

    def __init__(self, name: str | None = None, ledger_dir: str = "results/ledgers", runs_dir: str = "runs/studies"):
        self.name = name or self.default_name
        self.ledger_dir, self.runs_dir = ledger_dir, runs_dir

    @property
    def ledger(self) -> Path:
        return Path(self.ledger_dir) / f"{self.name}.jsonl"

    @abstractmethod
    def planned(self) -> list[Run]:
        """Every run of the study, in the order they should run."""

    @abstractmethod
    def execute(self, run: Run, out_dir: Path) -> Outcome:
        """Execute one run in this process, writing its own files under ``out_dir``."""

    @abstractmethod
    def markdown(self, rows: list[dict[str, Any]]) -> str:
        """The study's table from ledger rows alone (a pure function of ``rows``)."""

    def run_dir(self, run: Run) -> Path:
        """The folder of ``run``'s own files: ``<runs_dir>/<name>/<run key>``."""
        return Path(self.runs_dir) / self.name / run.key

    def start_over(self, run: Run) -> None:
        """Forget what an earlier, unfinished execution of ``run`` left to continue from (``run --force``); a study
        whose runs continue from their folder (a ResumableStudy: a fit's resume checkpoint) overrides it."""
        return None  # nothing by default: runs that leave nothing to continue from

    def figure(self, rows: list[dict[str, Any]], path: Path) -> bool:
        """Draw the study's figure from ledger rows into ``path``; False when the study has none."""
        return False

    def command(self, run: Run) -> str:
        """The shell command that reruns ``run`` alone."""
        return f"iclr17 {self.cli_name()} ... run (key {run.key})"

    @classmethod
    def cli_name(cls) -> str:
        return cls.default_name.replace("_", "-")

    # ---- the subcommands ------------------------------------------------------------------------------------

    def run(
        self,
        workers: int = 1,
        threads: int = 1,
        engine: Engine = "local",
        force: bool = False,
        cluster: str | None = None,
        timeout_min: int = 24 * 60,
        slurm_partition: str | None = None,
        gpus_per_run: int = 0,
    ) -> list[dict[str, Any]]:
        """Execute the planned runs that have no finished row (all of them with ``force``), appending a row each.

        Args:
            workers: runs at once (local engine).
            threads: torch threads per run (and CPUs per submitit job).
            engine: ``local`` worker processes or ``submitit`` jobs.
            force: rerun runs that already have a finished row, each from its start (:meth:`start_over`).
            cluster: submitit's cluster (None: SLURM where it is, else submitit's local executor; ``local``).
            timeout_min: submitit job time limit in minutes.
            slurm_partition: SLURM partition of the jobs.
            gpus_per_run: GPUs per submitit job.
        """
        if workers < 1 or threads < 1:
            raise ValueError(f"workers and threads must be >= 1, got workers={workers}, threads={threads}")
        if engine not in ("local", "submitit"):
            raise ValueError(f"engine must be local or submitit, got {engine!r}")
        done = set() if force else done_keys(read(self.ledger))
        planned = self.planned()  # a study may read its ledger to plan (the bAbI protocol): once per call
        todo = [run for run in planned if run.key not in done]
        if force:
            for run in todo:
                self.start_over(run)
        print(f"{self.name}: {len(todo)} run(s) to do, {len(planned) - len(todo)} finished already")
        machine = machine_description(threads, workers, engine if cluster is None else f"submitit {cluster}")
        if not todo:
            return []
        if engine == "local":
            return _run_local(self, todo, workers, threads, machine)
        return _run_submitit(self, todo, threads, machine, cluster, timeout_min, slurm_partition, gpus_per_run)

    def status(self) -> dict[str, list[str]]:
        """Print and return the planned runs that are done, missing, capped or failed (by their params)."""
        rows = read(self.ledger)
        finished = done_keys(rows)
        latest = {row_key(r): r["status"] for r in rows}
        report: dict[str, list[str]] = {"done": [], "missing": [], "capped": [], "failed": []}
        for run in self.planned():
            state = (
                "done"
                if run.key in finished
                else {"capped": "capped", "failed": "failed"}.get(latest.get(run.key, ""), "missing")
            )
            report[state].append(f"{run.params} seed {run.seed}")
        print(f"{self.name} ({self.ledger}): " + ", ".join(f"{len(v)} {k}" for k, v in report.items()))
        for state in ("missing", "capped", "failed"):
            for line in report[state]:
                print(f"  {state}: {line}")
        return report

    def table(self, figure: str | None = None) -> str:
        """Print the study's table (and draw its figure into ``figure``) from the ledger alone.

        Args:
            figure: path of the figure to draw (none if not given).
        """
        rows = read(self.ledger)
        text = self.markdown(rows)
        print(text)
        if figure is not None and not self.figure(rows, Path(figure)):
            print(f"{self.name}: this study draws no figure")
        return text


# ---- one run, in a worker --------------------------------------------------------------------------------------


def record_run(study: Study, run: Run, threads: int, machine: str) -> dict[str, Any]:
    """Execute ``run`` in this process with ``threads`` torch threads and append its row (``failed`` with the
    error if it raised); the process's thread count is restored afterwards."""
    commit, dirty = source_commit()
    out_dir = study.run_dir(run)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        outcome = study.execute(run, out_dir)
    except Exception as error:  # recorded, and the study goes on
        traceback.print_exc()
        outcome = Outcome("failed", None, time.perf_counter() - start, {"error": f"{type(error).__name__}: {error}"})
    finally:
        torch.set_num_threads(previous_threads)
    row = _row(study, run, commit, dirty, machine, outcome)
    append(study.ledger, row)
    return row


def _row(study: Study, run: Run, commit: str, dirty: bool, machine: str, outcome: Outcome) -> dict[str, Any]:
    return {
        "study": study.name, "config": run.config, "config_digest": run.config_digest, "params": run.params,
        "overrides": list(run.overrides), "seed": run.seed, "commit": commit, "dirty": dirty, "machine": machine,
        "command": study.command(run), "status": outcome.status, "steps": outcome.steps,
        "fit_seconds": round(outcome.fit_seconds, 1), "metrics": outcome.metrics,
    }  # fmt: skip


def _record_death(
    study: Study, run: Run, machine: str, why: str, source: tuple[str, bool] | None = None
) -> dict[str, Any]:
    commit, dirty = source or source_commit()
    row = _row(study, run, commit, dirty, machine, Outcome("failed", None, 0.0, {"error": why}))
    append(study.ledger, row)
    return row


def _worker(study: Study, run: Run, threads: int, machine: str, source: tuple[str, bool]) -> None:
    global _pinned_source
    _pinned_source = source
    os.environ["OMP_NUM_THREADS"] = str(threads)
    record_run(study, run, threads, machine)


def _run_local(study: Study, todo: list[Run], workers: int, threads: int, machine: str) -> list[dict[str, Any]]:
    """One process per run, ``workers`` at once; a process that dies gets a ``failed`` row.

    Processes fork from a forkserver that imported the package once (a clean, single-threaded parent), so a run
    starts in milliseconds rather than re-importing torch and Lightning as a spawned process would. The forkserver
    imports every module of the package (:func:`_forkserver_preload`), so a worker imports none of them from the
    checkout, and every row (and a resumed fit's segments) records the forkserver's source (``source_commit()``
    when this process's first local run started it), not the checkout's commit when the run starts.
    """
    global _forkserver_source
    if _forkserver_source is None:
        _forkserver_source = source_commit()
    source = _forkserver_source
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_forkserver_preload(type(study).__module__))
    pending, running, seen = list(todo), {}, len(read(study.ledger))
    while pending or running:
        while pending and len(running) < workers:
            run = pending.pop(0)
            process = context.Process(target=_worker, args=(study, run, threads, machine, source), daemon=False)
            process.start()
            running[process] = run
        time.sleep(0.05)
        for process in [p for p in running if not p.is_alive()]:
            run = running.pop(process)
            process.join()
            if process.exitcode != 0:
                _record_death(study, run, machine, f"worker process died with exit code {process.exitcode}", source)
            print(f"{study.name}: {run.params} seed {run.seed} ended (exit code {process.exitcode})", flush=True)
    return read(study.ledger)[seen:]


def _forkserver_preload(study_module: str) -> list[str]:
    """What the forkserver imports before any worker forks: every module of the package (the CLI's chain, which a
    worker's rerun of the ``iclr17`` script imports; a config's class path; a function's late import) and the
    study's module, each tried here first: one that fails to import (a half-edited or scratch file) is left out
    with a warning, since a preload that raises anything but ImportError would stop the forkserver and the study.
    Walked again on each call (cheap once the modules are imported): a forkserver that multiprocessing restarts
    gets the list of the package as it is then."""
    import iclr17.studies.catalog  # noqa: F401  (every study, so every subpackage they use)

    modules = {"iclr17", study_module}
    packages = [name for name, module in list(sys.modules.items())
                if name.partition(".")[0] == "iclr17" and hasattr(module, "__path__")]  # fmt: skip
    for name in packages:
        modules.update(info.name for info in pkgutil.walk_packages(sys.modules[name].__path__, f"{name}.",
                                                                   onerror=lambda _: None))  # fmt: skip
    preload, broken = [], []
    for name in sorted(modules):
        try:
            importlib.import_module(name)
            preload.append(name)
        except Exception as error:  # any error a module raises at import
            broken.append(f"{name} ({type(error).__name__}: {error})")
    if broken:
        warnings.warn(f"not preloaded for the study's workers (they import these from the checkout, if at all): "
                      f"{'; '.join(broken)}", stacklevel=2)  # fmt: skip
    return preload


def _run_submitit(
    study: Study, todo: list[Run], threads: int, machine: str, cluster: str | None, timeout_min: int,
    slurm_partition: str | None, gpus_per_run: int,
) -> list[dict[str, Any]]:  # fmt: skip
    """One submitit job per run (an array job on SLURM); waits for them all; a job that dies gets a failed row."""
    import submitit

    executor = submitit.AutoExecutor(folder=Path(study.runs_dir) / study.name / "submitit", cluster=cluster)
    parameters: dict[str, Any] = {"timeout_min": timeout_min, "cpus_per_task": threads}
    if executor.cluster == "slurm":
        parameters.update(slurm_partition=slurm_partition, slurm_gpus_per_node=gpus_per_run or None)
    executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
    seen = len(read(study.ledger))
    with executor.batch():
        jobs = [executor.submit(record_run, study, run, threads, machine) for run in todo]
    for job, run in zip(jobs, todo, strict=True):
        try:
            job.result()
        except Exception as error:  # the job died before it could append its row
            _record_death(study, run, machine, f"submitit job {job.job_id} failed: {type(error).__name__}")
    return read(study.ledger)[seen:]
