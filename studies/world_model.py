"""EntNet on the world-model task: story lengths x learning rates x move lengths x seeds, in the layout of the
paper's Table 1 (arXiv:1612.03969 section 5.1).

    iclr17 entnet-world-model --config configs/studies/entnet_world_model.yaml run --workers 2
    iclr17 entnet-world-model --config configs/studies/entnet_world_model.yaml table

Each run is ``iclr17 fit`` of the config with one variant's training and test story lengths (``VARIANTS``: T =
10, 20, 40, and ``gen``: trained on T = 2..20, tested on T = 20, 30, ..., 80), one Adam learning rate, one
longest move of the generator (``max_step``: moves of 1..max_step squares) and one seed, then a validation and a
test of its final weights. The paper picks the learning rate from {0.1, 0.01, 0.001} and reports the best of 5
initialisations; Table 1 here gives, per variant, max_step and lr, the test error of the run with the lowest
validation error at each test length, beside the paper's; the exploration table gives the last validation error
over the lr x max_step grid at one story length.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from iclr17.studies.fit_study import FitStudy
from iclr17.studies.ledger import current_runs
from iclr17.studies.seed_tables import Rows, capped_label, header, mean_std, plural

VARIANTS = {  # name -> (training lengths, test lengths)
    "t10": ([10], [10]),
    "t20": ([20], [20]),
    "t40": ([40], [40]),
    "gen": (list(range(2, 21)), list(range(20, 81, 10))),
}
LABELS = {"t10": "T = 10", "t20": "T = 20", "t40": "T = 40", "gen": "T <= 20 (2..20)"}
PAPER_TABLE1 = {  # arXiv:1612.03969 Table 1, EntNet: test error by test length (best of 5 initialisations)
    "paper (EntNet)": {10: 0.0, 20: 0.0, 40: 0.0},
    "paper, trained on T <= 20": {20: 0.0, 30: 0.0, 40: 0.0, 50: 0.01, 60: 0.03, 70: 0.05, 80: 0.08},
}
GRID = {"max_step": "data.init_args.max_step", "lr": "model.init_args.optimizer.init_args.lr"}  # param -> key
# The digests of configs/entnet/world_model.yaml before issue 15 (f10e798), when EntNet's story position mask
# started at ones; that commit made N(0, 0.1) (the authors' bAbI code) the default and changed the config's text.
# These are text digests: results/migrations/config_digest_content.py left these rows' digests as they were.
ONES_MASK_CONFIGS = frozenset({"408b25fba7b20c09", "7714a51bdadcd60a", "4cc0dce881d2b51e"})
STORY_MASKS = ("N(0, 0.1)", "ones")  # table order: the default first


def story_mask(row: dict[str, Any]) -> str:
    """The initial story position mask a row's model had: ``ones`` for the configs of ``ONES_MASK_CONFIGS``."""
    return "ones" if row["config_digest"] in ONES_MASK_CONFIGS else "N(0, 0.1)"


def variant_overrides(name: str) -> list[str]:
    """The ``--data.init_args.{train,test}_lengths`` overrides of a variant of ``VARIANTS``."""
    if name not in VARIANTS:
        raise ValueError(f"world-model variant {name!r} is not one of {', '.join(VARIANTS)}")
    train, test = (json.dumps(lengths, separators=(",", ":")) for lengths in VARIANTS[name])
    return [f"--data.init_args.train_lengths={train}", f"--data.init_args.test_lengths={test}"]


class WorldModelStudy(FitStudy):
    """Every variant x max_step x lr x seed of the world-model config, tabled as the paper's Table 1.

    Args:
        fit_config: the world-model fit config (a path or a shipped config's name).
        variants: names of ``VARIANTS`` (story lengths trained and tested).
        lr: the Adam learning rates of the grid.
        max_step: the generator's longest moves (in squares) of the grid.
        seeds: ``seed_everything`` of the runs, in order (the initialisations).
        max_time: a ``--trainer.max_time`` cap (``DD:HH:MM:SS``); a run it cuts is recorded ``capped``.
        extra: overrides for every run that are not part of a run's identity (e.g. the accelerator).
        **kwargs: :class:`~iclr17.studies.runner.Study`'s arguments (name, ledger_dir, runs_dir).
    """

    default_name = "entnet_world_model"

    def __init__(
        self,
        fit_config: str = "entnet/world_model.yaml",
        variants: list[str] | None = None,
        lr: list[float] | None = None,
        max_step: list[int] | None = None,
        seeds: list[int] | None = None,
        max_time: str | None = None,
        extra: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        names = variants or list(VARIANTS)
        grid = {GRID["max_step"]: max_step or [5], GRID["lr"]: lr or [0.001]}
        super().__init__(
            fit_config=fit_config, variants={name: variant_overrides(name) for name in names}, grid=grid, seeds=seeds,
            max_time=max_time, extra=extra, metrics=None, **kwargs,
        )  # fmt: skip

    def points(self) -> list[tuple[dict[str, Any], list[str]]]:
        """FitStudy's points with the grid's keys named ``max_step`` and ``lr`` in ``params``."""
        names = {key: name for name, key in GRID.items()}
        return [({names.get(k, k): v for k, v in params.items()}, overrides) for params, overrides in super().points()]

    def markdown(self, rows: Rows) -> str:
        explore = explore_markdown(rows)
        grid = world_model_markdown(rows)
        return (
            f"{selected_markdown(rows)}\n\nEvery grid point:\n\n{grid}\n\n"
            f"Last validation error at T = 10 (lr x max_step):\n\n{explore}"
        )


def tested_lengths(row: dict[str, Any]) -> list[int]:
    """The story lengths a row was tested on (its variant's)."""
    return VARIANTS[row["params"]["variant"]][1]


def errors_by_length(row: dict[str, Any]) -> dict[int, float]:
    """Test error by test length: ``test/error_task<T>`` where logged, else ``test/error`` for a single length."""
    metrics, lengths = row["metrics"], tested_lengths(row)
    if len(lengths) == 1 and f"test/error_task{lengths[0]}" not in metrics:
        return {lengths[0]: metrics["test/error"]}
    return {t: metrics[f"test/error_task{t}"] for t in lengths}


def _groups(rows: Rows) -> dict[tuple, Rows]:
    """The current row of each run (``current_runs``, within each story mask) by (variant, story mask, max_step,
    lr, status), ordered as Table 1: max_step descending, then variant, story mask, lr and status (finished
    first)."""
    groups: dict[tuple, Rows] = {}
    for mask in STORY_MASKS:
        for row in current_runs(r for r in rows if story_mask(r) == mask):
            p = row["params"]
            groups.setdefault((p["variant"], mask, p["max_step"], p["lr"], row["status"]), []).append(row)
    order = list(VARIANTS)
    return dict(sorted(groups.items(), key=lambda kv: (
        -kv[0][2], order.index(kv[0][0]), STORY_MASKS.index(kv[0][1]), kv[0][3], kv[0][4] != "finished"
    )))  # fmt: skip


def _best(runs: Rows) -> dict[str, Any]:
    return min(runs, key=lambda r: (r["metrics"]["val/error"], r["seed"]))


def world_model_markdown(rows: Rows) -> str:
    """Table 1: per (variant, story mask, max_step, lr, status) the test error at each test length of the run with
    the lowest validation error (ties: lowest seed) and its fit time, the runs' seeds and their mean test error; then
    the paper's rows. Failed runs are left out; capped runs are grouped apart and show their cap."""
    groups = _groups(rows)
    lengths = sorted({t for runs in groups.values() for t in tested_lengths(runs[0])}
                     | {t for errors in PAPER_TABLE1.values() for t in errors})  # fmt: skip
    head = ["training lengths", "story mask", "max_step", "Adam lr", "status", "runs (seeds)",
            *(f"test T = {t}" if i == 0 else str(t) for i, t in enumerate(lengths)), "fit time",
            "mean test error over runs"]  # fmt: skip
    lines = header(head)
    for (variant, mask, max_step, lr, status), runs in groups.items():
        best = _best(runs)
        errors = errors_by_length(best)
        mean, std = mean_std([r["metrics"]["test/error"] for r in runs])
        seeds = ", ".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
        cells = [
            LABELS.get(variant, variant), mask, str(max_step), f"{lr:g}",
            "finished" if status == "finished" else capped_label(best), f"{len(runs)} ({seeds})",
            *(f"{errors[t]:.3f}" if t in errors else "" for t in lengths),
            "" if best["fit_seconds"] is None else f"{best['fit_seconds']:.0f} s",
            f"{mean:.3f}" + (f" +- {std:.3f}" if len(runs) > 1 else ""),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    for label, errors in PAPER_TABLE1.items():
        cells = [label, "", "", "", "", "", *(f"{errors[t]:g}" if t in errors else "" for t in lengths), "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def selected_markdown(rows: Rows) -> str:
    """Table 1 by the paper's protocol: per (variant, story mask, max_step), the finished run with the lowest final
    validation error over the whole learning-rate x initialisation grid (ties: lower lr, then lower seed), its test
    error at each test length, and beside it the mean +- sample std of the test error over the initialisations of
    the selected learning rate; then the paper's rows. Capped and failed runs take no part in the selection."""
    grids = _finished_grids(rows)
    lengths = sorted({t for runs in grids.values() for t in tested_lengths(runs[0])}
                     | {t for errors in PAPER_TABLE1.values() for t in errors})  # fmt: skip
    head = ["training lengths", "story mask", "max_step", "finished runs (Adam lr: seeds)", "selected lr, seed",
            "its val error", *(f"test T = {t}" if i == 0 else str(t) for i, t in enumerate(lengths)),
            "mean test error at the selected lr (runs)"]  # fmt: skip
    lines = header(head)
    for (variant, mask, max_step), runs in grids.items():
        best = _selected(runs)
        by_lr: dict[float, list[int]] = {}
        for run in sorted(runs, key=lambda r: (r["params"]["lr"], r["seed"])):
            by_lr.setdefault(run["params"]["lr"], []).append(run["seed"])
        grid = "; ".join(f"{lr:g}: {', '.join(map(str, seeds))}" for lr, seeds in by_lr.items())
        chosen = [r for r in runs if r["params"]["lr"] == best["params"]["lr"]]
        mean, std = mean_std([r["metrics"]["test/error"] for r in chosen])
        errors = errors_by_length(best)
        cells = [
            LABELS.get(variant, variant), mask, str(max_step), grid, f"{best['params']['lr']:g}, {best['seed']}",
            f"{best['metrics']['val/error']:.4f}", *(f"{errors[t]:.3f}" if t in errors else "" for t in lengths),
            f"{mean:.3f}" + (f" +- {std:.3f}" if len(chosen) > 1 else "") + f" ({len(chosen)})",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    for label, errors in PAPER_TABLE1.items():
        cells = [label, "", "", "best of 5 initialisations, lr from {0.1, 0.01, 0.001}", "", "",
                 *(f"{errors[t]:g}" if t in errors else "" for t in lengths), ""]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def selected_summary(rows: Rows, mask: str) -> str:
    """:func:`selected_markdown`'s runs with one story mask in one line, for a sentence or a table cell: per max_step,
    each training length's selected run's test error (over all its test lengths) and how many finished runs it was
    selected from (a variant tested on several lengths: its error pooled over them, said so):
    ``max_step 5: T = 10 0.252 (9 runs), T = 20 0.002 (9 runs); max_step 1: ...``."""
    if mask not in STORY_MASKS:
        raise ValueError(f"mask: one of {list(STORY_MASKS)}, got {mask!r}")
    by_step: dict[int, list[str]] = {}
    for (variant, grid_mask, max_step), runs in _finished_grids(rows).items():
        if grid_mask == mask:
            selected = _selected(runs)
            label, lengths = LABELS.get(variant, variant), tested_lengths(selected)
            if len(lengths) > 1:
                label = f"trained on {label}, tested on T = {lengths[0]}-{lengths[-1]} (pooled)"
            entry = f"{label} {selected['metrics']['test/error']:.3f} ({plural(len(runs), 'run')})"
            by_step.setdefault(max_step, []).append(entry)
    if not by_step:
        return f"(no finished runs with the {mask} story mask)"
    return "; ".join(f"max_step {step}: {', '.join(parts)}" for step, parts in by_step.items())


def _finished_grids(rows: Rows) -> dict[tuple, Rows]:
    """The finished runs of each (variant, story mask, max_step): a learning-rate x initialisation grid, in the
    order of :func:`_groups`."""
    grids: dict[tuple, Rows] = {}
    for (variant, mask, max_step, _, status), runs in _groups(rows).items():
        if status == "finished":
            grids.setdefault((variant, mask, max_step), []).extend(runs)
    return grids


def _selected(runs: Rows) -> dict[str, Any]:
    """The paper's protocol: the lowest final validation error (ties: lower lr, then lower seed)."""
    return min(runs, key=lambda r: (r["metrics"]["val/error"], r["params"]["lr"], r["seed"]))


def explore_markdown(rows: Rows, variant: str = "t10", metric: str = "val/error") -> str:
    """The lr x max_step grid at one variant, per story mask: the mean (+- std over runs) of ``metric`` (the last
    validation error), finished and capped runs apart. Failed runs are left out."""
    cells: dict[tuple[str, float, int], dict[str, list[float]]] = {}
    for row in rows:
        if row["status"] != "failed" and row["params"]["variant"] == variant:
            key = (story_mask(row), row["params"]["lr"], row["params"]["max_step"])
            cells.setdefault(key, {}).setdefault(row["status"], []).append(row["metrics"][metric])
    steps = sorted({s for _, _, s in cells})
    moves = [f"moves of 1{'' if s == 1 else f'-{s}'} square{'' if s == 1 else 's'} (`max_step={s}`)" for s in steps]
    head = ["story mask", "Adam lr", *moves]
    lines = header(head)
    for mask, lr in sorted({(mask, lr) for mask, lr, _ in cells}, key=lambda ml: (STORY_MASKS.index(ml[0]), ml[1])):
        row_cells = []
        for step in steps:
            parts = []
            for status, values in sorted(cells.get((mask, lr, step), {}).items(), key=lambda kv: kv[0] != "finished"):
                mean, std = mean_std(values)
                spread = f" +- {std:.3f} ({len(values)} runs)" if len(values) > 1 else ""
                parts.append(f"{mean:.3f}{spread}" + (" (capped)" if status == "capped" else ""))
            row_cells.append("; ".join(parts))
        lines.append(f"| {mask} | {lr:g} | " + " | ".join(row_cells) + " |")
    return "\n".join(lines)


RESULTS_TABLES = {
    "entnet-world-model-selected": ("entnet_world_model", selected_markdown),
    "entnet-world-model": ("entnet_world_model", world_model_markdown),
    "entnet-world-model-t10-explore": ("entnet_world_model_t10_explore", explore_markdown),
    "entnet-world-model-summary.authors-mask": ("entnet_world_model", partial(selected_summary, mask="N(0, 0.1)")),
    "entnet-world-model-summary.ones-mask": ("entnet_world_model", partial(selected_summary, mask="ones")),
}
