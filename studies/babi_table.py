"""EntNet on bAbI, one model per task and seed, by the authors' protocol, in the layout of the paper's Table 2
(arXiv:1612.03969 section 5.2, EntNet column).

    iclr17 entnet-babi --config configs/studies/entnet_babi10k.yaml run --workers 2
    iclr17 entnet-babi --config configs/studies/entnet_babi10k.yaml status
    iclr17 entnet-babi --config configs/studies/entnet_babi10k.yaml table

Each run is ``iclr17 fit`` of the config on one task (``--data.init_args.tasks=[t]``) with one seed, then a
validation and a test of its final weights. The authors' protocol (their code, facebookarchive/MemNN EntNet-babi;
docs/papers/entnet.md), the default: every run trains the full epoch budget; a task's seeds run in order, and once
one of its runs finishes with final validation error 0 its remaining seeds are skipped; the selected run is the
one with the lowest final validation error (ties: the lowest seed), and its test error is the paper's number.
``stop_at_zero_val_error`` adds our early stop (end a run at validation error 0) for quick runs; the authors' runs
never stop early. ``skip_after_zero=False`` runs a task's seeds after a zero too (still in order), for the mean +- std
over seeds; the selected run is the same either way (the first zero has the lowest validation error and seed).

Seeds in order under parallel workers: :meth:`BabiStudy.planned` plans, per task, the seeds that finished and the
next one only (:func:`authors_schedule`), so ``run`` executes in rounds, each the next seed of every task
(``workers`` at a time), until no task has a seed left; tasks run side by side, a task's seeds never do, and no
seed after a zero is ever run. The table (:func:`babi_markdown`) gives per task the selected run's test error
(paper protocol) and the mean +- std over every seed that ran (honest protocol), the number of seeds, how the
selected run ended, beside the paper's EntNet column; then the mean over tasks and the failed tasks (test error
above 5%).
"""

from __future__ import annotations

import json
import re
import statistics
from functools import partial
from typing import Any

from iclr17.studies.fit_study import FitStudy
from iclr17.studies.ledger import current_runs, read, row_key
from iclr17.studies.runner import Run
from iclr17.studies.seed_tables import Rows, header, mean_std, time_cap

FAILED = 0.05
EPOCHS = 200  # the paper's and configs/entnet/babi10k.yaml's epoch budget, unless a run's command overrides it
PAPER_TABLE2_ENTNET = {  # test error (%), EntNet column of the paper's Table 2 (best of 10 runs by validation)
    1: 0.0, 2: 0.1, 3: 4.1, 4: 0.0, 5: 0.3, 6: 0.2, 7: 0.0, 8: 0.5, 9: 0.1, 10: 0.6,
    11: 0.3, 12: 0.0, 13: 1.3, 14: 0.0, 15: 0.0, 16: 0.2, 17: 0.5, 18: 0.3, 19: 2.3, 20: 0.0,
}  # fmt: skip
STOP_AT_ZERO_VAL_ERROR = "--trainer.callbacks+=" + json.dumps(  # ours, not the authors': end a run at val error 0
    {"class_path": "EarlyStopping",
     "init_args": {"monitor": "val/error", "mode": "min", "stopping_threshold": 1e-06, "patience": 1000}}
)  # fmt: skip


class BabiStudy(FitStudy):
    """EntNet on bAbI by the authors' protocol: seeds in order per task, skipped after a zero (paper Table 2).

    Args:
        fit_config: the bAbI fit config (a path or a shipped config's name).
        tasks: the bAbI tasks, one model each per seed (default: 1 to 20).
        seeds: ``seed_everything`` of a task's runs, run in this order; once a run finishes with final validation
            error 0 the task's remaining seeds are skipped (the authors' code), unless ``skip_after_zero`` is False.
        skip_after_zero: the authors' rule (default): skip a task's seeds after a run that finishes with final
            validation error 0. False runs them too, one at a time in order, so the mean +- std over seeds (the
            honest protocol's column) has every seed; the paper-protocol column selects the same run either way.
        stop_at_zero_val_error: ours, for quick runs: end a run once its validation error is 0 (an EarlyStopping
            callback added by an override, part of the run's identity). Default: every run trains the full epoch
            budget, as the authors' code does.
        max_time: a ``--trainer.max_time`` cap (``DD:HH:MM:SS``); a run it cuts is recorded ``capped``, is never
            shown as a full run and is tried again by the next ``run`` (meanwhile its task's later seeds wait).
        extra: overrides for every run that are not part of a run's identity (e.g. the accelerator).
        **kwargs: :class:`~iclr17.studies.runner.Study`'s arguments (name, ledger_dir, runs_dir).
    """

    default_name = "entnet_babi"

    def __init__(
        self,
        fit_config: str = "entnet/babi10k.yaml",
        tasks: list[int] | None = None,
        seeds: list[int] | None = None,
        stop_at_zero_val_error: bool = False,
        skip_after_zero: bool = True,
        max_time: str | None = None,
        extra: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            fit_config=fit_config, seeds=seeds, max_time=max_time, extra=extra, **kwargs
        )  # the tasks are the points; the table is babi_markdown's
        self.tasks, self.stop_at_zero_val_error = tasks or list(range(1, 21)), stop_at_zero_val_error
        self.skip_after_zero = skip_after_zero
        self._tried: frozenset[str] = frozenset()  # run keys tried during the current ``run`` call

    def points(self) -> list[tuple[dict[str, Any], list[str]]]:
        stop = [STOP_AT_ZERO_VAL_ERROR] if self.stop_at_zero_val_error else []
        return [({"task": task}, [f"--data.init_args.tasks=[{task}]", *stop]) for task in self.tasks]

    def schedule(self) -> dict[str, list[Run]]:
        """:func:`authors_schedule` of every task x seed against the ledger."""
        return authors_schedule(super().planned(), read(self.ledger), self._tried, self.skip_after_zero)

    def planned(self) -> list[Run]:
        """Per task, the seeds that finished and the next seed to run (none after a zero under the skip rule)."""
        return self.schedule()["planned"]

    def run(self, **kwargs: Any) -> Rows:
        """Run the authors' protocol: rounds of the next seed of every task until no task has a seed to run.

        Each round is one :meth:`Study.run` of the planned runs (those without a finished row); a run tried in this
        call and not finished (failed or capped) is not tried again in it, and its task's later seeds wait.

        Args:
            **kwargs: :meth:`Study.run`'s arguments (workers, threads, engine, ...); ``force`` is refused (to rerun
                finished seeds, give the study another ``name``, a new ledger).
        """
        if kwargs.get("force"):
            raise ValueError(f"{self.cli_name()}: force would rerun finished seeds in every round; rerun the study "
                             "under another name (a new ledger) instead")  # fmt: skip
        rows: Rows = []
        try:
            while new := super().run(**kwargs):
                rows += new
                self._tried |= {row_key(r) for r in new}
        finally:
            self._tried = frozenset()
        return rows

    def status(self) -> dict[str, list[str]]:
        """Print and return the runs that are done, missing (the next seed of a task), capped or failed, and the
        seeds waiting for an earlier seed of their task or skipped after a run with validation error 0."""
        report = super().status()
        schedule = self.schedule()
        print(f"{self.name}: {len(schedule['waiting'])} waiting, {len(schedule['skipped'])} skipped")
        for state in ("waiting", "skipped"):
            report[state] = [f"{r.params} seed {r.seed}" for r in schedule[state]]
            by_task: dict[str, list[int]] = {}
            for r in schedule[state]:
                by_task.setdefault(str(r.params), []).append(r.seed)
            for params, seeds in by_task.items():
                print(f"  {state}: {params} seeds {', '.join(map(str, seeds))}")
        return report

    def markdown(self, rows: Rows) -> str:
        return babi_markdown(rows)


def authors_schedule(
    runs: list[Run], rows: Rows, tried: frozenset[str] = frozenset(), skip_after_zero: bool = True
) -> dict[str, list[Run]]:
    """The authors' order of seeds over ``runs`` (a task's runs are those with the same params, in seed order).

    Per task: ``planned`` = the seeds with a finished row in ``rows``, then the next seed (unless it is in ``tried``);
    ``skipped`` = every seed after a finished run whose final validation error is 0 that has no finished row
    (none without ``skip_after_zero``); ``waiting`` = the others (seeds after the next one). Capped and failed
    rows do not count as finished: such a seed is the next again.
    """
    finished = {row_key(r): r for r in rows if r["status"] == "finished"}
    tasks: dict[str, list[Run]] = {}
    for run in runs:
        tasks.setdefault(json.dumps(run.params, sort_keys=True), []).append(run)
    schedule: dict[str, list[Run]] = {"planned": [], "waiting": [], "skipped": []}
    for task_runs in tasks.values():
        state = "planned"
        for run in task_runs:
            if state == "skipped" and run.key in finished:  # it ran without the skip rule: done, not skipped
                schedule["planned"].append(run)
            elif state == "planned" and run.key in finished:
                schedule["planned"].append(run)
                zero = finished[run.key]["metrics"].get("val/error") == 0
                state = "skipped" if zero and skip_after_zero else "planned"
            elif state == "planned":
                schedule["planned" if run.key not in tried else "waiting"].append(run)
                state = "waiting"
            else:
                schedule[state].append(run)
    return schedule


def best_by_validation(runs: Rows) -> dict[str, Any]:
    """The selected run: the lowest final validation error (ties: the lowest seed)."""
    return min(runs, key=lambda r: (r["metrics"]["val/error"], r["seed"]))


def epoch_budget(command: str) -> int:
    """The ``--trainer.max_epochs`` in ``command`` (the last one), else the config's :data:`EPOCHS`."""
    found = re.findall(r"--trainer\.max_epochs[= ](\d+)", command)
    return int(found[-1]) if found else EPOCHS


def stopped_by(row: dict[str, Any]) -> str:
    """How a run ended: its time cap (a capped row), its epoch budget, or our early stop at validation error 0."""
    if row["status"] == "capped":
        return time_cap(row["command"]) or "time cap"
    if row["metrics"]["epochs"] >= epoch_budget(row["command"]):
        return "epoch budget"
    return "early stop, val error 0 (ours)" if row["metrics"]["val/error"] == 0 else "ended early"


def task_summaries(rows: Rows) -> dict[int, dict[str, Any]]:
    """Per task (ascending), over its finished and capped runs: the selected run (:func:`best_by_validation`), the
    mean and standard deviation of the test error over its seeds, the number of seeds and of capped ones, and the
    runs in seed order."""
    by_task: dict[int, Rows] = {}
    for row in current_runs(rows):
        by_task.setdefault(row["params"]["task"], []).append(row)
    summaries = {}
    for task in sorted(by_task):
        runs = by_task[task]
        mean, std = mean_std([r["metrics"]["test/error"] for r in runs])
        summaries[task] = {"best": best_by_validation(runs), "mean": mean, "std": std, "seeds": len(runs),
                           "capped": sum(r["status"] == "capped" for r in runs),
                           "runs": sorted(runs, key=lambda r: r["seed"])}  # fmt: skip
    return summaries


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.0f} min"


def _failed(errors: dict[int, float], threshold: float) -> str:
    failed = [task for task, error in errors.items() if error > threshold]
    return f"{len(failed)} ({', '.join(map(str, failed))})" if failed else "0"


def babi_markdown(rows: Rows) -> str:
    """The paper's Table 2 layout, test errors in %: per task the selected run's (lowest final validation error;
    its epochs, how it ended and its wall time) and the mean +- std over the seeds that ran, the number of seeds
    (capped ones counted apart), beside the paper's EntNet column; then the mean over the tasks and the failed
    tasks (> 5%). Failed runs are left out; capped runs are flagged."""
    summaries = task_summaries(rows)
    lines = header(["task", "ours: selected by val (paper protocol)", "ours: mean +- std over seeds", "seeds",
                    "epochs run", "stopped by", "wall time", "paper (EntNet)"])  # fmt: skip
    for task, s in summaries.items():
        best = s["best"]
        paper = PAPER_TABLE2_ENTNET.get(task)
        seeds = f"{s['seeds']} ({s['capped']} capped)" if s["capped"] else f"{s['seeds']}"
        lines.append(
            f"| {task} | {100 * best['metrics']['test/error']:.1f} | {100 * s['mean']:.1f} +- {100 * s['std']:.1f} | "
            f"{seeds} | {best['metrics']['epochs']} | {stopped_by(best)} | {_wall(best['fit_seconds'])} | "
            f"{'' if paper is None else f'{paper:.1f}'} |"
        )
    if not summaries:
        return "\n".join(lines)
    best = {task: s["best"]["metrics"]["test/error"] for task, s in summaries.items()}
    means = {task: s["mean"] for task, s in summaries.items()}
    paper = {task: PAPER_TABLE2_ENTNET[task] for task in summaries if task in PAPER_TABLE2_ENTNET}
    paper_mean = f"{statistics.mean(paper.values()):.2f}" if paper else ""
    lines.append(
        f"| mean ({len(summaries)} tasks) | {100 * statistics.mean(best.values()):.2f} | "
        f"{100 * statistics.mean(means.values()):.2f} | | | | | {paper_mean} |"
    )
    lines.append(
        f"| failed (> 5%) | {_failed(best, FAILED)} | {_failed(means, FAILED)} | | | | | "
        f"{_failed(paper, 100 * FAILED)} |"
    )
    return "\n".join(lines)


def task_summary(rows: Rows, task: int) -> str:
    """One task of :func:`babi_markdown` in one line, for a sentence or a table cell: the selected run's test error,
    its seed among the task's, then every seed's in seed order (capped ones labelled):
    ``0.1% (seed 2 of 3, selected by validation; by seed 1, 2, 3: 0.3%, 0.1%, 0.8%)``."""
    summary = task_summaries(rows).get(task)
    if summary is None:
        return f"(no runs of task {task})"
    best, runs = summary["best"], summary["runs"]
    each = ", ".join(f"{100 * r['metrics']['test/error']:.1f}%" + (" capped" if r["status"] == "capped" else "")
                     for r in runs)  # fmt: skip
    error = f"{100 * best['metrics']['test/error']:.1f}%"
    if len(runs) == 1:
        return f"{error} (seed {best['seed']}, the one run{', capped' if best['status'] == 'capped' else ''})"
    seeds = ", ".join(str(r["seed"]) for r in runs)
    return f"{error} (seed {best['seed']} of {len(runs)}, selected by validation; by seed {seeds}: {each})"


SUMMARISED_TASKS = (2, 14, 16, 17, 18, 19)  # the paper-schedule tasks the README cites: ``entnet-babi10k-task.<n>``

# The bAbI studies, the paper's schedule first: each task's number comes from the first that ran it (a run of the
# first may still have been cut by a cap or our early stop: its table says so).
SCHEDULES = {"entnet_babi10k": "the paper-schedule study", "entnet_babi10k_5min": "the 5-minute study"}


def all_tasks_summary(rows: Rows) -> str:
    """Every task from the first study of :data:`SCHEDULES` that ran it, in one line for a sentence or a table cell:
    from rows of those studies (by their ``study``), each task's selected run (:func:`best_by_validation`); how many
    tasks from each study, then the mean test error over the tasks and the failed ones (> 5%) beside the paper's on
    the same tasks."""
    by_study: dict[str, Rows] = {}
    for row in rows:
        by_study.setdefault(row["study"], []).append(row)
    unknown = sorted(set(by_study) - set(SCHEDULES))
    if unknown:
        raise ValueError(f"rows of studies {unknown}: not bAbI schedules {list(SCHEDULES)}")
    errors: dict[int, float] = {}
    counts = []
    for study, label in SCHEDULES.items():
        summaries = task_summaries(by_study.get(study, []))
        new = {task: 100 * s["best"]["metrics"]["test/error"] for task, s in summaries.items() if task not in errors}
        errors |= new
        counts += [f"{len(new)} from {label}"] if new else []
    if not errors:
        return "(no runs)"
    paper = {task: PAPER_TABLE2_ENTNET[task] for task in errors if task in PAPER_TABLE2_ENTNET}
    return (
        f"{len(errors)} tasks ({', '.join(counts)}), each the run selected by validation: mean test error "
        f"{statistics.mean(errors.values()):.2f}%, failed (> 5%) {_failed(errors, 100 * FAILED)}; paper on the same "
        f"tasks: mean {statistics.mean(paper.values()):.2f}%, failed {_failed(paper, 100 * FAILED)}"
    )


RESULTS_TABLES = {
    "entnet-babi10k-paper-schedule": ("entnet_babi10k", babi_markdown),
    "entnet-babi10k-5min": ("entnet_babi10k_5min", babi_markdown),
    "entnet-babi10k-all-tasks-summary": (tuple(SCHEDULES), all_tasks_summary),
    **{f"entnet-babi10k-task.{task}": ("entnet_babi10k", partial(task_summary, task=task))
       for task in SUMMARISED_TASKS},
}  # fmt: skip
