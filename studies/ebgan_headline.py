"""EBGAN's shipped MNIST configs at their shipped budget, several seeds each: I' after every epoch, the final
I' on 10,000 samples and each run's final sample grid (arXiv:1609.03126 section 4.1, Fig. 4; docs/papers/ebgan.md).

    iclr17 ebgan-headline --config configs/studies/ebgan_headline.yaml run --workers 2
    iclr17 ebgan-headline --config configs/studies/ebgan_headline.yaml table --figure results/ebgan/headline/curves.png
    iclr17 ebgan-headline --config configs/studies/ebgan_slow_start.yaml run   # variants of one config, 4 epochs

Each run is ``iclr17 fit --config <shipped config> [variant overrides] --seed_everything=<seed>`` (a
:class:`~iclr17.studies.fit_study.FitStudy` run of several configs); the ledger row holds ``val/mnist_score by
epoch`` (I' on one generated digit per validation image after each epoch), the final weights' ``test/mnist_score``
(10,000 samples, one per test image) and the energies; ``samples_dir/<params>_seed<seed>.png`` (``<params>``: the
run's config name, variant and grid values joined by ``_``) is a 10 x 10 grid of the final G (eval mode) on noise
drawn from ``torch.Generator().manual_seed(0)``, the same z for every run.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import save_image

from iclr17.studies.figures import pyplot, save_figure
from iclr17.studies.fit_study import FitStudy
from iclr17.studies.ledger import current_runs
from iclr17.studies.runner import Outcome, Run
from iclr17.studies.seed_tables import mean_std_text, not_full, not_shown_lines, seeds_text, with_not_shown

CURVE = "val/mnist_score by epoch"
FINAL = "test/mnist_score"


class EbganHeadlineStudy(FitStudy):
    """The shipped configs (by name), each under every variant, grid point and seed; one ledger.

    Args:
        fit_configs: name -> fit config (a path or a shipped config's name); the name is the run's ``config``
            param and the stem of its sample grid.
        variants: named override lists tried on every config (default: the config as shipped), e.g. to find what
            drives a slow start; ``grid``: override key -> values (FitStudy's), e.g. a shorter budget.
        seeds: ``seed_everything`` of the runs.
        samples_dir: folder of the final sample grids (committed beside the ledger).
        target: the I' every seed of an EBGAN config should reach (the table says whether it does).
        **kwargs: :class:`~iclr17.studies.fit_study.FitStudy`'s other arguments (``extra``, ``max_time``,
            ``history``, ``metrics``, ``name``, ``ledger_dir``, ``runs_dir``).
    """

    default_name = "ebgan_headline"

    def __init__(
        self,
        fit_configs: dict[str, str],
        variants: dict[str, list[str]] | None = None,
        grid: dict[str, list[Any]] | None = None,
        seeds: list[int] | None = None,
        samples_dir: str = "results/ebgan/headline",
        target: float = 6.0,
        **kwargs: Any,
    ) -> None:
        if not fit_configs:
            raise ValueError("fit_configs: give at least one name -> config")
        super().__init__(next(iter(fit_configs.values())), variants=variants, grid=grid, seeds=seeds, **kwargs)
        self.fit_configs, self.samples_dir, self.target = dict(fit_configs), Path(samples_dir), target
        if "val/mnist_score" not in self.history:
            self.history = ["val/mnist_score", *self.history]

    def planned(self) -> list[Run]:
        return [run for name, config in self.fit_configs.items() for run in self.runs_of(config, {"config": name})]

    def execute(self, run: Run, out_dir: Path) -> Outcome:
        fit, outcome = self.fit_and_evaluate(run, out_dir)
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        stem = "_".join(str(v) for v in run.params.values()).replace("/", "-").replace(".", "_")
        save_image(final_samples(fit.model), self.samples_dir / f"{stem}_seed{run.seed}.png", nrow=10,
                   normalize=True, value_range=(-1, 1))  # fmt: skip
        return outcome

    def markdown(self, rows: list[dict[str, Any]]) -> str:
        return headline_table(rows, self.target)

    def figure(self, rows: list[dict[str, Any]], path: Path) -> bool:
        curves_figure(rows, path)
        return True


@torch.no_grad()
def final_samples(model: torch.nn.Module, n: int = 100) -> torch.Tensor:
    """``n`` samples of the trained G in eval mode, on noise from a fixed CPU generator (seed 0)."""
    model.eval()
    return model(model.sample_noise(n, torch.Generator().manual_seed(0))).cpu()


# ---- table and figure: pure functions of ledger rows --------------------------------------------------------------


def run_label(params: dict[str, Any]) -> str:
    """``mnist_ebgan`` for a shipped config, ``mnist_ebgan, init_0.02, 4`` with a variant and a grid point."""
    return ", ".join(str(v) for v in params.values())


def _by_run_label(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in current_runs(rows):
        if row["status"] == "finished":
            groups.setdefault(run_label(row["params"]), []).append(row)
    return {name: sorted(group, key=lambda r: r["seed"]) for name, group in groups.items()}


def headline_table(rows: list[dict[str, Any]], target: float = 6.0) -> str:
    """Per config: finished seeds, I' after each epoch (mean over seeds), the final I' per seed and its mean +- std,
    and whether every seed reaches ``target``. Capped and failed runs are counted apart, never shown as full."""
    if not rows:
        return "(no finished runs)"
    lines = [
        "| config | seeds | epochs | I' after epoch 1, 2, ... (mean over seeds) | final I' per seed (10,000 samples) "
        f"| final I' mean +- std | every seed shown >= {target:g} |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, group in _by_run_label(rows).items():
        curves = [r["metrics"][CURVE] for r in group]
        epochs = min(len(c) for c in curves)
        mean_curve = ", ".join(f"{statistics.mean(c[e] for c in curves):.2f}" for e in range(epochs))
        finals = [r["metrics"][FINAL] for r in group]
        per_seed = ", ".join(f"{v:.2f} (seed {r['seed']})" for v, r in zip(finals, group, strict=True))
        reached = "yes" if all(v >= target for v in finals) else "no"
        cells = [name, str(len(group)), str(epochs), mean_curve, per_seed, mean_std_text(finals), reached]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + not_shown_lines(not_full(rows, run_label)))


def headline_summary(rows: list[dict[str, Any]]) -> str:
    """:func:`headline_table` in one line, for a sentence or a table cell: per config its epochs and final I' mean
    +- std over the finished seeds, then each seed's; the runs that are not full counted apart."""
    parts = []
    for name, group in _by_run_label(rows).items():
        finals = [r["metrics"][FINAL] for r in group]
        epochs = min(len(r["metrics"][CURVE]) for r in group)
        each = ", ".join(f"{v:.2f}" for v in finals)
        seeds = seeds_text([r["seed"] for r in group])
        parts.append(f"{name} {mean_std_text(finals)} ({epochs} epochs, {seeds}: {each})")
    return with_not_shown(parts, not_full(rows, run_label))


def curves_figure(rows: list[dict[str, Any]], path: Path) -> None:
    """I' after each epoch, one panel per config, one line per seed."""
    groups = _by_run_label(rows)
    if not groups:
        raise ValueError("no finished runs in the ledger: run the study first")
    figure, axes = pyplot().subplots(1, len(groups), figsize=(4 * len(groups), 3.2), squeeze=False, sharey=True)
    for ax, (name, group) in zip(axes[0], groups.items(), strict=True):
        for row in group:
            curve = row["metrics"][CURVE]
            ax.plot(range(1, len(curve) + 1), curve, marker="o", label=f"seed {row['seed']}")
        ax.set(title=name, xlabel="epoch", ylabel="I' (10,000 samples)")
        ax.legend()
    save_figure(figure, path)


RESULTS_TABLES = {
    "ebgan-headline": ("ebgan_headline", headline_table),
    "ebgan-headline-summary": ("ebgan_headline", headline_summary),
    "ebgan-slow-start": ("ebgan_slow_start", headline_table),
}
