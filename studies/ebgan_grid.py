"""The MNIST architecture grid of EBGAN's Table 1 (arXiv:1609.03126 section 4.1): EBGAN vs GAN runs, I' per
run, and the Fig. 2 histograms, as a study of the runner (one ledger row per grid point).

    iclr17 ebgan-grid --config configs/studies/ebgan_grid_reduced.yaml run      # 32 runs, 200 batches each
    iclr17 ebgan-grid --config configs/studies/ebgan_grid_reduced.yaml table --figure histograms.png
    iclr17 ebgan-grid --config configs/studies/ebgan_grid.yaml status           # the paper's 512 + 6144 runs

Every axis defaults to the paper's values (512 EBGAN + 6144 GAN runs); fewer values per axis, and/or ``subset``
(a seeded random sample of N points per model), give a reduced grid. EBGAN runs use Adam lr 1e-3 and m = 10 on
the l2 energy; GAN runs take (optimD, optimG, lr) from the GAN axes (each optimizer independently). Each run is
seeded with its index in the full, ordered grid of its model, trains for ``epochs`` epochs of ``limit_batches``
batches (all when None) on MNIST in [-1, 1] with batch 64, and is scored by I' on ``score_samples`` generated
digits with the shipped classifier (G in eval mode); its 10 x 10 sample grid goes to ``samples.png`` in its run
folder. A run keeps an epoch-end checkpoint in its run folder while it trains and, stopped and started again,
continues from its last whole epoch (:mod:`iclr17.studies.fit_resume`). The budget (epochs, limit_batches,
score_samples, val_size) is the run's config digest and part of its params, so one ledger holds several budgets
and the tables group by them. The models' runs are taken in turn, and a subset's in the order drawn, so a grid
run over several sessions compares equal numbers of each, uniformly sampled, at every stage.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import shlex
import statistics
import time
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from scipy.stats import mannwhitneyu
from torchvision.utils import save_image

from iclr17.datamodules import MNISTDataModule
from iclr17.functional.ebgan import MANN_WHITNEY_MAX_WORK, mann_whitney_exact_work, mann_whitney_greater_exact
from iclr17.modules.ebgan.metrics import MNISTScore
from iclr17.modules.ebgan.module import EBGAN
from iclr17.modules.ebgan.nets import MNISTDiscriminator, MNISTGenerator
from iclr17.studies.figures import pyplot, save_figure
from iclr17.studies.fit_resume import ResumableStudy, discard, last_checkpoint, resume_callbacks
from iclr17.studies.ledger import current_runs, digest
from iclr17.studies.runner import Outcome, Run, source_commit
from iclr17.studies.seed_tables import plural
from iclr17.studies.trainers import quiet_trainer

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
CONFIG = "iclr17.studies.ebgan_grid.build_module"  # no config file: a run is build_module(point) under its budget
BUDGET_KEYS = ("epochs", "limit_batches", "score_samples", "val_size")
PANELS = {"(a) all": None, "(b) nLayer <= 4": 4, "(c) nLayer <= 3": 3}  # Fig. 2: max nLayerG and nLayerD


@dataclass(frozen=True)
class GridPoint:
    """One run of Table 1: the architecture, the optimizers and (EBGAN) lambda_PT."""

    model: str
    n_layer_g: int
    n_layer_d: int
    size_g: int
    size_d: int
    dropout_d: bool
    optim_d: str
    optim_g: str
    lr: float
    pt_weight: float = 0.0

    @property
    def name(self) -> str:
        return "_".join(str(v) for v in asdict(self).values())

    @property
    def overrides(self) -> tuple[str, ...]:
        """The point as ``--key=value`` strings, in field order (part of the run's key)."""
        return tuple(f"--{k}={v}" for k, v in asdict(self).items())


def table1_grid(
    model: str,
    n_layer_g: list[int] = (2, 3, 4, 5),
    n_layer_d: list[int] = (2, 3, 4, 5),
    size_g: list[int] = (400, 800, 1600, 3200),
    size_d: list[int] = (128, 256, 512, 1024),
    dropout_d: list[bool] = (True, False),
    gan_optim: list[str] = ("adam", "sgd"),
    gan_lr: list[float] = (0.01, 0.001, 0.0001),
    pt_weight: list[float] = (0.0,),
) -> list[GridPoint]:
    """The ordered grid for ``ebgan`` (512 points with the defaults) or ``gan`` (6144)."""
    arch = list(itertools.product(n_layer_g, n_layer_d, size_g, size_d, dropout_d))
    if model == "ebgan":
        return [GridPoint("ebgan", *a, "adam", "adam", 1e-3, pt) for a in arch for pt in pt_weight]
    if model == "gan":
        optim = itertools.product(gan_optim, gan_optim, gan_lr)
        return [GridPoint("gan", *a, od, og, lr) for a, (od, og, lr) in itertools.product(arch, list(optim))]
    raise ValueError(f"model must be ebgan or gan, got {model!r}")


def build_module(point: GridPoint) -> EBGAN:
    head = "autoencoder" if point.model == "ebgan" else "binary"
    generator = MNISTGenerator(z_dim=100, n_layers=point.n_layer_g, size=point.size_g)
    discriminator = MNISTDiscriminator(
        point.n_layer_d, point.size_d, dropout=0.5 if point.dropout_d else 0.0, head=head
    )
    return EBGAN(
        generator,
        discriminator,
        loss=point.model,
        margin=10.0,
        energy="l2",
        pt_weight=point.pt_weight,
        optimizer_g=lambda params: OPTIMIZERS[point.optim_g](params, lr=point.lr),
        optimizer_d=lambda params: OPTIMIZERS[point.optim_d](params, lr=point.lr),
    )


@torch.no_grad()
def score_generator(module: EBGAN, n_samples: int, seed: int, batch: int = 1000) -> tuple[float, torch.Tensor]:
    """I' of ``n_samples`` generated digits (G in eval mode) and the first 100 of them."""
    module.eval()
    metric, rng = MNISTScore().to(module.device), torch.Generator().manual_seed(seed)
    first = None
    for start in range(0, n_samples, batch):
        images = module(module.sample_noise(min(batch, n_samples - start), rng))
        metric.update(images)
        first = images[:100] if first is None else first
    return float(metric.compute()), first


def budget_digest(budget: dict[str, Any]) -> str:
    """The config digest of a run: the canonical JSON of the settings that change a run but are not its point."""
    return digest(json.dumps({k: budget[k] for k in BUDGET_KEYS}, sort_keys=True))


class EbganGridStudy(ResumableStudy):
    """EBGAN's Table 1 MNIST grid (arXiv:1609.03126 section 4.1): I' of EBGAN vs GAN runs, Fig. 2.

    Args:
        models: which models' grids to run.
        n_layer_g: nLayerG values (G's hidden layers).
        n_layer_d: nLayerD values (D's layers).
        size_g: sizeG values (G's hidden width).
        size_d: sizeD values (D's hidden width).
        dropout_d: dropoutD values (dropout 0.5 in D or none).
        gan_optim: optimizers of the GAN runs (for D and G independently).
        gan_lr: learning rates of the GAN runs.
        pt_weight: lambda_PT values of the EBGAN runs (0: plain EBGAN).
        subset: a seeded random sample of this many points per model (None: every point).
        epochs: training epochs per run.
        limit_batches: training batches per epoch (None: all).
        score_samples: generated digits I' is computed on.
        data_dir: data root (default ``$ICLR17_DATA_DIR``, else ./data); not part of a run's identity.
        val_size: training images held out (not used, but they shrink an epoch).
        accelerator: Lightning accelerator of the runs (``cpu``, ``gpu``); not part of a run's identity (the
            ledger's ``machine`` says where it ran).
        **kwargs: :class:`~iclr17.studies.runner.Study`'s arguments (name, ledger_dir, runs_dir).
    """

    default_name = "ebgan_grid"

    def __init__(
        self,
        models: tuple[Literal["ebgan", "gan"], ...] = ("ebgan", "gan"),
        n_layer_g: tuple[int, ...] = (2, 3, 4, 5),
        n_layer_d: tuple[int, ...] = (2, 3, 4, 5),
        size_g: tuple[int, ...] = (400, 800, 1600, 3200),
        size_d: tuple[int, ...] = (128, 256, 512, 1024),
        dropout_d: tuple[bool, ...] = (True, False),
        gan_optim: tuple[Literal["adam", "sgd"], ...] = ("adam", "sgd"),
        gan_lr: tuple[float, ...] = (0.01, 0.001, 0.0001),
        pt_weight: tuple[float, ...] = (0.0,),
        subset: int | None = None,
        epochs: int = 1,
        limit_batches: int | None = None,
        score_samples: int = 10_000,
        data_dir: str | None = None,
        val_size: int = 10_000,
        accelerator: str = "cpu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.models, self.subset, self.data_dir, self.accelerator = tuple(models), subset, data_dir, accelerator
        self.axes = dict(
            n_layer_g=list(n_layer_g), n_layer_d=list(n_layer_d), size_g=list(size_g), size_d=list(size_d),
            dropout_d=[bool(d) for d in dropout_d], gan_optim=list(gan_optim), gan_lr=list(gan_lr),
            pt_weight=list(pt_weight),
        )  # fmt: skip
        self.budget = {"epochs": epochs, "limit_batches": limit_batches, "score_samples": score_samples,
                       "val_size": val_size}  # fmt: skip

    def planned(self) -> list[Run]:
        """The models' runs taken in turn (EBGAN, GAN, EBGAN, ...); each model's in grid order, or with ``subset``
        in the order drawn, so that the first runs of a subset (a grid that takes several sessions) are themselves
        a uniform sample, in equal numbers for the two models."""
        config_digest = budget_digest(self.budget)
        by_model = []
        for model in self.models:
            grid = list(enumerate(table1_grid(model, **self.axes)))
            if self.subset is not None and self.subset < len(grid):
                grid = random.Random(0).sample(grid, self.subset)  # in the order drawn: every prefix is uniform
            by_model.append(
                [Run(CONFIG, config_digest, p.overrides, seed, asdict(p) | self.budget) for seed, p in grid]
            )
        return [run for turn in itertools.zip_longest(*by_model) for run in turn if run is not None]

    def execute(self, run: Run, out_dir: Path) -> Outcome:
        point = GridPoint(**{k: run.params[k] for k in GridPoint.__dataclass_fields__})
        datamodule = MNISTDataModule(data_dir=self.data_dir, batch_size=64, normalization="tanh",
                                     val_size=self.budget["val_size"])  # fmt: skip
        pl.seed_everything(run.seed, workers=True, verbose=False)
        module = build_module(point)
        checkpoint, recorder = resume_callbacks(out_dir, *source_commit())
        trainer = quiet_trainer(max_epochs=self.budget["epochs"], limit_train_batches=self.budget["limit_batches"],
                                callbacks=[checkpoint, recorder], accelerator=self.accelerator)  # fmt: skip
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=last_checkpoint(out_dir))
        fit_seconds, metrics = recorder.whole_fit(time.perf_counter() - start)
        score, samples = score_generator(module, self.budget["score_samples"], run.seed)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_image(samples, out_dir / "samples.png", nrow=10, normalize=True, value_range=(-1, 1))
        discard(out_dir)  # only now: a run stopped while scoring resumes from its last epoch and trains nothing
        return Outcome("finished", trainer.global_step, fit_seconds, metrics | {"score": score})

    def command(self, run: Run) -> str:
        flags = [f"--name={self.name}", f"--models={shlex.quote(json.dumps(list(self.models)))}"]
        flags += [f"--{k}={shlex.quote(json.dumps(v))}" for k, v in self.axes.items()]
        flags += [f"--{k}={json.dumps(v)}" for k, v in [("subset", self.subset), *self.budget.items()]]
        return f"iclr17 ebgan-grid {' '.join(flags)} run  # the grid; this run is seed {run.seed}, key {run.key}"

    def markdown(self, rows: list[dict[str, Any]]) -> str:
        return summary_table(rows)

    def figure(self, rows: list[dict[str, Any]], path: Path) -> bool:
        """Fig. 2 for this study's budget (the ledger may hold others)."""
        histogram_figure([r for r in rows if r["config_digest"] == budget_digest(self.budget)], path)
        return True


# ---- tables and figure: pure functions of ledger rows ------------------------------------------------------------


def budget_label(params: dict[str, Any]) -> str:
    """``200 batches`` (one epoch cut at 200 batches), ``1 epoch``, ``3 epochs of 100 batches``."""
    epochs, limit = params["epochs"], params["limit_batches"]
    plural = "epoch" if epochs == 1 else "epochs"
    if limit is None:
        return f"{epochs} {plural}"
    return f"{limit} batches" if epochs == 1 else f"{epochs} {plural} of {limit} batches"


def group_of(params: dict[str, Any]) -> tuple[str, float]:
    """``(model, lambda_PT)``: EBGAN, EBGAN-PT per weight, GAN."""
    return params["model"], float(params["pt_weight"])


def group_label(group: tuple[str, float], pt_weights: set[float]) -> str:
    """``GAN``, ``EBGAN`` (lambda_PT 0), ``EBGAN-PT`` (with its weight when ``pt_weights`` holds several)."""
    model, pt = group
    if model == "gan":
        return "GAN"
    if pt == 0:
        return "EBGAN"
    return "EBGAN-PT" if len(pt_weights - {0.0}) == 1 else f"EBGAN-PT {pt:g}"


def summaries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per budget (and status) and group: runs, median I', runs with I' > 1 and the best run's params and I'.

    Ordered by budget (epochs, batches, scored samples, held-out images), finished before capped, then EBGAN,
    EBGAN-PT by weight, GAN.
    """
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for row in current_runs(rows):
        p = row["params"]
        cells.setdefault((budget_of(p), row["status"], group_of(p)), []).append(row)

    def order(key: tuple) -> tuple:
        budget, status, (model, pt) = key
        return *budget_order(budget), status == "capped", model == "gan", pt

    result = []
    for key in sorted(cells, key=order):
        group = cells[key]
        scores = [float(r["metrics"]["score"]) for r in group]
        best = max(group, key=lambda r: float(r["metrics"]["score"]))
        result.append({
            "budget": dict(zip(BUDGET_KEYS, key[0], strict=True)), "status": key[1], "group": key[2],
            "runs": len(group), "median": statistics.median(scores), "above_one": sum(s > 1 for s in scores),
            "best_score": float(best["metrics"]["score"]), "best_params": best["params"],
        })  # fmt: skip
    return result


def budget_of(params: dict[str, Any]) -> tuple:
    """A run's budget as a tuple in ``BUDGET_KEYS`` order."""
    return tuple(params[k] for k in BUDGET_KEYS)


def budget_order(budget: tuple) -> tuple:
    """Sort key of a budget tuple: epochs, batches (all last), scored samples, held-out images."""
    epochs, limit, samples, val = budget
    return epochs, math.inf if limit is None else limit, samples, val


def budget_cell(summary: dict[str, Any], scored: bool) -> str:
    """The table's budget column: ``200 batches``, plus the scored samples, plus ``capped`` for a capped run."""
    label = budget_label(summary["budget"])
    if scored:
        label += f" ({summary['budget']['score_samples']:,} scored samples)"
    return label + (", capped" if summary["status"] == "capped" else "")


def budget_table(rows: list[dict[str, Any]]) -> str:
    """RESULTS.md's table: median I' / runs with I' > 1 of each group (columns) per budget (rows)."""
    stats = summaries(rows)
    pts = {s["group"][1] for s in stats if s["group"][0] == "ebgan"}
    groups = sorted({s["group"] for s in stats}, key=lambda g: (g[0] == "gan", g[1]))
    by_budget: dict[str, dict[tuple, str]] = {}
    for s in stats:
        cell = f"{s['median']:.2f} / {s['above_one']} of {s['runs']}"
        by_budget.setdefault(budget_cell(s, scored=True), {})[s["group"]] = cell
    lines = ["| budget | " + " | ".join(group_label(g, pts) for g in groups) + " |", "|---" * (1 + len(groups)) + "|"]
    lines += [f"| {b} | " + " | ".join(c.get(g, "") for g in groups) + " |" for b, c in by_budget.items()]
    return "\n".join(lines)


def reduced_summary(rows: list[dict[str, Any]]) -> str:
    """:func:`budget_table`'s longest budget in one line, for a sentence or a table cell: median I' (runs with
    I' > 1 of the group's runs) per group, finished runs only."""
    every = summaries(rows)
    stats = [s for s in every if s["status"] == "finished"]
    if not stats:
        return "(no finished runs)"
    pts = {s["group"][1] for s in every if s["group"][0] == "ebgan"}  # as budget_table names the groups
    longest = stats[-1]["budget"]  # summaries() orders by budget
    groups = [f"{group_label(s['group'], pts)} {s['median']:.2f} ({s['above_one']} of {s['runs']})"
              for s in stats if s["budget"] == longest]  # fmt: skip
    capped = sum(s["runs"] for s in every if s["budget"] == longest and s["status"] == "capped")
    line = f"{budget_cell(stats[-1], scored=True)}, median I' (runs with I' > 1): {', '.join(groups)}"
    return line + (f"; {plural(capped, 'capped run')} not shown" if capped else "")


def architecture(params: dict[str, Any]) -> str:
    """``nG_nD_sG_sD`` (``_dropout`` when D has dropout), plus the optimizers and lr of a GAN run."""
    name = f"{params['n_layer_g']}_{params['n_layer_d']}_{params['size_g']}_{params['size_d']}"
    name += "_dropout" if params["dropout_d"] else ""
    if params["model"] == "gan":
        name += f", {params['optim_d']}/{params['optim_g']} lr {params['lr']:g}"
    return name


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Per budget and group: runs, median I', runs with I' > 1, and the best run (results/ebgan/README.md)."""
    stats = summaries(rows)
    pts = {s["group"][1] for s in stats if s["group"][0] == "ebgan"}
    lines = [
        "| budget | model | runs | median I' | runs with I' > 1 | best I' (architecture nG_nD_sG_sD) |",
        "|---|---|---|---|---|---|",
    ]
    for s in stats:
        model = group_label(s["group"], pts)
        model += f" (lambda_PT {s['group'][1]:g})" if s["group"][0] == "ebgan" else ""
        best = f"{s['best_score']:.3f} ({architecture(s['best_params'])})"
        lines.append(
            f"| {budget_cell(s, scored=True)} | {model} | {s['runs']} | {s['median']:.3f} | "
            f"{s['above_one']}/{s['runs']} | {best} |"
        )
    return "\n".join(lines)


def histogram_counts(rows: list[dict[str, Any]], bins: list[float]) -> dict[str, dict[str, list[int]]]:
    """Fig. 2's counts: per panel (all runs, nLayerG and nLayerD <= 4, <= 3) and model, I' counts per bin.

    Bins are half-open ``[b_i, b_{i+1})`` except the last, which is closed (numpy.histogram's rule); scores
    outside ``[bins[0], bins[-1]]`` are not counted.
    """
    counts = {panel: {"ebgan": [0] * (len(bins) - 1), "gan": [0] * (len(bins) - 1)} for panel in PANELS}
    for row in current_runs(rows):
        p, score = row["params"], float(row["metrics"]["score"])
        if not bins[0] <= score <= bins[-1]:
            continue
        index = min(bisect_right(bins, score) - 1, len(bins) - 2)
        for panel in PANELS:
            if in_panel(p, panel):
                counts[panel][p["model"]][index] += 1
    return counts


def in_panel(params: dict[str, Any], panel: str) -> bool:
    """Whether a run belongs to a Fig. 2 panel (its nLayerG and nLayerD at most the panel's limit)."""
    limit = PANELS[panel]
    return limit is None or (params["n_layer_g"] <= limit and params["n_layer_d"] <= limit)


def _spread(scores: list[float]) -> str:
    """``median (lower quartile-upper quartile)`` of I' values, numpy's linear percentiles; a dash when none."""
    if not scores:
        return "-"
    low, median, high = np.percentile(scores, [25, 50, 75])
    return f"{median:.2f} ({low:.2f}-{high:.2f})"


def finished_by_budget(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(budget label, its finished runs)`` per budget in budget order (a rerun replaces its point's earlier row);
    empty when no run has finished."""
    finished = [r for r in current_runs(rows) if r["status"] == "finished"]
    budgets = sorted({budget_of(r["params"]) for r in finished}, key=budget_order)
    return [(budget_label(dict(zip(BUDGET_KEYS, budget, strict=True))),
             [r for r in finished if budget_of(r["params"]) == budget]) for budget in budgets]  # fmt: skip


P_FLOOR = 1e-6  # below it, the normal approximation's tail is orders of magnitude off the exact p: "< 1e-6"


def one_sided_p(ebgan: list[float], gan: list[float]) -> str:
    """The one-sided Mann-Whitney U test of the paper's claim that EBGAN's I' sits to the right of the GAN's, to 3
    figures: exact (:func:`~iclr17.functional.ebgan.mann_whitney_greater_exact`, ties by midranks) within its
    default work budget, which covers the 96 + 96 subset; beyond it (the full grid's 512 against 6,144) scipy's
    normal approximation, said in the cell and shown as ``< 1e-6`` below ``P_FLOOR``. A dash below 2 runs a side."""
    if min(len(ebgan), len(gan)) < 2:
        return "-"
    if mann_whitney_exact_work(ebgan, gan) <= MANN_WHITNEY_MAX_WORK:
        return f"{mann_whitney_greater_exact(ebgan, gan):.3g}"
    p = mannwhitneyu(ebgan, gan, alternative="greater", method="asymptotic").pvalue
    return f"{'< 1e-6' if p < P_FLOOR else f'{p:.3g}'} (normal approximation)"


def fig2_table(rows: list[dict[str, Any]]) -> str:
    """Fig. 2 in numbers, per budget and panel (all nets, nLayerG and nLayerD <= 4, <= 3): the EBGAN and GAN runs,
    their I' median and quartiles, and :func:`one_sided_p` of the paper's claim that EBGAN's I' sits to the right
    of the GAN's. Finished runs only (a rerun replaces its point's earlier row); EBGAN counts its PT runs. A run
    whose I' is not finite (a diverged generator) is counted in its runs cell but left out of the statistics, which
    say so."""
    by_budget = finished_by_budget(rows)
    if not by_budget:
        return "(no finished runs)"
    lines = [
        "| budget | panel | EBGAN runs | GAN runs | EBGAN I' median (quartiles) | GAN I' median (quartiles) | "
        "Mann-Whitney p, EBGAN > GAN |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, of_budget in by_budget:
        for panel in PANELS:
            scores = {model: [float(r["metrics"]["score"]) for r in of_budget
                              if r["params"]["model"] == model and in_panel(r["params"], panel)]
                      for model in ("ebgan", "gan")}  # fmt: skip
            runs = {model: _runs_cell(values) for model, values in scores.items()}
            ebgan, gan = ([v for v in scores[m] if math.isfinite(v)] for m in ("ebgan", "gan"))
            p = one_sided_p(ebgan, gan)
            lines.append(
                f"| {label} | {panel} | {runs['ebgan']} | {runs['gan']} | {_spread(ebgan)} | {_spread(gan)} | {p} |"
            )
    return "\n".join(lines)


def subset_runs_table(rows: list[dict[str, Any]]) -> str:
    """The runs behind Fig. 2 in numbers, per budget and model: how many, their I' (lowest, median, highest; runs
    above 1, runs at 0.00 to two decimals) and their fit times; then every GAN run whose I' reaches the lowest
    EBGAN I' of its budget (a GAN setting that competes), highest first. Finished runs only, the non-finite
    I' of a diverged run counted among the runs but not in the I' columns."""
    by_budget = finished_by_budget(rows)
    if not by_budget:
        return "(no finished runs)"
    lines = [
        "| budget | model | runs | I' lowest / median / highest | runs with I' > 1 | runs with I' 0.00 | "
        "fit seconds a run, lowest-highest | fit CPU-hours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    competing = []
    for label, of_budget in by_budget:
        ebgan_runs = [r for r in of_budget if r["params"]["model"] == "ebgan"]
        lowest_ebgan = min(_finite_scores(ebgan_runs), default=math.inf)
        for model in ("ebgan", "gan"):
            runs = [r for r in of_budget if r["params"]["model"] == model]
            if not runs:
                continue
            scores = _finite_scores(runs)
            seconds = [float(r["fit_seconds"]) for r in runs]
            spread = f"{scores[0]:.2f} / {statistics.median(scores):.2f} / {scores[-1]:.2f}" if scores else "-"
            lines.append(
                f"| {label} | {model.upper()} | {_runs_cell([float(r['metrics']['score']) for r in runs])} | {spread} "
                f"| {sum(s > 1 for s in scores)} | {sum(round(s, 2) == 0 for s in scores)} | "
                f"{min(seconds):,.0f}-{max(seconds):,.0f} | {sum(seconds) / 3600:.1f} |"
            )
        competing += [(label, r) for r in of_budget
                      if r["params"]["model"] == "gan" and float(r["metrics"]["score"]) >= lowest_ebgan]  # fmt: skip
    lines += ["", "| budget | GAN run at or above the lowest EBGAN I' (nG_nD_sG_sD, optimisers D/G, lr) | I' |",
              "|---|---|---|"]  # fmt: skip
    competing.sort(key=lambda item: -float(item[1]["metrics"]["score"]))
    lines += [
        f"| {label} | {architecture(r['params'])} | {float(r['metrics']['score']):.2f} |" for label, r in competing
    ]
    if not competing:
        lines.append("| - | none | - |")
    return "\n".join(lines)


def settings_table(rows: list[dict[str, Any]]) -> str:
    """The runs per model and optimiser setting (Table 1's optimD, optimG and lr axes, arXiv:1609.03126 section 4.1),
    per budget: how many, their I' median (lowest-highest), how many reach I' above 1, and :func:`one_sided_p` of
    EBGAN's runs against that setting's. The pooled GAN histogram of Fig. 2 mixes every setting of the paper's
    optimiser grid; this table separates them, so EBGAN's own setting (Adam/Adam 0.001) can be read against the GAN
    trained the same way. Finished runs only; a non-finite I' is counted in the runs cell and left out of the rest."""
    by_budget = finished_by_budget(rows)
    if not by_budget:
        return "(no finished runs)"
    lines = [
        "| budget | model | optimisers D/G, lr | runs | I' median (lowest-highest) | runs with I' > 1 | "
        "Mann-Whitney p, EBGAN > this setting |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, of_budget in by_budget:
        ebgan = _finite_scores(r for r in of_budget if r["params"]["model"] == "ebgan")
        settings: dict[tuple[str, str, str, float], list[dict[str, Any]]] = {}
        for r in of_budget:
            q = r["params"]
            settings.setdefault((q["model"], q["optim_d"], q["optim_g"], q["lr"]), []).append(r)
        for (model, optim_d, optim_g, lr), runs in sorted(settings.items(), key=lambda kv: (*kv[0][:3], -kv[0][3])):
            scores = _finite_scores(runs)
            spread = f"{statistics.median(scores):.2f} ({scores[0]:.2f}-{scores[-1]:.2f})" if scores else "-"
            p = "-" if model == "ebgan" else one_sided_p(ebgan, scores)
            lines.append(
                f"| {label} | {model.upper()} | {optim_d}/{optim_g}, {lr:g} | "
                f"{_runs_cell([float(r['metrics']['score']) for r in runs])} | {spread} | "
                f"{sum(v > 1 for v in scores)} | {p} |"
            )
    return "\n".join(lines)


def subset_summary(rows: list[dict[str, Any]], planned: int | None = None) -> str:
    """Fig. 2 (a) in one line, for a sentence or a table cell: per budget, the finished runs of each model, their
    I' median (lowest-highest) and :func:`one_sided_p` of the all-nets panel, as in :func:`fig2_table`; the budget
    is named when there are several. A run whose I' is not finite is counted, said so, and left out of the rest.
    ``planned``, the study's runs per model (its config's ``subset``), makes the counts say how much of the study
    has run (``161 of 192 runs (80 of 96 EBGAN, ...)``), so a partial sample reads as one."""
    by_budget = finished_by_budget(rows)
    if not by_budget:
        return "(no finished runs)"
    parts = []
    for label, of_budget in by_budget:
        runs = {model: [r for r in of_budget if r["params"]["model"] == model] for model in ("ebgan", "gan")}
        scores = {model: _finite_scores(of_model) for model, of_model in runs.items()}
        spread = {model: f"{statistics.median(v):.2f} ({v[0]:.2f}-{v[-1]:.2f})" if v else "-"
                  for model, v in scores.items()}  # fmt: skip
        test = one_sided_p(scores["ebgan"], scores["gan"])
        counted = f"{len(of_budget)} of {len(runs) * planned} runs" if planned else plural(len(of_budget), "run")
        models = []
        for model, of_model in runs.items():
            left_out = len(of_model) - len(scores[model])
            note = f" ({left_out} with non-finite I', left out)" if left_out else ""
            models.append(f"{len(of_model)}{f' of {planned}' if planned else ''} {model.upper()}{note}")
        parts.append(
            ("" if len(by_budget) == 1 else f"{label}: ") + f"{counted} ({', '.join(models)}), I' median (range) "
            f"EBGAN {spread['ebgan']}, GAN {spread['gan']}, one-sided Mann-Whitney p {test}"
        )
    return "; ".join(parts)


def _finite_scores(runs: Iterable[dict[str, Any]]) -> list[float]:
    """The runs' finite I', lowest first (a diverged generator's non-finite I' left out)."""
    return sorted(score for r in runs if math.isfinite(score := float(r["metrics"]["score"])))


def _runs_cell(scores: list[float]) -> str:
    """``12``, or ``12 (1 non-finite I', left out)``."""
    bad = sum(not math.isfinite(v) for v in scores)
    return f"{len(scores)} ({bad} non-finite I', left out)" if bad else str(len(scores))


def score_bins(rows: list[dict[str, Any]], n: int = 20) -> list[float]:
    """``n`` equal bins from the lowest to the highest finite I' of the rows (0 to 1 when there are none)."""
    scores = _finite_scores(current_runs(rows))
    low, high = min(scores, default=0.0), max(scores, default=1.0)
    high = high if high > low else low + 1.0
    return [low + (high - low) * i / n for i in range(n + 1)]


def histogram_figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Fig. 2: I' histograms of EBGAN vs GAN runs for all runs, nLayer <= 4 and nLayer <= 3."""
    bins = score_bins(rows)
    counts = histogram_counts(rows, bins)
    figure, axes = pyplot().subplots(1, len(PANELS), figsize=(12, 3.2))
    for ax, (panel, by_model) in zip(axes, counts.items(), strict=True):
        for model, color in (("ebgan", "tab:blue"), ("gan", "tab:orange")):
            n = sum(by_model[model])
            ax.stairs(by_model[model], bins, fill=True, alpha=0.6, color=color, label=f"{model.upper()} ({n})")
        ax.set(title=panel, xlabel="I'", ylabel="runs")
        ax.legend()
    save_figure(figure, path)


SUBSET_PLANNED = 96  # configs/studies/ebgan_grid_subset.yaml's `subset` (a test holds the two equal)

RESULTS_TABLES = {
    "ebgan-grid-reduced": ("ebgan_grid_reduced", budget_table),
    "ebgan-grid-reduced-summary": ("ebgan_grid_reduced", reduced_summary),
    "ebgan-grid-subset": ("ebgan_grid_subset", fig2_table),
    "ebgan-grid-subset-runs": ("ebgan_grid_subset", subset_runs_table),
    "ebgan-grid-subset-settings": ("ebgan_grid_subset", settings_table),
    "ebgan-grid-subset-summary": ("ebgan_grid_subset", partial(subset_summary, planned=SUBSET_PLANNED)),
}
