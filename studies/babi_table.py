"""EntNet on bAbI, one model per task and seed, in the layout of the paper's Table 2 (arXiv:1612.03969 section
5.2, EntNet column).

    iclr17 entnet-babi --config configs/studies/entnet_babi10k.yaml run --workers 2
    iclr17 entnet-babi --config configs/studies/entnet_babi10k.yaml table

Each run is ``iclr17 fit`` of the config on one task (``--data.init_args.tasks=[t]``) with one seed, then a
validation and a test of its final weights (the authors' selection: the final epoch; a run stops early once its
validation error is 0, as in the authors' code). The table gives per task the test error of the run with the
lowest validation error (the paper's protocol: best of 10 seeds), the mean and standard deviation over seeds,
and how that run stopped, beside the paper's EntNet column; then the mean over tasks and the failed tasks
(test error above 5%).
"""

from __future__ import annotations

import statistics
from typing import Any

from iclr17.studies.fit_study import FitStudy
from iclr17.studies.seed_tables import Rows, header, mean_std, time_cap

FAILED = 0.05
PAPER_TABLE2_ENTNET = {  # test error (%), EntNet column of the paper's Table 2 (best of 10 runs by validation)
    1: 0.0, 2: 0.1, 3: 4.1, 4: 0.0, 5: 0.3, 6: 0.2, 7: 0.0, 8: 0.5, 9: 0.1, 10: 0.6,
    11: 0.3, 12: 0.0, 13: 1.3, 14: 0.0, 15: 0.0, 16: 0.2, 17: 0.5, 18: 0.3, 19: 2.3, 20: 0.0,
}  # fmt: skip


class BabiStudy(FitStudy):
    """Every task x every seed of a bAbI config (one model per task), tabled as the paper's Table 2.

    Args:
        fit_config: the bAbI fit config (a path or a shipped config's name).
        tasks: the bAbI tasks, one run each per seed (default: 1 to 20).
        seeds: ``seed_everything`` of the runs, in order.
        max_time: a ``--trainer.max_time`` cap (``DD:HH:MM:SS``); a run it cuts is recorded ``capped``.
        extra: overrides for every run that are not part of a run's identity (e.g. the accelerator).
        **kwargs: :class:`~iclr17.studies.runner.Study`'s arguments (name, ledger_dir, runs_dir).
    """

    default_name = "entnet_babi"

    def __init__(
        self,
        fit_config: str = "entnet/babi10k.yaml",
        tasks: list[int] | None = None,
        seeds: list[int] | None = None,
        max_time: str | None = None,
        extra: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            fit_config=fit_config, seeds=seeds, max_time=max_time, extra=extra, **kwargs
        )  # the tasks are the points; the table is babi_markdown's
        self.tasks = tasks or list(range(1, 21))

    def points(self) -> list[tuple[dict[str, Any], list[str]]]:
        return [({"task": task}, [f"--data.init_args.tasks=[{task}]"]) for task in self.tasks]

    def markdown(self, rows: Rows) -> str:
        return babi_markdown(rows)


def best_by_validation(runs: Rows) -> dict[str, Any]:
    """The run with the lowest validation error (ties: the lowest seed)."""
    return min(runs, key=lambda r: (r["metrics"]["val/error"], r["seed"]))


def stopped_by(row: dict[str, Any]) -> str:
    """How a run ended: its time cap (a capped row), validation error 0, or the epoch budget."""
    if row["status"] == "capped":
        return time_cap(row["command"]) or "time cap"
    return "val error 0" if row["metrics"]["val/error"] == 0 else "epoch budget"


def task_summaries(rows: Rows) -> dict[int, dict[str, Any]]:
    """Per task (ascending), over its finished and capped runs: the best run by validation, the mean and standard
    deviation of the test error over seeds, and the number of seeds."""
    by_task: dict[int, Rows] = {}
    for row in rows:
        if row["status"] != "failed":
            by_task.setdefault(row["params"]["task"], []).append(row)
    summaries = {}
    for task in sorted(by_task):
        mean, std = mean_std([r["metrics"]["test/error"] for r in by_task[task]])
        summaries[task] = {"best": best_by_validation(by_task[task]), "mean": mean, "std": std,
                           "seeds": len(by_task[task])}  # fmt: skip
    return summaries


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.0f} min"


def _failed(errors: dict[int, float], threshold: float) -> str:
    failed = [task for task, error in errors.items() if error > threshold]
    return f"{len(failed)} ({', '.join(map(str, failed))})" if failed else "0"


def babi_markdown(rows: Rows) -> str:
    """The paper's Table 2 layout, test errors in %: per task the run best by validation (its epochs, how it
    stopped and its wall time) and the mean +- std over seeds, beside the paper's EntNet column; then the mean
    over the tasks and the failed tasks (> 5%). Failed runs are left out; capped runs show their cap."""
    summaries = task_summaries(rows)
    lines = header(["task", "ours: best by val", "ours: mean +- std", "seeds", "epochs run", "stopped by", "wall time",
                    "paper (EntNet)"])  # fmt: skip
    for task, s in summaries.items():
        best = s["best"]
        paper = PAPER_TABLE2_ENTNET.get(task)
        lines.append(
            f"| {task} | {100 * best['metrics']['test/error']:.1f} | {100 * s['mean']:.1f} +- {100 * s['std']:.1f} | "
            f"{s['seeds']} | {best['metrics']['epochs']} | {stopped_by(best)} | {_wall(best['fit_seconds'])} | "
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


RESULTS_TABLES = {
    "entnet-babi10k-paper-schedule": ("entnet_babi10k", babi_markdown),
    "entnet-babi10k-5min": ("entnet_babi10k_5min", babi_markdown),
}
