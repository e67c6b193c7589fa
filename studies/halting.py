"""The universality study: K runs per ensemble of one reference system, their halting times, the statistics of
tau and the paper's figure (arXiv:1511.06444; ``docs/papers/halting_time.md``).

    iclr17 halting-study --config halting_time/study/spin_glass_n32.yaml
    iclr17 halting-study --config halting_time/study/spin_glass_n32.yaml --n_runs=200

Writes ``<out_dir>/<name>.json`` (the configuration, per threshold and ensemble the counts, moments, skewness
with its bootstrap CI and one-sample tests, the two-sample tests between ensembles, and the wall time),
``<name>_times.npz`` (every raw halting time and censoring flag) and ``<name>.png`` (tau histograms with the
N(0, 1) and Gumbel densities, QQ plots). Systems: :class:`SpinGlassRuns`, :class:`ConjugateGradientRuns`,
:class:`MLPRuns`, each running its runs in chunks of ``chunk_size`` vectorised instances.
"""

from __future__ import annotations

import json
import math
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jsonargparse import CLI

from iclr17.callbacks.halting_time.figures import halting_figure
from iclr17.cli import resolve_config_args
from iclr17.datamodules import MNISTDataModule
from iclr17.functional.conjugate_gradient import WishartEnsemble, cg_until_halted, critical_width, wishart_systems
from iclr17.functional.halting import GumbelSide, ensemble_report, halting_times
from iclr17.functional.spin_glass import (
    CouplingEnsemble,
    descend_until_halted,
    random_sphere_points,
    sample_couplings,
    symmetrize,
)
from iclr17.studies.mlp_ensemble import init_ensemble, train_until_halted


def _chunks(n_runs: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(chunk_size, n_runs - start)) for start in range(0, n_runs, chunk_size)]


def _generator(seed: int, ensemble_index: int, chunk: int) -> torch.Generator:
    """Instance and starting-point seeds: one generator per (study seed, ensemble, chunk)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + ensemble_index * 10_007 + chunk)


class HaltingSystem(ABC):
    """A reference system: ``run`` returns ``(first, censored)`` ``(n_runs, E)`` int64/bool arrays of halting
    times for each of its E ``thresholds``."""

    thresholds: list[float]
    ensembles: tuple[str, ...]
    unit: str = "iterations"

    @abstractmethod
    def run(self, ensemble: str, ensemble_index: int, n_runs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Halting times and censoring flags of ``n_runs`` runs of ``ensemble``, seeded by ``seed``."""


class SpinGlassRuns(HaltingSystem):
    """p = 3 spherical spin glass, projected gradient descent (arXiv:1511.06444).

    Args:
        n_spins: N (200 in the authors' Lua code; the CPU study uses less).
        eps: projected-gradient-norm thresholds, decreasing (``main.lua``: 0.01 at N = 200).
        lr: step size (``main.lua``: 0.2).
        lr_decay: ``decay`` in ``lr / (1 + t decay)`` (``main.lua``: 0).
        max_steps: censoring cap.
        chunk_size: instances per tensor program (memory ``4 N^3`` bytes each, twice while symmetrising).
        dtype: ``float32`` or ``float64`` (the Lua code: float64).
        device: where the descent runs (``cpu``, ``cuda``); couplings are drawn on the CPU, so runs are the same.
    """

    ensembles = ("gaussian", "bernoulli", "uniform", "exponential")

    def __init__(
        self,
        n_spins: int = 200,
        eps: list[float] | None = None,
        lr: float = 0.2,
        lr_decay: float = 0.0,
        max_steps: int = 10_000,
        chunk_size: int = 500,
        dtype: Literal["float32", "float64"] = "float32",
        device: str = "cpu",
    ) -> None:
        self.n_spins, self.lr, self.lr_decay, self.max_steps = n_spins, lr, lr_decay, max_steps
        self.device = device
        self.thresholds = eps or [0.01]
        self.chunk_size, self.dtype = chunk_size, getattr(torch, dtype)

    def run(self, ensemble: CouplingEnsemble, ensemble_index: int, n_runs: int, seed: int):
        firsts, censored = [], []
        eps = torch.tensor(self.thresholds, dtype=self.dtype, device=self.device)
        for chunk, (_, size) in enumerate(_chunks(n_runs, self.chunk_size)):
            generator = _generator(seed, ensemble_index, chunk)
            couplings = sample_couplings(size, self.n_spins, ensemble, generator, self.dtype)
            w = random_sphere_points(size, self.n_spins, generator, self.dtype).to(self.device)
            couplings = symmetrize(couplings.to(self.device))
            first, last, _ = descend_until_halted(couplings, w, eps, self.lr, self.lr_decay, self.max_steps)
            times, mask = halting_times(first.cpu(), last)
            firsts.append(times.numpy())
            censored.append(mask.numpy())
        return np.concatenate(firsts), np.concatenate(censored)


class ConjugateGradientRuns(HaltingSystem):
    """Conjugate gradient on critically scaled Wishart systems (Deift, Menon, Olver, Trogdon, PNAS 2014), float64.

    Args:
        n: N (our choice; Deift et al. use a few hundred; ``docs/papers/halting_time.md``).
        c: the critical-scaling constant in ``M = N + floor(sqrt(4 c N))``.
        eps: residual-norm thresholds (``||b|| = 1``).
        max_steps: censoring cap.
        chunk_size: systems per tensor program.
        device: where CG runs (systems are drawn on the CPU).
    """

    ensembles = ("gaussian", "bernoulli")

    def __init__(
        self, n: int = 100, c: float = 1.0, eps: list[float] | None = None, max_steps: int = 10_000,
        chunk_size: int = 1000, device: str = "cpu",
    ) -> None:  # fmt: skip
        self.n, self.c, self.max_steps, self.chunk_size, self.device = n, c, max_steps, chunk_size, device
        self.thresholds = eps or [1e-8]

    def run(self, ensemble: WishartEnsemble, ensemble_index: int, n_runs: int, seed: int):
        firsts, censored = [], []
        eps = torch.tensor(self.thresholds, dtype=torch.float64, device=self.device)
        for chunk, (_, size) in enumerate(_chunks(n_runs, self.chunk_size)):
            generator = _generator(seed, ensemble_index, chunk)
            a, b = wishart_systems(size, self.n, critical_width(self.n, self.c), ensemble, generator)
            first, last, _ = cg_until_halted(a.to(self.device), b.to(self.device), eps, self.max_steps)
            times, mask = halting_times(first.cpu(), last)
            firsts.append(times.numpy())
            censored.append(mask.numpy())
        return np.concatenate(firsts), np.concatenate(censored)


class MLPRuns(HaltingSystem):
    """MLPs trained by SGD on MNIST or on random inputs, halting when the full training loss is below theta
    (arXiv:1511.06444). Every run has its own initialisation seed and sample order; the data are the same
    ``subset_size`` training images (or their random replacement) for all runs.

    Args:
        widths: layer widths (the paper's 784-500-300-10; the CPU study uses a narrow net).
        theta: full-training-loss thresholds, decreasing.
        lr: SGD step size (0.1, our choice: the paper gives none).
        batch_size: minibatch size (100, as in the paper).
        every_n_steps: full-loss evaluation period, in SGD steps.
        subset_size: training images used (None: all 50,000 after the validation split).
        normalization: ``MNISTDataModule`` normalisation.
        data_dir: data root (default ``$ICLR17_DATA_DIR``).
        max_steps: censoring cap.
        chunk_size: networks per vmapped program.
        device: where the networks train.
    """

    ensembles = ("mnist", "random")

    def __init__(
        self,
        widths: list[int] | None = None,
        theta: list[float] | None = None,
        lr: float = 0.1,
        batch_size: int = 100,
        every_n_steps: int = 1,
        subset_size: int | None = 1000,
        normalization: Literal["none", "unit", "standard", "tanh"] = "standard",
        data_dir: str | None = None,
        max_steps: int = 20_000,
        chunk_size: int = 250,
        device: str = "cpu",
    ) -> None:
        self.widths = widths or [784, 500, 300, 10]
        self.thresholds = theta or [0.1]
        self.lr, self.batch_size, self.every_n_steps = lr, batch_size, every_n_steps
        self.subset_size, self.normalization, self.data_dir = subset_size, normalization, data_dir
        self.max_steps, self.chunk_size, self.device = max_steps, chunk_size, device

    def data(self, inputs: Literal["mnist", "random"]) -> tuple[torch.Tensor, torch.Tensor]:
        datamodule = MNISTDataModule(
            data_dir=self.data_dir, val_size=10_000, normalization=self.normalization, flatten=True,
            subset_size=self.subset_size, inputs=inputs, seed=0,
        )  # fmt: skip
        datamodule.setup("fit")
        return datamodule.train_set.tensors

    def run(self, ensemble: Literal["mnist", "random"], ensemble_index: int, n_runs: int, seed: int):
        x, y = (t.to(self.device) for t in self.data(ensemble))
        firsts, censored = [], []
        thresholds = torch.tensor(self.thresholds)
        for start, size in _chunks(n_runs, self.chunk_size):
            run_seeds = [seed * 1_000_003 + ensemble_index * 100_000 + start + i for i in range(size)]
            base, params = init_ensemble(self.widths, run_seeds)
            params = {k: v.to(self.device) for k, v in params.items()}
            order_seeds = [s + 50_000 for s in run_seeds]
            first, last = train_until_halted(
                base, params, x, y, thresholds, order_seeds, self.lr, self.batch_size, self.every_n_steps,
                self.max_steps,
            )  # fmt: skip
            times, mask = halting_times(first, last)
            firsts.append(times.numpy())
            censored.append(mask.numpy())
        return np.concatenate(firsts), np.concatenate(censored)


def study(
    system: HaltingSystem,
    name: str,
    n_runs: int = 2000,
    ensembles: list[str] | None = None,
    seed: int = 0,
    out_dir: str = "results/halting_time",
    gumbel_side: GumbelSide = "right",
    n_resamples: int = 2000,
    times_from: str | None = None,
) -> dict:
    """Run ``n_runs`` instances of every ensemble of ``system``; write the raw times, then the JSON and figure.

    Args:
        system: the reference system and its parameters.
        name: stem of the output files.
        n_runs: runs per ensemble (our default 2,000; the paper uses thousands).
        ensembles: subset of the system's ensembles (default: all).
        seed: study seed; instance seeds derive from it, the ensemble and the chunk.
        out_dir: output folder.
        gumbel_side: Gumbel orientation for the reference law (default maximum type, ``right``: our assumption).
        n_resamples: bootstrap resamples for the confidence intervals.
        times_from: re-analyse the raw times of an earlier run (its ``<name>_times.npz``) instead of running.
    """
    ensembles = ensembles or list(system.ensembles)
    unknown = set(ensembles) - set(system.ensembles)
    if unknown:
        raise ValueError(f"ensembles {sorted(unknown)} are not among {type(system).__name__}'s {system.ensembles}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    times, censored, seconds = {}, {}, {}
    if times_from is not None:
        saved = np.load(times_from)
        if not np.allclose(saved["thresholds"], system.thresholds):
            raise ValueError(f"{times_from} holds thresholds {saved['thresholds']}, the config {system.thresholds}")
        for ensemble in ensembles:
            times[ensemble], censored[ensemble] = saved[f"{ensemble}_times"], saved[f"{ensemble}_censored"]
    else:
        for ensemble in ensembles:
            start = time.perf_counter()
            times[ensemble], censored[ensemble] = system.run(ensemble, system.ensembles.index(ensemble), n_runs, seed)
            seconds[ensemble] = time.perf_counter() - start
            print(f"{name}: {ensemble} {n_runs} runs in {seconds[ensemble]:.1f} s", flush=True)
        arrays = {f"{k}_times": v for k, v in times.items()} | {f"{k}_censored": v for k, v in censored.items()}
        # the raw times first: whatever the analysis does, the runs are kept
        np.savez_compressed(out / f"{name}_times.npz", thresholds=np.array(system.thresholds), **arrays)
    reports, panels = {}, {}
    for e, threshold in enumerate(system.thresholds):
        label = f"{threshold:g}"
        reports[label], panels[f"threshold {label}"] = ensemble_report(
            {k: v[:, e] for k, v in times.items()}, {k: v[:, e] for k, v in censored.items()},
            gumbel_side, n_resamples, seed,
        )  # fmt: skip
    config = {k: str(v) if isinstance(v, torch.dtype) else v for k, v in vars(system).items()}
    config["system"] = type(system).__name__
    result = {
        "name": name,
        "system": config,
        "n_runs": n_runs,
        "seed": seed,
        "seconds": seconds,
        "times_from": times_from,
        "by_threshold": reports,
    }
    (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=_jsonable))
    panels = {label: taus for label, taus in panels.items() if taus}
    figure = halting_figure(panels, title=name, gumbel_side=gumbel_side)
    figure.savefig(out / f"{name}.png", dpi=110)
    _print_summary(result)
    return result


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _print_summary(result: dict) -> None:
    for label, report in result["by_threshold"].items():
        pooled = report.get("pooled")
        if pooled is None:
            print(f"threshold {label}: fewer than 2 halted runs in every ensemble; no statistics")
            continue
        print(f"threshold {label}: pooled skewness {pooled['skewness']:.3f} CI {pooled['skewness_ci95']}")
        if report["n_censored"]:
            print(f"  WARNING: {report['n_censored']} censored runs are left out of tau (raise max_steps)")
        for ensemble, stats_ in report["ensembles"].items():
            if stats_["insufficient"]:
                print(f"  {ensemble}: n={stats_['n']} censored={stats_['n_censored']}: too few halted runs")
                continue
            tests = stats_["tests"]
            print(
                f"  {ensemble}: n={stats_['n']} censored={stats_['n_censored']} mean={stats_['mean']:.1f} "
                f"std={stats_['std']:.2f} skew={stats_['skewness']:.3f} "
                f"KS p normal={tests['normal']['ks_pvalue']:.3g} gumbel={tests['gumbel']['ks_pvalue']:.3g}"
            )
        for pair, test in report["universality"].items():
            print(f"  {pair}: KS p={test['ks_pvalue']:.3g} AD p={test['ad_pvalue']:.3g}")


def main(args: list[str] | None = None) -> dict:
    """Command line: ``iclr17 halting-study --config <yaml>`` (or ``python -m iclr17.studies.halting``);
    shipped configs are found by name, e.g. ``halting_time/study/spin_glass_n32.yaml``."""
    return CLI(study, args=resolve_config_args(sys.argv[1:] if args is None else args), as_positional=False)


if __name__ == "__main__":  # through the package, so the systems' classes are the importable ones
    from iclr17.studies.halting import main as package_main

    package_main()
