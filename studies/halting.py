"""The universality study: many runs per ensemble of one reference system, their halting times T, the statistics of
tau = (T - mean T) / std T and the paper's figure (arXiv:1511.06444, abstract and introduction;
``docs/papers/halting_time.md``).

    iclr17 halting --config configs/studies/halting_spin_glass_n32.yaml run
    iclr17 halting --config configs/studies/halting_spin_glass_n32.yaml table --figure spin_glass.png

One run per ensemble: ``n_runs`` instances of the system (:class:`SpinGlassRuns`, :class:`ConjugateGradientRuns`,
:class:`QRRuns`, :class:`MLPRuns`), vectorised in chunks, whose ledger row holds every raw halting time and the
censored runs at each threshold. The statistics (``iclr17.functional.halting.ensemble_report``: counts, moments,
skewness of tau with its bootstrap CI, one-sample tests against N(0, 1) and the Gumbel, two-sample tests between
ensembles) are computed from the rows alone, seeded by the study's seed, so a table is the same whenever it is
drawn. Rows of several seeds of one system pool their runs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from iclr17.datamodules import MNISTDataModule
from iclr17.functional.conjugate_gradient import WishartEnsemble, cg_until_halted, critical_width, wishart_systems
from iclr17.functional.halting import GumbelSide, ensemble_report, halting_times
from iclr17.functional.qr_algorithm import WignerEnsemble, qr_until_deflated, wigner_matrices
from iclr17.functional.spin_glass import (
    CouplingEnsemble,
    descend_until_halted,
    random_sphere_points,
    sample_couplings,
    symmetrize,
)
from iclr17.studies.figures import save_figure
from iclr17.studies.ledger import digest, row_key
from iclr17.studies.mlp_ensemble import MODELS, RULES, Model, Rule, init_ensemble, train_until_halted
from iclr17.studies.runner import Outcome, Run, Study
from iclr17.studies.seed_tables import plural, span


def _chunks(n_runs: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(chunk_size, n_runs - start)) for start in range(0, n_runs, chunk_size)]


def _generator(seed: int, ensemble_index: int, chunk: int) -> torch.Generator:
    """Instance and starting-point seeds: one generator per (study seed, ensemble, chunk)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + ensemble_index * 10_007 + chunk)


class HaltingSystem(ABC):
    """A reference system: ``run`` returns ``(first, censored)`` ``(n_runs, E)`` int64/bool arrays of halting
    times for each of its E ``thresholds``. Every constructor argument is kept as the attribute of its name, so
    :meth:`arguments` describes the system exactly."""

    ensembles: ClassVar[tuple[str, ...]]
    size_name: ClassVar[str]  # the argument that sets the instances' size, a coordinate of the study's table
    threshold_name: ClassVar[str]  # the argument that lists the thresholds, decreasing

    @abstractmethod
    def run(self, ensemble: str, ensemble_index: int, n_runs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Halting times and censoring flags of ``n_runs`` runs of ``ensemble``, seeded by ``seed``; a system may
        add a third element, ``{metric name: (n_runs, E) array}`` of per-run measurements at halting (the ledger
        row keeps each as ``[e][k]``, like the times)."""

    @property
    def thresholds(self) -> list[float]:
        return list(getattr(self, self.threshold_name))

    def arguments(self) -> dict[str, Any]:
        """Every constructor argument by name, defaults resolved."""
        return {
            name: getattr(self, name) for name in inspect.signature(type(self).__init__).parameters if name != "self"
        }

    def description(self, n_runs: int) -> str:
        """The canonical JSON of the system (class name, arguments) and ``n_runs``: a study run's config."""
        return json.dumps({"system": type(self).__name__, "init_args": self.arguments(), "n_runs": n_runs},
                          sort_keys=True)  # fmt: skip


class SpinGlassRuns(HaltingSystem):
    """p = 3 spherical spin glass, projected gradient descent (arXiv:1511.06444).

    Args:
        n_spins: N (200 in the authors' Lua code; the CPU study uses less).
        eps: projected-gradient-norm thresholds, decreasing (``main.lua``: 0.01 at N = 200).
        lr: step size (``main.lua``: 0.2).
        lr_decay: ``decay`` in ``lr / (1 + t decay)`` (``main.lua``: 0).
        max_steps: censoring cap.
        chunk_size: instances drawn at once (memory ``4 N^3`` bytes each, twice while symmetrising); they descend
            in lockstep groups of ``iclr17.functional.spin_glass.lockstep_group_size`` (all of them on a GPU).
        dtype: ``float32`` or ``float64`` (the Lua code: float64).
        device: where the descent runs (``cpu``, ``cuda``); couplings are drawn on the CPU, so runs are the same.
    """

    ensembles = ("gaussian", "bernoulli", "uniform", "exponential")
    size_name, threshold_name = "n_spins", "eps"

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
        self.eps = [float(e) for e in eps or [0.01]]
        self.chunk_size, self.dtype, self.device = chunk_size, dtype, device

    def run(self, ensemble: CouplingEnsemble, ensemble_index: int, n_runs: int, seed: int):
        firsts, censored = [], []
        dtype = getattr(torch, self.dtype)
        eps = torch.tensor(self.eps, dtype=dtype, device=self.device)
        for chunk, (_, size) in enumerate(_chunks(n_runs, self.chunk_size)):
            generator = _generator(seed, ensemble_index, chunk)
            couplings = sample_couplings(size, self.n_spins, ensemble, generator, dtype)
            w = random_sphere_points(size, self.n_spins, generator, dtype).to(self.device)
            couplings = symmetrize(couplings.to(self.device))
            first, last, _ = descend_until_halted(couplings, w, eps, self.lr, self.lr_decay, self.max_steps)
            times, mask = halting_times(first.cpu(), last)
            firsts.append(times.numpy())
            censored.append(mask.numpy())
        return np.concatenate(firsts), np.concatenate(censored)


class ConjugateGradientRuns(HaltingSystem):
    """Conjugate gradient on critically scaled Wishart systems (Deift, Menon, Olver, Trogdon, PNAS 2014), float64.

    Args:
        n: N (500 in the paper's CG experiment, arXiv:1511.06444; ``docs/papers/halting_time.md``).
        c: the critical-scaling constant in ``M = N + floor(sqrt(4 c N))``; ``c = 1`` at N = 500 gives the paper's
            ``M = N + 2 floor(sqrt(N)) = 544``, ``c = 0`` gives ``M = N``, where the paper finds universality broken.
        eps: residual-norm thresholds (absolute: ``||b|| = 1`` for ``rhs="sphere"``, about ``sqrt(N / 3)`` for
            ``uniform``).
        max_steps: censoring cap.
        chunk_size: systems per tensor program.
        device: where CG runs (systems are drawn on the CPU).
        rhs: ``b`` uniform on the unit sphere (``sphere``, ours) or with i.i.d. U(-1, 1) entries (``uniform``,
            the paper's).
        start: CG from ``x0 = 0`` (``zero``, ours) or from ``x0 = b`` (``rhs``, the paper's).
    """

    ensembles = ("gaussian", "bernoulli")
    size_name, threshold_name = "n", "eps"

    def __init__(
        self, n: int = 100, c: float = 1.0, eps: list[float] | None = None, max_steps: int = 10_000,
        chunk_size: int = 1000, device: str = "cpu", rhs: Literal["sphere", "uniform"] = "sphere",
        start: Literal["zero", "rhs"] = "zero",
    ) -> None:  # fmt: skip
        if rhs not in ("sphere", "uniform"):
            raise ValueError(f"ConjugateGradientRuns: rhs must be 'sphere' or 'uniform', got rhs={rhs!r}")
        if start not in ("zero", "rhs"):
            raise ValueError(f"ConjugateGradientRuns: start must be 'zero' or 'rhs', got start={start!r}")
        self.n, self.c, self.max_steps, self.chunk_size, self.device = n, c, max_steps, chunk_size, device
        self.eps = [float(e) for e in eps or [1e-8]]
        self.rhs, self.start = rhs, start

    def arguments(self) -> dict[str, Any]:
        """Every constructor argument by name; ``rhs`` and ``start`` only when not the defaults, so the studies
        recorded before they existed keep their config digests."""
        arguments = super().arguments()
        for name, default in (("rhs", "sphere"), ("start", "zero")):
            if arguments[name] == default:
                del arguments[name]
        return arguments

    def run(self, ensemble: WishartEnsemble, ensemble_index: int, n_runs: int, seed: int):
        firsts, censored = [], []
        eps = torch.tensor(self.eps, dtype=torch.float64, device=self.device)
        for chunk, (_, size) in enumerate(_chunks(n_runs, self.chunk_size)):
            generator = _generator(seed, ensemble_index, chunk)
            a, b = wishart_systems(size, self.n, critical_width(self.n, self.c), ensemble, generator, rhs=self.rhs)
            a, b = a.to(self.device), b.to(self.device)
            first, last, _ = cg_until_halted(a, b, eps, self.max_steps, x0=b if self.start == "rhs" else None)
            times, mask = halting_times(first.cpu(), last)
            firsts.append(times.numpy())
            censored.append(mask.numpy())
        return np.concatenate(firsts), np.concatenate(censored)


class QRRuns(HaltingSystem):
    """The unshifted QR eigenvalue algorithm on Wigner matrices until its first deflation, float64: the Gumbel-like
    QR experiment of arXiv:1511.06444 (after Pfrang, Deift, Menon 2014; ``docs/papers/halting_time.md``).
    Each run also records the k of its first deflation (``deflated_k``, -1 if censored).

    Args:
        n: N (150 in the paper's QR experiment).
        eps: thresholds on ``min_k ||X_n(k)||_F``, decreasing (the paper: 1e-10).
        max_steps: censoring cap.
        chunk_size: matrices drawn (one generator per chunk, as for the other systems) and iterated at once; a
            matrix leaves its chunk once it has deflated at every eps, and its times do not depend on the others.
        device: where the QR steps run (matrices are drawn on the CPU, so runs are the same).
    """

    ensembles = ("gaussian", "bernoulli")
    size_name, threshold_name = "n", "eps"

    def __init__(
        self, n: int = 150, eps: list[float] | None = None, max_steps: int = 10_000, chunk_size: int = 100,
        device: str = "cpu",
    ) -> None:  # fmt: skip
        if n < 2:
            raise ValueError(f"QRRuns: n must be at least 2 (a first deflation needs k = 1 .. n - 1), got n={n}")
        self.n, self.max_steps, self.chunk_size, self.device = n, max_steps, chunk_size, device
        self.eps = [float(e) for e in eps or [1e-10]]
        if min(self.eps) <= 0:
            raise ValueError(f"QRRuns: eps must be positive thresholds, got eps={self.eps}")

    def run(self, ensemble: WignerEnsemble, ensemble_index: int, n_runs: int, seed: int):
        firsts, censored, deflated = [], [], []
        eps = torch.tensor(self.eps, dtype=torch.float64, device=self.device)
        for chunk, (_, size) in enumerate(_chunks(n_runs, self.chunk_size)):
            h = wigner_matrices(size, self.n, ensemble, _generator(seed, ensemble_index, chunk)).to(self.device)
            first, last, k = qr_until_deflated(h, eps, self.max_steps)
            times, mask = halting_times(first.cpu(), last)
            firsts.append(times.numpy())
            censored.append(mask.numpy())
            deflated.append(k.cpu().numpy())
        return np.concatenate(firsts), np.concatenate(censored), {"deflated_k": np.concatenate(deflated)}


class MLPRuns(HaltingSystem):
    """MLPs (or, with ``model="convnet"``, the paper's convnet variant) trained by SGD on MNIST or on random inputs,
    halting when the full training loss is below theta, or when its mean successive decrease is (the paper's plateau
    rule; arXiv:1511.06444), or when the norm of its gradient is (the paper's gradient-norm variant). Every run has
    its own initialisation seed and sample order; the data are the same ``subset_size`` training images (or their
    random replacement) for all runs, or with ``sample_size`` each run's own sample of them (the paper: 30,000 of
    the 60,000, ``pool="all"``).

    Args:
        widths: layer widths (the paper's 784-500-300-10, the default; the CPU study uses a narrow net); with
            ``model="convnet"``, ``[c1, c2, hidden, classes]`` of :class:`~iclr17.modules.nets.ConvNet`
            (default ``[20, 50, 500, 10]``, LeNet-like: ours, the paper gives no layers).
        theta: thresholds of the rule, decreasing: the full training loss (``train_loss_below``), its mean
            decrease per evaluation over the last ``window`` evaluations (``loss_plateau``) or the norm of its
            gradient (``grad_norm_below``).
        lr: SGD step size (0.1, our choice: the paper gives none).
        batch_size: minibatch size (100, as in the paper).
        every_n_steps: full-loss evaluation period, in SGD steps.
        subset_size: training images used (None: all 50,000 after the validation split).
        normalization: ``MNISTDataModule`` normalisation.
        data_dir: data root (default ``$ICLR17_DATA_DIR``).
        max_steps: censoring cap.
        chunk_size: networks per vmapped program.
        device: where the networks train.
        rule: ``train_loss_below``, ``loss_plateau`` or ``grad_norm_below``
            (``iclr17.studies.mlp_ensemble.train_until_halted``).
        window: successive loss differences the plateau rule averages (ours; the paper gives none).
        sample_size: each run trains on its own ``sample_size`` of the pool, drawn (without replacement) from its
            order seed (the paper: 30,000); None: every run on the whole pool (the shipped reduced study).
        eval_size: the rule's full training loss is taken over the first ``eval_size`` of a run's samples, a fixed
            random subset (ours, for cost; None: all of them).
        pool: the training images runs draw from: ``train_split``, the 50,000 left by the 10,000-image validation
            split, then ``subset_size``; ``all``, the 60,000 training images (the paper).
        accuracy_at_halting: record each run's accuracy on its own training samples and on the 10,000 test images
            (random inputs: their random replacements) when it halts at each threshold (ledger metrics
            ``train_accuracy``, ``test_accuracy``; measuring leaves training as it was).
        model: the network: ``mlp`` (:class:`~iclr17.modules.nets.MLP`) or ``convnet`` (the paper's "convnet" on
            MNIST, arXiv:1511.06444; its layers are ours, ``docs/papers/halting_time.md``), on the same flattened
            images, rules and ensemble trainer.
    """

    ensembles = ("mnist", "random")
    size_name, threshold_name = "widths", "theta"

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
        rule: Rule = "train_loss_below",
        window: int = 10,
        sample_size: int | None = None,
        eval_size: int | None = None,
        pool: Literal["train_split", "all"] = "train_split",
        accuracy_at_halting: bool = False,
        model: Model = "mlp",
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"MLPRuns: model must be one of {', '.join(MODELS)}, got model={model!r}")
        if model == "convnet" and widths is not None and len(widths) != 4:
            raise ValueError(f"MLPRuns: widths must be [c1, c2, hidden, classes] for the convnet, got widths={widths}")
        if rule not in RULES:
            raise ValueError(f"MLPRuns: rule must be one of {', '.join(RULES)}, got rule={rule!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"MLPRuns: window must be an int >= 1, got window={window!r}")
        if sample_size is not None and (isinstance(sample_size, bool) or not isinstance(sample_size, int)
                                        or sample_size < 1):  # fmt: skip
            raise ValueError(f"MLPRuns: sample_size must be a positive int or None, got sample_size={sample_size!r}")
        if eval_size is not None and (isinstance(eval_size, bool) or not isinstance(eval_size, int) or eval_size < 1):
            raise ValueError(f"MLPRuns: eval_size must be a positive int or None, got eval_size={eval_size!r}")
        if pool not in ("train_split", "all"):
            raise ValueError(f"MLPRuns: pool must be 'train_split' or 'all', got pool={pool!r}")
        self.rule, self.window = rule, window
        self.sample_size, self.eval_size, self.pool = sample_size, eval_size, pool
        self.accuracy_at_halting, self.model = accuracy_at_halting, model
        self.widths = widths or ([784, 500, 300, 10] if model == "mlp" else [20, 50, 500, 10])
        self.theta = [float(t) for t in theta or [0.1]]
        self.lr, self.batch_size, self.every_n_steps = lr, batch_size, every_n_steps
        self.subset_size, self.normalization, self.data_dir = subset_size, normalization, data_dir
        self.max_steps, self.chunk_size, self.device = max_steps, chunk_size, device

    def arguments(self) -> dict[str, Any]:
        """Every constructor argument by name; ``rule`` and ``window`` only for the rules other than
        ``train_loss_below``; ``sample_size``, ``eval_size``, ``pool``, ``accuracy_at_halting``, ``model`` only when
        not the defaults, so the studies recorded before them keep the config digests of their ledgers."""
        arguments = super().arguments()
        if self.rule == "train_loss_below":
            del arguments["rule"], arguments["window"]
        optional = (("sample_size", None), ("eval_size", None), ("pool", "train_split"), ("accuracy_at_halting", False),
                    ("model", "mlp"))  # fmt: skip
        for name, default in optional:
            if arguments[name] == default:
                del arguments[name]
        return arguments

    def data(self, inputs: Literal["mnist", "random"]) -> tuple[torch.Tensor, ...]:
        """``(x, y, x_test, y_test)``: the pool and the test images (or their random replacements)."""
        datamodule = MNISTDataModule(
            data_dir=self.data_dir, val_size=10_000, normalization=self.normalization, flatten=True,
            subset_size=self.subset_size, inputs=inputs, seed=0,
            val_source="test" if self.pool == "all" else "train_split",
        )  # fmt: skip
        datamodule.setup("fit")
        return (*datamodule.train_set.tensors, *datamodule.test_set.tensors)

    def run(self, ensemble: Literal["mnist", "random"], ensemble_index: int, n_runs: int, seed: int):
        """Halting times and censoring flags; with ``accuracy_at_halting`` also ``{"train_accuracy",
        "test_accuracy"}``, ``(n_runs, E)`` arrays of the accuracies at halting."""
        x, y, x_test, y_test = (t.to(self.device) for t in self.data(ensemble))
        firsts, censored, accuracies = [], [], []
        thresholds = torch.tensor(self.theta)
        for start, size in _chunks(n_runs, self.chunk_size):
            run_seeds = [seed * 1_000_003 + ensemble_index * 100_000 + start + i for i in range(size)]
            base, params = init_ensemble(self.widths, run_seeds, self.model)
            params = {k: v.to(self.device) for k, v in params.items()}
            order_seeds = [s + 50_000 for s in run_seeds]
            first, last, *accuracy = train_until_halted(
                base, params, x, y, thresholds, order_seeds, self.lr, self.batch_size, self.every_n_steps,
                self.max_steps, self.rule, self.window, self.sample_size, self.eval_size,
                (x_test, y_test) if self.accuracy_at_halting else None,
            )  # fmt: skip
            times, mask = halting_times(first, last)
            firsts.append(times.numpy())
            censored.append(mask.numpy())
            accuracies += accuracy
        if not self.accuracy_at_halting:
            return np.concatenate(firsts), np.concatenate(censored)
        measured = {f"{name}_accuracy": np.concatenate([a[key].numpy() for a in accuracies])
                    for name, key in (("train", "train"), ("test", "held_out"))}  # fmt: skip
        return np.concatenate(firsts), np.concatenate(censored), measured


class HaltingStudy(Study):
    """Halting times of many runs of a reference system per ensemble (arXiv:1511.06444): tau's law and universality.

    Args:
        system: the reference system and its parameters.
        n_runs: runs per ensemble (our default 2,000; the paper uses thousands).
        ensembles: subset of the system's ensembles (default: all); one study run each.
        seed: study seed: instance seeds derive from it, the ensemble and the chunk, and it seeds the statistics
            (dithering, Monte Carlo and permutation tests, bootstrap). A second seed adds runs to the same system's.
        gumbel_side: Gumbel orientation of the reference law (default maximum type, ``right``: our assumption).
        n_resamples: bootstrap resamples of the confidence intervals.
        **kwargs: :class:`~iclr17.studies.runner.Study`'s arguments (name, ledger_dir, runs_dir).
    """

    default_name = "halting"

    def __init__(
        self,
        system: HaltingSystem,
        n_runs: int = 2000,
        ensembles: list[str] | None = None,
        seed: int = 0,
        gumbel_side: GumbelSide = "right",
        n_resamples: int = 2000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ensembles = ensembles or list(system.ensembles)
        unknown = set(self.ensembles) - set(system.ensembles)
        if unknown:
            raise ValueError(f"ensembles {sorted(unknown)} are not among {type(system).__name__}'s {system.ensembles}")
        self.system, self.n_runs, self.seed = system, n_runs, seed
        self.gumbel_side, self.n_resamples = gumbel_side, n_resamples

    def planned(self) -> list[Run]:
        config = self.system.description(self.n_runs)
        size = {self.system.size_name: getattr(self.system, self.system.size_name)}
        return [
            Run(config, digest(config), (f"--ensembles=[{ensemble}]",), self.seed, {
                "system": type(self.system).__name__, **size, "ensemble": ensemble,
                "ensemble_index": self.system.ensembles.index(ensemble),
            })
            for ensemble in self.ensembles
        ]  # fmt: skip

    def command(self, run: Run) -> str:
        system = {"class_path": f"{type(self.system).__module__}.{type(self.system).__name__}",
                  "init_args": self.system.arguments()}  # fmt: skip
        return (
            f"iclr17 halting --name={self.name} --ledger_dir={self.ledger_dir} --system='{json.dumps(system)}' "
            f"--n_runs={self.n_runs} {' '.join(run.overrides)} --seed={run.seed} run"
        )

    def execute(self, run: Run, out_dir: Path) -> Outcome:
        start = time.perf_counter()
        times, censored, *measured = self.system.run(
            run.params["ensemble"], run.params["ensemble_index"], self.n_runs, run.seed
        )
        metrics = {
            "threshold_name": self.system.threshold_name,
            "thresholds": self.system.thresholds,
            "times": times.T.tolist(),  # times[e][k]: run k's halting time at threshold e (its cap if censored)
            "censored_runs": [np.flatnonzero(c).tolist() for c in censored.T],  # the censored runs at each threshold
        }
        for name, values in (measured[0] if measured else {}).items():  # per-run measurements at halting, [e][k]
            metrics[name] = np.round(values.T, 6).tolist()
        return Outcome("finished", None, time.perf_counter() - start, metrics)

    def markdown(self, rows: list[dict[str, Any]]) -> str:
        renderer = {"SpinGlassRuns": spin_glass_table, "MLPRuns": mlp_table, "QRRuns": qr_table}.get(
            type(self.system).__name__, cg_table
        )
        return renderer(rows, self.gumbel_side, self.n_resamples)

    def figure(self, rows: list[dict[str, Any]], path: Path) -> bool:
        """The paper's figure for this study's system description alone: its ledger may hold others (another size,
        or the same size at another width, as the two CG studies of N = 500 share one ledger)."""
        own = digest(self.system.description(self.n_runs))
        return halting_figures([r for r in rows if r["config_digest"] == own], path, self.gumbel_side,
                               self.n_resamples)  # fmt: skip


# ---- the statistics, from ledger rows alone ------------------------------------------------------------------


def experiments(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ledger's experiments: the rows of one system description (config digest), seeds pooled, each run once
    (its latest row; failed rows left out), ordered by system and size.

    Each is ``{"params", "config_digest", "threshold_name", "thresholds", "seed", "times", "censored"}``: ``params``
    the rows' common coordinates (system and size), ``config_digest`` their system description's, ``seed`` the
    smallest seed (it seeds the statistics), ``times`` and
    ``censored`` ``{ensemble: (n, E) array}`` in the system's ensemble order, the seeds' runs concatenated in order;
    ``measured`` ``{metric: {ensemble: (n, E) array}}`` the per-run measurements at halting the rows hold (the
    MLP's accuracies; ``HaltingSystem.run``), pooled the same way.
    """
    latest = {row_key(r): r for r in rows if r["status"] != "failed"}
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in latest.values():
        groups.setdefault(row["config_digest"], []).append(row)
    found = []
    for group in groups.values():
        group.sort(key=lambda r: (r["params"]["ensemble_index"], r["seed"]))
        times: dict[str, list[np.ndarray]] = {}
        censored: dict[str, list[np.ndarray]] = {}
        measured: dict[str, dict[str, list[np.ndarray]]] = {}
        for row in group:
            t = np.asarray(row["metrics"]["times"], dtype=np.int64).T
            mask = np.zeros(t.shape, bool)
            for e, runs in enumerate(row["metrics"]["censored_runs"]):
                mask[runs, e] = True
            times.setdefault(row["params"]["ensemble"], []).append(t)
            censored.setdefault(row["params"]["ensemble"], []).append(mask)
            for name in row["metrics"].keys() - {"threshold_name", "thresholds", "times", "censored_runs"}:
                values = np.asarray(row["metrics"][name], dtype=np.float64).T
                measured.setdefault(name, {}).setdefault(row["params"]["ensemble"], []).append(values)
        params = {k: v for k, v in group[0]["params"].items() if k not in ("ensemble", "ensemble_index")}
        found.append({
            "params": params, "config_digest": group[0]["config_digest"],
            "threshold_name": group[0]["metrics"]["threshold_name"],
            "thresholds": group[0]["metrics"]["thresholds"], "seed": min(r["seed"] for r in group),
            "times": {k: np.concatenate(v) for k, v in times.items()},
            "censored": {k: np.concatenate(v) for k, v in censored.items()},
            "measured": {name: {k: np.concatenate(v) for k, v in by.items()} for name, by in sorted(measured.items())},
        })  # fmt: skip
    return sorted(found, key=lambda x: (x["params"]["system"], [v for k, v in x["params"].items() if k != "system"]))


_REPORTS: dict[str, list[tuple[float, dict[str, Any], dict[str, np.ndarray]]]] = {}


def threshold_reports(
    experiment: dict[str, Any], gumbel_side: GumbelSide = "right", n_resamples: int = 2000
) -> list[tuple[float, dict[str, Any], dict[str, np.ndarray]]]:
    """``(threshold, report, taus)`` at each threshold of ``experiment``: ``ensemble_report`` of its ensembles,
    seeded by its seed. Remembered for the process (a table and its figure share the permutation tests): do not
    modify the result."""
    parts = [json.dumps([experiment["seed"], gumbel_side, n_resamples, list(experiment["times"])]).encode()]
    parts += [a.tobytes() for k in experiment["times"] for a in (experiment["times"][k], experiment["censored"][k])]
    key = hashlib.sha256(b"".join(parts)).hexdigest()
    if key not in _REPORTS:
        _REPORTS[key] = [
            (threshold, *ensemble_report(
                {k: v[:, e] for k, v in experiment["times"].items()},
                {k: v[:, e] for k, v in experiment["censored"].items()},
                gumbel_side, n_resamples, experiment["seed"],
            ))
            for e, threshold in enumerate(experiment["thresholds"])
        ]  # fmt: skip
    return _REPORTS[key]


def size_name(experiment: dict[str, Any]) -> str:
    """The name of the experiment's size parameter (``n``, ``widths``): its one parameter besides ``system``."""
    return next(k for k in experiment["params"] if k != "system")


def size_of(experiment: dict[str, Any]) -> str:
    """The experiment's system size as a table writes it (``32``, ``784-32-10``)."""
    value = experiment["params"][size_name(experiment)]
    return "-".join(map(str, value)) if isinstance(value, list) else str(value)


# ---- the tables and the figure ----------------------------------------------------------------------------------

DISPLAY = {"gaussian": "Gaussian", "bernoulli": "Bernoulli", "mnist": "MNIST"}
SMALLEST_P = 0.001  # (1 + 0) / (1 + 999): the smallest Monte Carlo or permutation p-value the report gives


def p_text(p: float) -> str:
    """A p-value as the tables print it: ``<= 0.001`` at the resolution of 999 samples, else 3 significant digits."""
    return f"<= {SMALLEST_P:g}" if p <= SMALLEST_P else f"{p:.3g}"


def _skewness_ci(report: dict[str, Any]) -> str:
    pooled = report.get("pooled")
    if pooled is None:
        return "n/a"
    low, high = pooled["skewness_ci95"]
    return f"{pooled['skewness']:.2f} [{low:.2f}, {high:.2f}]"


def spin_glass_table(rows: list[dict[str, Any]], gumbel_side: GumbelSide = "right", n_resamples: int = 2000) -> str:
    """One line per system size and threshold, ranges over the ensembles: mean T (std), the pooled skewness of tau
    [95% CI], one-sample KS p against the Gumbel and N(0, 1), the smallest two-sample KS and AD p, censored runs."""
    found = experiments(rows)
    counts = {len(x["times"]) for x in found}
    k = counts.pop() if len(counts) == 1 else None
    ensembles, short = (f"{k} ensembles", f"{k} ens.") if k else ("ensembles", "ensembles")
    pairs_text = f"{k * (k - 1) // 2} pairs" if k else "pairs"
    lines = [
        f"| N | eps | mean T (std), {ensembles} | pooled tau skewness [95% CI] | KS p vs Gumbel ({short}) | "
        f"KS p vs N(0,1) | min two-sample KS p ({pairs_text}) | min two-sample AD p | censored |",
        "|---" * 9 + "|",
    ]
    for x in found:
        for threshold, report, _ in threshold_reports(x, gumbel_side, n_resamples):
            described = [e for e in report["ensembles"].values() if not e["insufficient"]]
            tests = [e["tests"] for e in described]
            pairs = list(report["universality"].values())
            means = f"{span([e['mean'] for e in described])} ({span([e['std'] for e in described])})"
            cells = [
                means if described else "n/a",
                _skewness_ci(report),
                span([t["gumbel"]["ks_pvalue"] for t in tests], p_text) if tests else "n/a",
                span([t["normal"]["ks_pvalue"] for t in tests], p_text) if tests else "n/a",
                p_text(min(p["ks_pvalue"] for p in pairs)) if pairs else "n/a",
                p_text(min(p["ad_pvalue"] for p in pairs)) if pairs else "n/a",
                str(report["n_censored"]),
            ]
            lines.append(f"| {size_of(x)} | {threshold:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ensembles_table(
    rows: list[dict[str, Any]], gumbel_side: GumbelSide = "right", n_resamples: int = 2000, raw_skewness: bool = False
) -> str:
    """One line per threshold, one value per ensemble (``a / b``): mean T (std), optionally the skewness of T, the
    pooled skewness of tau [95% CI], KS p against N(0, 1), KS p against the Gumbel (range over the ensembles) and
    the two-sample KS p (AD p) (the smallest over pairs when there are more than two ensembles). A leading size
    column appears when the ledger holds several system sizes."""
    found = experiments(rows)
    if not found:
        return "(no finished runs)"
    names = list(found[0]["times"])
    shown = " / ".join(DISPLAY.get(n, n) for n in names)
    symbol = found[0]["threshold_name"]
    pair = f"{shown.replace(' / ', ' vs ')} KS p (AD p)" if len(names) == 2 else "min two-sample KS p (AD p)"
    header = [symbol, f"mean T (std) {shown}", *([f"skewness of T, {shown}"] if raw_skewness else []),
              "pooled tau skewness [95% CI]", f"KS p vs N(0,1), {shown}", "KS p vs Gumbel", pair]  # fmt: skip
    sized = len(found) > 1
    header = ["N", *header] if sized else header
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for x in found:
        size = [size_of(x)] if sized else []
        for threshold, report, _ in threshold_reports(x, gumbel_side, n_resamples):
            per = [report["ensembles"][n] for n in names]

            def each(text, per=per) -> str:
                return " / ".join("n/a" if e["insufficient"] else text(e) for e in per)

            tests = [e["tests"] for e in per if not e["insufficient"]]
            pairs = list(report["universality"].values())
            cells = [
                *size, f"{threshold:g}", each(lambda e: f"{e['mean']:.1f} ({e['std']:.1f})"),
                *([each(lambda e: f"{e['skewness']:.2f}")] if raw_skewness else []),
                _skewness_ci(report), each(lambda e: p_text(e["tests"]["normal"]["ks_pvalue"])),
                span([t["gumbel"]["ks_pvalue"] for t in tests], p_text) if tests else "n/a",
                f"{p_text(min(p['ks_pvalue'] for p in pairs))} ({p_text(min(p['ad_pvalue'] for p in pairs))})"
                if pairs else "n/a",
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cg_table(rows: list[dict[str, Any]], gumbel_side: GumbelSide = "right", n_resamples: int = 2000) -> str:
    """The conjugate-gradient table: :func:`ensembles_table`, or :func:`cg_widths_table` when the rows hold
    several widths M (the paper's M = N + 2 floor(sqrt(N)) beside M = N)."""
    if len({_cg_size(row) for row in rows}) > 1:
        return cg_widths_table(rows, gumbel_side, n_resamples)
    return ensembles_table(rows, gumbel_side, n_resamples)


def _cg_size(row: dict[str, Any]) -> tuple[int, int]:
    """``(N, M)`` of a conjugate-gradient row, from the system description it was run with."""
    init = json.loads(row["config"])["init_args"]
    return init["n"], critical_width(init["n"], init["c"])


def cg_widths_table(rows: list[dict[str, Any]], gumbel_side: GumbelSide = "right", n_resamples: int = 2000) -> str:
    """The conjugate-gradient table with N and M: one block per system description (the paper's critical width
    first, then M = N; arXiv:1511.06444, its CG experiment), each :func:`ensembles_table`'s lines with the censored
    runs at each eps (all ensembles) last."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["config_digest"], []).append(row)
    blocks = []
    for group in groups.values():
        found = experiments(group)
        if not found:
            continue
        (experiment,) = found
        censored = [int(sum(c[:, e].sum() for c in experiment["censored"].values()))
                    for e in range(len(experiment["thresholds"]))]  # fmt: skip
        n, m = _cg_size(group[0])
        blocks.append(((n, -m), ensembles_table(group, gumbel_side, n_resamples).splitlines(), censored))
    if not blocks:
        return "(no finished runs)"
    blocks.sort(key=lambda block: block[0])
    header = blocks[0][1][0]
    lines = [f"| N | M {header} censored |", "|---" * (header.count("|") + 2) + "|"]
    for (n, minus_m), table, censored in blocks:
        lines += [f"| {n} | {-minus_m} {line} {count} |" for line, count in zip(table[2:], censored, strict=True)]
    return "\n".join(lines)


def _halted_column(
    table: str, rows: list[dict[str, Any]], metric: str, title: str, cell: Callable[[np.ndarray, dict], str]
) -> str:
    """``table`` with a last column when the rows measured ``metric``: per threshold, each ensemble's
    ``cell(values over its halted runs, experiment)``, "n/a" where none halted or it was not measured."""
    found = experiments(rows)
    if not any(metric in x["measured"] for x in found):
        return table
    names = list(found[0]["times"])

    def text(x: dict[str, Any], name: str, e: int) -> str:
        values = x["measured"].get(metric, {}).get(name)
        return "n/a" if values is None else cell(values[~x["censored"][name][:, e], e], x)

    column = [" / ".join(text(x, n, e) for n in names) for x in found for e in range(len(x["thresholds"]))]
    header, rule, *lines = table.splitlines()
    shown = " / ".join(DISPLAY.get(n, n) for n in names)
    return "\n".join([f"{header} {title}, {shown} |", f"{rule}---|",
                      *(f"{line} {c} |" for line, c in zip(lines, column, strict=True))])  # fmt: skip


def mlp_table(rows: list[dict[str, Any]], gumbel_side: GumbelSide = "right", n_resamples: int = 2000) -> str:
    """The MLP table: :func:`ensembles_table` with the skewness of T beside each mean and, when the rows measured
    it (``MLPRuns(accuracy_at_halting=True)``), a last column: each ensemble's test accuracy at halting, mean
    (std) in percent over its halted runs."""

    def accuracy(halted: np.ndarray, x: dict[str, Any]) -> str:
        percent = 100 * halted
        return "n/a" if len(percent) < 2 else f"{percent.mean():.1f} ({percent.std(ddof=1):.1f})"

    table = ensembles_table(rows, gumbel_side, n_resamples, raw_skewness=True)
    return _halted_column(table, rows, "test_accuracy", "test accuracy % at halting", accuracy)


def qr_table(rows: list[dict[str, Any]], gumbel_side: GumbelSide = "right", n_resamples: int = 2000) -> str:
    """The QR table (arXiv:1511.06444, its QR experiment: Gumbel-like): :func:`ensembles_table` with, when the rows
    recorded it (``QRRuns``), a last column: where each ensemble first deflated, ``N - k`` as median (max) over
    its halted runs (1: the last row and column split off, the eigenvalue of smallest modulus)."""

    def where(halted: np.ndarray, x: dict[str, Any]) -> str:
        if len(halted) == 0:
            return "n/a"
        from_bottom = int(x["params"]["n"]) - halted
        return f"{np.median(from_bottom):g} ({from_bottom.max():g})"

    table = ensembles_table(rows, gumbel_side, n_resamples)
    return _halted_column(table, rows, "deflated_k", "first deflation N - k, median (max)", where)


def ensembles_summary(
    rows: list[dict[str, Any]],
    size: str | None = None,
    thresholds: tuple[float, ...] | None = None,
    gumbel_side: GumbelSide = "right",
    n_resamples: int = 2000,
) -> str:
    """The tables in one line, for a sentence or a table cell: per experiment (system size; only ``size`` when
    given), over its thresholds (only those of ``thresholds`` when given), :func:`_experiment_summary` of the same
    statistics as the tables (:func:`threshold_reports`)."""
    parts = []
    for x in experiments(rows):
        if size is not None and size_of(x) != size:
            continue
        reports = [(t, r) for t, r, _ in threshold_reports(x, gumbel_side, n_resamples)
                   if thresholds is None or t in thresholds]  # fmt: skip
        if reports:
            parts.append(_experiment_summary(x, reports))
    return "; ".join(parts) or "(no finished runs)"


def _experiment_summary(x: dict[str, Any], reports: list[tuple[float, dict[str, Any]]]) -> str:
    """The size, ensembles and thresholds; the pooled tau skewness (with its 95% CI at one threshold, else its
    range); the KS p against N(0, 1) (each ensemble's range when there are two, else the range over all); the
    smallest two-sample KS p at each threshold (its range); when measured, each ensemble's mean test accuracy at
    halting (its range over the thresholds)."""
    names = list(x["times"])
    shown = [DISPLAY.get(n, n) for n in names]
    runs = {x["times"][n].shape[0] for n in names}
    counted = plural(len(names), "ensemble") + (f" x {runs.pop():,} runs" if len(runs) == 1 else "")
    if len(reports) == 1:
        skewness = _skewness_ci(reports[0][1])
    else:
        pooled = [r["pooled"]["skewness"] for _, r in reports if r.get("pooled") is not None]
        low, high = (f"{v:.2f}" for v in (min(pooled, default=0), max(pooled, default=0)))
        skewness = "n/a" if not pooled else low if low == high else f"{low} to {high}"  # a sign is no dash
    if len(names) == 2:
        normal = ", ".join(f"{label} {_normal_p(reports, [n])}" for n, label in zip(names, shown, strict=True))
    else:
        normal = _normal_p(reports, names)
    pairs = [min(p["ks_pvalue"] for p in r["universality"].values()) for _, r in reports if r["universality"]]
    thresholds = ", ".join(f"{t:g}" for t, _ in reports)
    text = (
        f"{size_name(x)} {size_of(x)}, {counted}, {x['threshold_name']} "
        f"{thresholds}: pooled tau skewness {skewness}, KS p vs "
        f"N(0,1) {normal}, smallest two-sample KS p {span(pairs, p_text) if pairs else 'n/a'}"
    )
    accuracy = x["measured"].get("test_accuracy", {})
    if accuracy:
        index = {t: e for e, t in enumerate(x["thresholds"])}

        def halted_mean(name: str, threshold: float) -> float | None:  # as mlp_table: none for fewer than 2 halted
            if name not in accuracy:
                return None
            values = accuracy[name][~x["censored"][name][:, index[threshold]], index[threshold]]
            return 100 * values.mean() if len(values) > 1 else None

        means = {label: [m for t, _ in reports if (m := halted_mean(n, t)) is not None]
                 for n, label in zip(names, shown, strict=True)}  # fmt: skip
        text += ", test accuracy % at halting " + ", ".join(f"{k} {span(v) if v else 'n/a'}" for k, v in means.items())
    return text


def pairs_summary(
    rows: list[dict[str, Any]], size: str, threshold: float, gumbel_side: GumbelSide = "right", n_resamples: int = 2000
) -> str:
    """Every pair's two-sample KS p (AD p) at one size and threshold, in one line per experiment of that size
    (``; ``-joined): the numbers behind the tables' smallest-over-pairs cells (the same reports,
    :func:`threshold_reports`), ordered from the smallest AD p. A threshold the experiment did not record raises."""
    parts = []
    for x in experiments(rows):
        if size_of(x) != size:
            continue
        if threshold not in x["thresholds"]:
            raise ValueError(f"pairs_summary: {x['threshold_name']} {threshold:g} is not one of the thresholds "
                             f"{x['thresholds']} of size {size} (config digest {x['config_digest']})")  # fmt: skip
        report = next(r for t, r, _ in threshold_reports(x, gumbel_side, n_resamples) if t == threshold)
        tests = report["universality"]
        cells = []
        for pair, p in sorted(tests.items(), key=lambda kv: (kv[1]["ad_pvalue"], kv[1]["ks_pvalue"])):
            names = " vs ".join(DISPLAY.get(n, n) for n in pair.split(" vs "))
            cells.append(f"{names} {p_text(p['ks_pvalue'])} ({p_text(p['ad_pvalue'])})")
        parts.append(f"{size_name(x)} {size}, {x['threshold_name']} {threshold:g}, "
                     f"two-sample KS p (AD p): {', '.join(cells) or 'n/a (one ensemble)'}")  # fmt: skip
    return "; ".join(parts) or "(no finished runs)"


def _normal_p(reports: list[tuple[float, dict[str, Any]]], names: list[str]) -> str:
    """The range of the KS p against N(0, 1) of ``names``' ensembles over the reports (insufficient ones left out)."""
    values = [r["ensembles"][n]["tests"]["normal"]["ks_pvalue"] for _, r in reports for n in names
              if not r["ensembles"][n]["insufficient"]]  # fmt: skip
    return span(values, p_text) if values else "n/a"


def halting_figures(rows: list[dict[str, Any]], path: Path, gumbel_side: GumbelSide = "right",
                    n_resamples: int = 2000) -> bool:  # fmt: skip
    """The paper's figure (tau histograms over the two reference densities, QQ plots; one row per threshold) for
    each experiment: into ``path``, or ``<stem>_<name><suffix>`` beside it when the rows hold several, the name
    its size, or its size and system description's digest where two share a size."""
    from iclr17.callbacks.halting_time.figures import halting_figure

    found, drawn = experiments(rows), 0
    sizes = [size_of(x) for x in found]
    for x, size in zip(found, sizes, strict=True):
        reports = threshold_reports(x, gumbel_side, n_resamples)
        panels = {f"{x['threshold_name']} {threshold:g}": taus for threshold, _, taus in reports if taus}
        if not panels:
            continue
        name = size if sizes.count(size) == 1 else f"{size}_{x['config_digest']}"
        target = path if len(found) == 1 else path.with_name(f"{path.stem}_{name}{path.suffix}")
        figure = halting_figure(panels, title=f"{x['params']['system']} {name}", gumbel_side=gumbel_side)
        save_figure(figure, target, dpi=110, tight=False)
        drawn += 1
    return drawn > 0


RESULTS_TABLES = {
    "halting-spin-glass": ("halting_spin_glass", spin_glass_table),
    "halting-cg": ("halting_cg", cg_table),
    "halting-cg-n500": ("halting_cg_n500", cg_widths_table),
    "halting-mlp": ("halting_mlp", mlp_table),
    "halting-mlp-paper": ("halting_mlp_paper", mlp_table),
    "halting-convnet-paper": ("halting_convnet_paper", mlp_table),
    "halting-qr": ("halting_qr", qr_table),
    "halting-spin-glass-summary.n64-eps1": (
        "halting_spin_glass",
        partial(ensembles_summary, size="64", thresholds=(1.0,)),
    ),
    "halting-spin-glass-pairs.n32-eps1": ("halting_spin_glass", partial(pairs_summary, size="32", threshold=1.0)),
    "halting-cg-summary": ("halting_cg", ensembles_summary),
    "halting-cg-summary.eps1e-8-and-1e-10": ("halting_cg", partial(ensembles_summary, thresholds=(1e-8, 1e-10))),
    "halting-mlp-paper-summary": ("halting_mlp_paper", ensembles_summary),
    "halting-qr-summary": ("halting_qr", ensembles_summary),
}
