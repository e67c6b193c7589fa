"""The Hessian spectrum before and after training, as a study: ``iclr17 fit`` runs of a config with the
``HessianSpectrum`` callback (method ``exact``), one ledger row per run holding the spectrum's statistics and every
eigenvalue at the start and at the end of training (arXiv:1611.07476, abstract: a bulk at zero and a few
outliers; the width sweep of arXiv:1706.04454; ``docs/papers/hessian.md``).

    iclr17 hessian --config configs/studies/hessian_width_sweep.yaml run
    iclr17 hessian --config configs/studies/hessian_width_sweep.yaml table --figure width_sweep.png

The table and the figure (per run, the ordered eigenvalues after training on a symmetric log scale and the
log-count histograms before and after) are drawn from the rows alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iclr17.functional.hessian import spectrum_statistics
from iclr17.studies.figures import pyplot, save_figure
from iclr17.studies.fit_study import FitStudy
from iclr17.studies.runner import Outcome, Run
from iclr17.studies.seed_tables import plural

SNAPSHOTS = {"start": "before training", "end": "after training"}


def saved_spectrum(out_dir: Path, when: str) -> dict[str, Any]:
    """The ``hessian/<when>_step<N>.npz`` that ``HessianSpectrum(method="exact")`` wrote under ``out_dir``, the first
    by step for ``start`` (a fit resumed from a checkpoint measures its start again, at the resumed weights) and the
    last by step otherwise:
    ``step``, ``n_params``, the statistics (:func:`~iclr17.functional.hessian.spectrum_statistics` of the saved
    eigenvalues, ``num_classes`` as the callback logged it) and ``eigenvalues`` (a list, ascending)."""
    files = sorted(out_dir.rglob(f"hessian/{when}_step*.npz"), key=lambda p: int(p.stem.split("step")[-1]))
    if not files:
        raise FileNotFoundError(f"{out_dir}: no hessian/{when}_step*.npz (HessianSpectrum with save_files=True?)")
    chosen = files[0] if when == "start" else files[-1]
    data = np.load(chosen)
    if "eigenvalues" not in data.files or "frac_zero_rel" not in data.files:
        raise ValueError(f"{chosen}: not a full spectrum; the Hessian study reads HessianSpectrum(method='exact')")
    eigenvalues = torch.from_numpy(data["eigenvalues"]).double()
    extra = {"num_classes": float(data["num_classes"])} if "num_classes" in data.files else {}
    return {
        "step": int(chosen.stem.split("step")[-1]),
        "n_params": len(eigenvalues),
        **spectrum_statistics(eigenvalues),
        **extra,
        "eigenvalues": eigenvalues.tolist(),
    }


class HessianStudy(FitStudy):
    """Exact Hessian spectra before and after training, per run of a config (arXiv:1611.07476).

    The arguments are :class:`~iclr17.studies.fit_study.FitStudy`'s; the config's trainer must have a
    ``HessianSpectrum(method="exact")`` callback (its files are read from the run's folder).
    """

    default_name = "hessian"

    def execute(self, run: Run, out_dir: Path) -> Outcome:
        outcome = super().execute(run, out_dir)
        spectra = {f"hessian/{when}": saved_spectrum(out_dir, when) for when in SNAPSHOTS}
        return Outcome(outcome.status, outcome.steps, outcome.fit_seconds, outcome.metrics | spectra)

    def markdown(self, rows: list[dict[str, Any]]) -> str:
        return sweep_table(rows) if self.grid else spectrum_table(rows)

    def figure(self, rows: list[dict[str, Any]], path: Path) -> bool:
        return spectra_figure(rows, path)


# ---- tables and figure from ledger rows ---------------------------------------------------------------------------


def shown_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a table shows: not failed, with both spectra, the latest of each run (params and seed): a rerun
    (e.g. a new run beside a migrated row without eigenvalues) replaces the earlier row."""
    latest = {}
    for row in rows:
        if row["status"] != "failed" and all(f"hessian/{w}" in row["metrics"] for w in SNAPSHOTS):
            latest[json.dumps([row["params"], row["seed"]], sort_keys=True)] = row
    return list(latest.values())


def run_label(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The run's coordinates in short (``widths 2-5-5-4``), its seed when the rows have several, ``(capped)``."""
    parts = []
    for key, value in row["params"].items():
        text = "-".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key.rsplit('.', 1)[-1]} {text}")
    if len({r["seed"] for r in rows}) > 1:
        parts.append(f"seed {row['seed']}")
    return " ".join(parts) + (" (capped)" if row["status"] == "capped" else "")


def _share(value: float) -> str:
    return f"{value:.1%}"


def _outliers_column(shown: list[dict[str, Any]], title: str) -> str:
    """``title``, with the number of classes when every shown run has the same one."""
    classes = {r["metrics"]["hessian/end"].get("num_classes") for r in shown} - {None}
    return f"{title} ({int(classes.pop())} classes)" if len(classes) == 1 else title


def spectrum_table(rows: list[dict[str, Any]]) -> str:
    """Before and after training, per run: lambda_max, lambda_min, the shares of eigenvalues near zero (absolute
    1e-4 and relative 1e-3 lambda_max), the negative share of the absolute mass and the outlier count."""
    shown = shown_rows(rows)
    outliers = _outliers_column(shown, "outliers")
    lines = [
        "| | lambda_max | lambda_min | share abs(lambda) < 1e-4 | share abs(lambda) < 1e-3 lambda_max | "
        f"negative mass | {outliers} |",
        "|---" * 7 + "|",
    ]
    for row in shown:
        label = run_label(row, shown)
        for when, name in SNAPSHOTS.items():
            s = row["metrics"][f"hessian/{when}"]
            cells = [f"{s['lambda_max']:.3g}", f"{s['lambda_min']:.2g}", _share(s["frac_zero_abs"]),
                     _share(s["frac_zero_rel"]), _share(s["negative_mass"]), f"{s['n_outliers']:.0f}"]  # fmt: skip
            lines.append(f"| {f'{label}: ' if label else ''}{name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_table(rows: list[dict[str, Any]]) -> str:
    """One line per run (a grid point), ordered by parameter count: after training the share near zero (relative
    1e-3 lambda_max), lambda_max, lambda_min and the outliers; before training the share near zero and the
    negative mass."""
    shown = sorted(shown_rows(rows), key=lambda r: r["metrics"]["hessian/end"]["n_params"])
    outliers = _outliers_column(shown, "after: outliers")
    lines = [
        "| run | parameters | after: share abs(lambda) < 1e-3 lambda_max | after: lambda_max | after: lambda_min | "
        f"{outliers} | before: share near zero | before: negative mass |",
        "|---" * 8 + "|",
    ]
    for row in shown:
        start, end = row["metrics"]["hessian/start"], row["metrics"]["hessian/end"]
        cells = [run_label(row, shown), f"{end['n_params']:,}", _share(end["frac_zero_rel"]),
                 f"{end['lambda_max']:.3g}", f"{end['lambda_min']:.2g}", f"{end['n_outliers']:.0f}",
                 _share(start["frac_zero_rel"]), _share(start["negative_mass"])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def near_zero_summary(rows: list[dict[str, Any]]) -> str:
    """The tables' finding in one line, for a sentence or a table cell: per shown run, ordered by parameter count,
    the share of eigenvalues near zero (below 1e-3 lambda_max) after training, before training in brackets, and the
    outliers after training beside the number of classes where known:
    ``widths 2-5-5-4, 69 parameters: 85.5% (53.6% before), 1 outlier (4 classes)``."""
    shown = sorted(shown_rows(rows), key=lambda r: r["metrics"]["hessian/end"]["n_params"])
    if not shown:
        return "(no runs with both spectra)"
    parts = []
    for row in shown:
        start, end = row["metrics"]["hessian/start"], row["metrics"]["hessian/end"]
        label = run_label(row, shown)
        outliers = plural(round(end["n_outliers"]), "outlier")
        if end.get("num_classes") is not None:
            outliers += f" ({int(end['num_classes'])} classes)"
        parts.append(f"{label + ', ' if label else ''}{end['n_params']:,} parameters: {_share(end['frac_zero_rel'])} "
                     f"({_share(start['frac_zero_rel'])} before), {outliers}")  # fmt: skip
    return "; ".join(parts)


def spectra_figure(rows: list[dict[str, Any]], path: Path) -> bool:
    """Per run, the eigenvalues after training in decreasing order (rank / number of parameters, symmetric log
    scale) and the log-count histograms before and after training. Needs rows with eigenvalues."""
    shown = [r for r in shown_rows(rows) if "eigenvalues" in r["metrics"]["hessian/end"]]
    if not shown:
        raise ValueError("no row holds eigenvalues (migrated rows keep statistics only): run the study to draw it")
    fig, (ordered, before, after) = pyplot().subplots(1, 3, figsize=(15, 4))
    for row in shown:
        end = np.sort(row["metrics"]["hessian/end"]["eigenvalues"])[::-1]
        label = f"{run_label(row, shown) or row['config']} ({len(end)} params)"
        ordered.plot(np.arange(1, len(end) + 1) / len(end), end, ".", markersize=2, label=label)
        after.hist(end, bins=100, log=True, histtype="step", label=label)
        start = row["metrics"]["hessian/start"].get("eigenvalues")
        if start is not None:
            before.hist(start, bins=100, log=True, histtype="step", label=label)
    ordered.set(xscale="linear", yscale="symlog", xlabel="rank / number of parameters", ylabel="eigenvalue (symlog)")
    ordered.set_title("after training, ordered")
    before.set(xlabel="eigenvalue", ylabel="count (log)", title="before training")
    after.set(xlabel="eigenvalue", ylabel="count (log)", title="after training")
    ordered.legend(fontsize=7)
    save_figure(fig, path)
    return True


RESULTS_TABLES = {
    "hessian-blobs": ("hessian_blobs", spectrum_table),
    "hessian-width-sweep": ("hessian_width_sweep", sweep_table),
    "hessian-mnist-small": ("hessian_mnist_small", spectrum_table),
    "hessian-blobs-summary": ("hessian_blobs", near_zero_summary),
    "hessian-width-sweep-summary": ("hessian_width_sweep", near_zero_summary),
    "hessian-mnist-small-summary": ("hessian_mnist_small", near_zero_summary),
}
