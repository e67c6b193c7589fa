"""Studies whose runs are ``iclr17 fit`` runs of one config: the same config under named variants, a grid of
overrides and several seeds; each run is fitted, then its final weights are validated and tested, once or under
several named evaluations (e.g. BatchNorm statistics from the training or the test images) that share the fit.

    iclr17 seeds --config configs/studies/entropy_sgd_mnist_table1.yaml run --workers 2

``FitStudy`` is the runner's generic LightningCLI study (its table: mean +- std of chosen metrics per variant and
grid point); the bAbI and world-model studies are FitStudies with their papers' tables.
"""

from __future__ import annotations

import importlib
import itertools
import json
import shlex
import statistics
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.cli import LightningCLI

from iclr17.cli import cli, resolve_config_path
from iclr17.studies.fit_resume import FitSegments, ResumableStudy, discard, merged_log_rows, resume_args
from iclr17.studies.ledger import config_file_digest, current_runs, digest, per_evaluation
from iclr17.studies.runner import Outcome, Run, source_commit


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of a Lightning metrics dict as floats."""
    return {k: float(v) for k, v in metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


def fit_config_digest(config: str) -> str:
    """The ``config_digest`` of a fit config given as a path or as a shipped config's name (its content's)."""
    return config_file_digest(resolve_config_path(config))


class FitStudy(ResumableStudy):
    """Runs of ``iclr17 fit --config <config>``: every variant x every grid point x every seed.

    Args:
        fit_config: the fit config (a path or a shipped config's name); ``--config`` is the study's own file.
        variants: named override lists, e.g. ``{"adam": [], "entropy": ["--model.init_args.optimizer=..."]}``.
        grid: override key (without ``--``) -> values; every combination is a run (values written as JSON).
        seeds: ``seed_everything`` of the runs, in order.
        max_time: a ``--trainer.max_time`` cap (``DD:HH:MM:SS``); a run it cuts is recorded ``capped``.
        extra: overrides for every run that are not part of a run's identity (e.g. the accelerator).
        metrics: the metric names the table shows (default: every ``test/`` metric).
        history: metrics whose value after every epoch of the fit is recorded too, as the list
            ``metrics["<name> by epoch"]`` (read from the run's CSV log; e.g. ``val/mnist_score`` for I' curves).
        evaluations: named ways to validate and test the final weights of one fit, e.g.
            ``{"bn_test": {}, "bn_train": {"BatchNormStatistics": {"source": "train"}}}``: each replaces the fitted
            trainer's callbacks of the named classes (in ``iclr17.callbacks``, or a dotted class path) by new ones
            built from the given arguments (the class's defaults for the others; ``{}``: the fitted callbacks as
            they are). Only for evaluations that leave training untouched (a callback whose absence would change
            the fit is not an evaluation): one fit then serves every evaluation instead of one fit each. A row keeps
            each evaluation's metrics in ``metrics["evaluations"][name]``; ``ledger.per_evaluation`` splits it into
            one table row per evaluation (``params["evaluation"]``). The evaluations are part of a run's identity.
        resume: keep an epoch-end checkpoint in the run's folder and continue from it when a killed, crashed or
            capped run is started again (:mod:`iclr17.studies.fit_resume`); False: every start trains from epoch 0.
        **kwargs: :class:`~iclr17.studies.runner.Study`'s arguments (name, ledger_dir, runs_dir).
    """

    default_name = "seeds"

    def __init__(
        self,
        fit_config: str,
        variants: dict[str, list[str]] | None = None,
        grid: dict[str, list[Any]] | None = None,
        seeds: list[int] | None = None,
        max_time: str | None = None,
        extra: list[str] | None = None,
        metrics: list[str] | None = None,
        history: list[str] | None = None,
        evaluations: dict[str, dict[str, dict[str, Any]]] | None = None,
        resume: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.resume = resume
        self.config, self.variants, self.grid = fit_config, variants or {"": []}, grid or {}
        self.seeds, self.max_time, self.extra, self.metrics = seeds or [1], max_time, extra or [], metrics
        self.history = history or []
        self.evaluations = evaluations or {}
        for name, replacements in self.evaluations.items():  # refuse a bad class or argument before any fit
            evaluation_callbacks(name, replacements)

    def points(self) -> list[tuple[dict[str, Any], list[str]]]:
        """``(params, overrides)`` of every variant x grid point, in order."""
        points = []
        keys = list(self.grid)
        for name, overrides in self.variants.items():
            for values in itertools.product(*(self.grid[k] for k in keys)):
                params = ({"variant": name} if name else {}) | dict(zip(keys, values, strict=True))
                grid_overrides = [f"--{k}={json.dumps(v)}" for k, v in zip(keys, values, strict=True)]
                points.append((params, [*overrides, *grid_overrides]))
        return points

    def planned(self) -> list[Run]:
        return self.runs_of(self.config)

    def runs_of(self, config: str, params: dict[str, Any] | None = None) -> list[Run]:
        """The runs of ``config``: every variant x grid point x seed, each point's params after ``params``."""
        config_digest = fit_config_digest(config)
        if self.evaluations:  # what a row records depends on them too
            config_digest = digest(config_digest + json.dumps(self.evaluations, sort_keys=True))
        return [
            Run(config, config_digest, (*overrides, f"--seed_everything={seed}"), seed, (params or {}) | point)
            for point, overrides in self.points()
            for seed in self.seeds
        ]

    def has_time_cap(self, run: Run) -> bool:
        """Whether ``run``'s fit runs under the ``max_time`` cap (every run's, here)."""
        return bool(self.max_time)

    def fit_args(self, run: Run, out_dir: Path) -> list[str]:
        cap = [f"--trainer.max_time={self.max_time}"] if self.has_time_cap(run) else []
        logs = ["--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={out_dir}"]
        return ["fit", "--config", run.config, *run.overrides, *logs, "--trainer.enable_progress_bar=false", *cap,
                *self.extra]  # fmt: skip

    def command(self, run: Run) -> str:
        fit = shlex.join(self.fit_args(run, Path("<run dir>")))
        evaluations = f" under each evaluation of {json.dumps(self.evaluations)}" if self.evaluations else ""
        return f"iclr17 {fit}; then validate and test the final weights{evaluations}"

    def execute(self, run: Run, out_dir: Path) -> Outcome:
        return self.fit_and_evaluate(run, out_dir)[1]

    def fit_and_evaluate(self, run: Run, out_dir: Path) -> tuple[LightningCLI, Outcome]:
        """Fit ``run``, then validate and test its final weights: the fitted CLI (model, datamodule) and the
        outcome."""
        resume = resume_args(out_dir, *source_commit()) if self.resume else []
        start = time.perf_counter()
        fit = cli([*self.fit_args(run, out_dir), *resume])
        fit_seconds = time.perf_counter() - start
        trainer = fit.trainer
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        capped = timer is not None and timer.time_remaining("train") is not None and timer.time_remaining("train") <= 0
        if not capped:  # the fit ran to its end: nothing to resume, whatever happens while evaluating
            discard(out_dir)
        trainer.logger.save()
        stale = stale_metrics(merged_log_rows(Path(trainer.logger.log_dir)))
        metrics = {k: v for k, v in scalar_metrics(trainer.callback_metrics).items() if k not in stale}
        recorder = next((c for c in trainer.callbacks if isinstance(c, FitSegments)), None)
        if recorder is not None:  # a resumable fit (resume=True): a resumed one counts its earlier segments too
            fit_seconds, segments = recorder.whole_fit(fit_seconds)
            metrics |= segments
        if self.history:
            by_epoch = epoch_history(Path(trainer.logger.log_dir), self.history)
            metrics |= {f"{name} by epoch": values for name, values in by_epoch.items()}
        if self.evaluations:
            metrics["evaluations"] = {
                name: evaluate(fit, evaluation_callbacks(name, replacements))
                for name, replacements in self.evaluations.items()
            }
        else:
            metrics |= evaluate(fit, {})
        metrics["epochs"] = trainer.current_epoch
        return fit, Outcome("capped" if capped else "finished", trainer.global_step, fit_seconds, metrics)

    def markdown(self, rows: list[dict[str, Any]]) -> str:
        return seeds_table(rows, self.metrics)


def evaluation_callbacks(name: str, replacements: dict[str, dict[str, Any]]) -> dict[type, pl.Callback]:
    """The callbacks of evaluation ``name``, by the class they replace: each class name (in ``iclr17.callbacks``,
    or a dotted path) built with its arguments; a name that is not a callback class, or arguments the class
    refuses, are errors naming the evaluation."""
    callbacks = {}
    for class_name, arguments in replacements.items():
        module, _, attribute = class_name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module or "iclr17.callbacks"), attribute)
        except (ImportError, AttributeError):
            cls = None
        if not (isinstance(cls, type) and issubclass(cls, pl.Callback)):
            raise ValueError(
                f"evaluations.{name}: {class_name!r} is not a callback class (a name in iclr17.callbacks, or a "
                "dotted path to a pytorch_lightning Callback)"
            )
        try:
            callbacks[cls] = cls(**arguments)
        except (TypeError, ValueError) as error:
            raise ValueError(f"evaluations.{name}.{class_name}: {error}") from error
    return callbacks


def evaluate(fit: LightningCLI, replacements: dict[type, pl.Callback]) -> dict[str, float]:
    """Validate and test ``fit``'s final weights with its trainer, each callback of a class in ``replacements``
    swapped for that replacement during the evaluation (and put back after it): the scalar metrics.
    A class that none of the trainer's callbacks is of is an error."""
    trainer = fit.trainer
    fitted = list(trainer.callbacks)
    missing = [cls.__name__ for cls in replacements if not any(isinstance(c, cls) for c in fitted)]
    if missing:
        raise ValueError(
            f"an evaluation replaces {missing}, but the fit's trainer has no such callback "
            f"(it has {[type(c).__name__ for c in fitted]})"
        )
    metrics: dict[str, float] = {}
    trainer.callbacks = [next((r for cls, r in replacements.items() if isinstance(c, cls)), c) for c in fitted]
    try:
        for stage in (trainer.validate, trainer.test):
            for results in stage(fit.model, datamodule=fit.datamodule, verbose=False):
                metrics |= scalar_metrics(results)
    finally:
        trainer.callbacks = fitted
    return metrics


def stale_metrics(rows: list[dict[str, str]]) -> set[str]:
    """The metrics in CSVLogger ``rows`` that the fit stopped logging: those whose companions (metrics written in a
    row with them) were written again in a later epoch without them.

    Lightning's ``callback_metrics`` keep a metric's last value for the rest of the fit, so a metric a model stops
    logging (e.g. EBGAN-LN's generator losses once its margin reaches 0, logged with its discriminator's) would
    reach a run's row with a value from an earlier epoch; ``FitStudy`` leaves such metrics out of the row, which
    describes the final weights. A metric merely not written in the last epoch (step metrics every
    ``log_every_n_steps``, validation every few epochs) is not stale: its companions were not written either.
    Rows without an epoch (a logger written to directly) are not read."""
    logged = [(int(float(row["epoch"])), {k for k, v in row.items() if v != "" and k not in ("epoch", "step")})
              for row in rows if row.get("epoch", "") != ""]  # fmt: skip
    last_epoch: dict[str, int] = {}
    companions: dict[str, set[str]] = {}
    for epoch, names in logged:
        for name in names:
            last_epoch[name] = max(epoch, last_epoch.get(name, epoch))
            companions.setdefault(name, set()).update(names - {name})
    return {
        name for name, epoch in last_epoch.items()
        if any(later > epoch and names & companions[name] for later, names in logged)
    }  # fmt: skip


def epoch_history(log_dir: Path, names: list[str]) -> dict[str, list[float]]:
    """Each of ``names``'s logged values in the CSVLogger folder ``log_dir`` (every segment of a resumed fit,
    :func:`~iclr17.studies.fit_resume.merged_log_rows`), in the order logged: one per epoch for an epoch-level
    metric. A name that was never logged is an error naming the folder and the columns."""
    rows = merged_log_rows(log_dir)
    columns = set().union(*rows) if rows else set()
    missing = [name for name in names if name not in columns]
    if missing:
        raise KeyError(f"{log_dir}/metrics.csv: no column {missing} among the logged metrics {sorted(columns)}")
    return {name: [float(row[name]) for row in rows if row.get(name, "") != ""] for name in names}


def seeds_table(rows: list[dict[str, Any]], metrics: list[str] | None = None) -> str:
    """Mean +- std (and the values) of ``metrics`` over the finished runs of each params point, capped runs apart."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in per_evaluation(current_runs(rows)):
        groups.setdefault(json.dumps(row["params"], sort_keys=True) + " " + row["status"], []).append(row)
    names = metrics or sorted({k for r in per_evaluation(rows) for k in r["metrics"] if k.startswith("test/")})
    lines = ["| run | status | seeds | " + " | ".join(names) + " |", "|---" * (3 + len(names)) + "|"]
    for label, group in groups.items():
        params, status = label.rsplit(" ", 1)
        cells = []
        for name in names:
            values = [r["metrics"][name] for r in group if name in r["metrics"]]
            spread = f" +- {statistics.stdev(values):.4g}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.4g}{spread}" if values else "")
        lines.append(f"| {params} | {status} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
