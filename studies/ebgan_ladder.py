"""EBGAN-LN against a plain Ladder Network on semi-supervised permutation-invariant MNIST, each seed's two runs on
one labelled subset (arXiv:1609.03126 section 4.2, Table 2; docs/papers/ebgan.md, "EBGAN-LN").

    iclr17 ebgan-ln --config configs/studies/ebgan_ln_table2.yaml run --workers 2
    iclr17 ebgan-ln --config configs/studies/ebgan_ln_table2.yaml table

Each run is ``iclr17 fit --config <model's config for the label count> --seed_everything=<seed>
--data.init_args.seed=<seed>``: the data seed draws the labelled subset and the batch order, so the LN and the
EBGAN-LN of one seed see the same labelled images and the table can pair them. The final weights are tested on the
official 10,000 test images (``test/error``, %); the paper-number setting has no validation split, so nothing is
selected.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from iclr17.studies.fit_study import FitStudy
from iclr17.studies.ledger import current_runs
from iclr17.studies.runner import Run
from iclr17.studies.seed_tables import (
    mean_std_text,
    not_full,
    not_shown_lines,
    plural,
    seeds_text,
    with_not_shown,
)

ERROR = "test/error"
MODEL_NAMES = {"ln": "LN", "ebgan_ln": "EBGAN-LN"}
PAPER_TABLE2 = {  # test error % (mean +- std over 15 seeds) by label count, arXiv:1609.03126 Table 2
    "ebgan_ln": {100: (1.04, 0.12), 200: (0.99, 0.12), 1000: (0.89, 0.04)},
    "ln": {100: (1.36, 0.21), 200: (1.24, 0.09), 1000: (1.04, 0.06)},  # the EBGAN authors' LN reproduction
}


class EbganLadderStudy(FitStudy):
    """Every model x label count x seed, the datamodule's seed tied to the run's seed; one ledger.

    Args:
        models: model name (``ln``, ``ebgan_ln``) -> its fit config with ``{labels}`` in place of the label count,
            e.g. ``ebgan/ebgan_ln_{labels}.yaml``.
        labels: label counts of the runs (Table 2: 100, 200, 1000).
        seeds: each run's ``seed_everything`` and ``data.init_args.seed``.
        **kwargs: :class:`~iclr17.studies.fit_study.FitStudy`'s other arguments (``variants``, ``grid``,
            ``extra``, ``max_time``, ``history``, ``name``, ``ledger_dir``, ``runs_dir``).
    """

    default_name = "ebgan_ln"

    def __init__(
        self,
        models: dict[str, str],
        labels: list[int] | None = None,
        seeds: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        unknown = sorted(set(models) - set(MODEL_NAMES))
        if not models or unknown:
            raise ValueError(f"models: give config templates for some of {sorted(MODEL_NAMES)}, got {sorted(models)}")
        for name, template in models.items():
            if "{labels}" not in template:
                raise ValueError(f"models[{name!r}]={template!r}: the config needs '{{labels}}' for the label count")
        labels = labels or [100]
        if any(n <= 0 or n % 10 for n in labels):
            raise ValueError(f"labels: positive multiples of 10 (class-balanced subsets), got {labels}")
        super().__init__(next(iter(models.values())).format(labels=labels[0]), seeds=seeds, **kwargs)
        self.models, self.labels = dict(models), list(labels)

    def planned(self) -> list[Run]:
        return [
            replace(run, overrides=(*run.overrides, f"--data.init_args.seed={run.seed}"))
            for labels in self.labels
            for model, template in self.models.items()
            for run in self.runs_of(template.format(labels=labels), {"model": model, "labels": labels})
        ]

    def markdown(self, rows: list[dict[str, Any]]) -> str:
        return table2(rows)


# ---- the table: a pure function of ledger rows ---------------------------------------------------------------------


def _point(params: dict[str, Any]) -> tuple[int, str, str]:
    rest = ", ".join(f"{k} {v}" for k, v in params.items() if k not in ("model", "labels"))
    return params["labels"], params["model"], rest


def table2(rows: list[dict[str, Any]]) -> str:
    """Per label count and model: the finished seeds' final test errors, their mean +- std beside the paper's
    (15 seeds), and per label count the paired difference EBGAN-LN - LN over the seeds both finished (same labelled
    subset). Capped and failed runs are counted apart, never shown as full."""
    finished = _finished_errors(rows)
    if not finished:
        return "(no finished runs)"
    lines = [
        "| labels | model | seeds | test error % per seed | ours: mean +- std | paper: mean +- std (15 seeds) "
        "| EBGAN-LN - LN, paired by seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for labels, model, rest in sorted(finished, key=_table_order):
        errors = finished[(labels, model, rest)]
        per_seed = ", ".join(f"{errors[s]:.2f} (seed {s})" for s in sorted(errors))
        paper = PAPER_TABLE2[model].get(labels)
        paired = _paired_text(finished, (labels, model, rest)) if model == "ebgan_ln" else ""
        ours = mean_std_text(list(errors.values()))
        cells = [str(labels), _model_name(model, rest), str(len(errors)), per_seed, ours,
                 f"{paper[0]:.2f} +- {paper[1]:.2f}" if paper else "", paired]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + not_shown_lines(not_full(rows, _run_label)))


def table2_summary(rows: list[dict[str, Any]]) -> str:
    """:func:`table2` in one line, for a sentence or a table cell: per label count and model the test error's
    mean +- std over the finished seeds, each seed's and the paper's; EBGAN-LN - LN paired by seed; the runs that
    are not full counted apart."""
    finished = _finished_errors(rows)
    parts = []
    for point in sorted(finished, key=_table_order):
        labels, model, rest = point
        errors = finished[point]
        seeds = seeds_text(sorted(errors))
        each = ", ".join(f"{errors[s]:.2f}" for s in sorted(errors))
        paper = PAPER_TABLE2[model].get(labels)
        paper_text = f"; paper, 15 seeds: {paper[0]:.2f} +- {paper[1]:.2f}%" if paper else ""
        text = f"{labels} labels, {_model_name(model, rest)} {mean_std_text(list(errors.values()))}% test error "
        text += f"({seeds}: {each}{paper_text})"
        if model == "ebgan_ln" and (paired := _paired_text(finished, point, unit=" points")):
            text += f", EBGAN-LN - LN {paired}"
        parts.append(text)
    return with_not_shown(parts, not_full(rows, _run_label))


def _finished_errors(rows: list[dict[str, Any]]) -> dict[tuple[int, str, str], dict[int, float]]:
    """(labels, model, other params) -> seed -> test error %, over the finished runs."""
    finished: dict[tuple[int, str, str], dict[int, float]] = {}
    for row in current_runs(rows):
        if row["status"] == "finished":
            finished.setdefault(_point(row["params"]), {})[row["seed"]] = row["metrics"][ERROR]
    return finished


def _table_order(point: tuple[int, str, str]) -> tuple:
    labels, model, rest = point
    return labels, rest, list(MODEL_NAMES).index(model)


def _model_name(model: str, rest: str) -> str:
    return MODEL_NAMES[model] + (f" ({rest})" if rest else "")


def _paired_text(
    finished: dict[tuple[int, str, str], dict[int, float]], point: tuple[int, str, str], unit: str = ""
) -> str:
    """EBGAN-LN - LN over the seeds both finished at ``point``'s label count and params, in percentage points:
    ``0.32 +- 0.09 (3 seeds)`` (``unit`` after the numbers), or empty when none."""
    labels, _, rest = point
    errors, ln = finished[point], finished.get((labels, "ln", rest), {})
    differences = [errors[s] - ln[s] for s in sorted(set(errors) & set(ln))]
    return f"{mean_std_text(differences)}{unit} ({plural(len(differences), 'seed')})" if differences else ""


def _run_label(params: dict[str, Any]) -> str:
    """``EBGAN-LN 100 labels``: a run's model and label count, as the not-shown note names it."""
    return f"{MODEL_NAMES[params['model']]} {params['labels']} labels"


RESULTS_TABLES = {
    "ebgan-ln-table2": ("ebgan_ln", table2),
    "ebgan-ln-table2-summary": ("ebgan_ln", table2_summary),
}
