"""Hessian spectra on an MNIST subset: our Lanczos, SLQ and exact mode against PyHessian and hessian-eigenthings.

    ICLR17_DATA_DIR=/path/to/data python benchmarks/hessian_vs_peers.py [--samples 512] [--repeats 3] [--rtol 1e-3]
        [--ledger DIR]

One process, one fixed batch of ``--samples`` real MNIST training images (``MNISTDataModule(subset_size=...)``,
pixels in [0, 1]), the mean cross-entropy, models in eval mode (no BatchNorm, no dropout), float32 parameters
and data for every contender (PyHessian draws its vectors with ``torch.randn(p.size())``, so float32 is the
only dtype it supports; our Lanczos keeps its basis in float64, as it always does). Two models: an MLP
784-128-10 (101,770 parameters) and a small CNN (5x5 convolutions of 8 and 16 channels, stride 2, ReLU, linear;
5,994), each first trained for ``--train-steps`` full-batch Adam steps on the batch (the paper's "after training"
point, where about ten class outliers stand clear of the bulk; at initialisation the CNN's most negative
eigenvalue is larger in magnitude than its fifth largest).

(a) Top-5 eigenvalues. Contenders: ``lanczos_extremes`` (ours), PyHessian's deflated power iteration
    ``hessian.eigenvalues``, and hessian-eigenthings' ``lanczos`` and ``deflated_power_iteration``.
    *Equal accuracy*: the reference is ARPACK (``scipy.sparse.linalg.eigsh``, tol 1e-10) on a float64 copy of
    the model; each contender runs a ladder of settings (Lanczos steps, or the power iteration's relative
    tolerance) from cheap to expensive and is timed at the first setting whose largest relative error on the
    five eigenvalues is at most ``--rtol``. Power iteration finds the largest *magnitudes*, so it is scored
    against the five largest magnitudes (the output says when these differ from the five largest).
(b) Spectral density: our ``slq_density`` vs PyHessian's ``hessian.density`` (and hessian-eigenthings'
    ``spectral_density``) at equal Lanczos steps and probes, so equal Hessian-vector products. Agreement: the
    L1 distance between each peer's density and ours, both smoothed on one grid with one sigma (1% of the
    span; the outliers carry only about 1e-4 of the mass, so the L1 distances are small), the quadrature trace
    estimates, and the largest node against (a)'s reference lambda_max. PyHessian and ours draw the same
    Rademacher probes from the same seed; hessian-eigenthings draws its own.
(c) Exact mode: ``exact_hessian`` + ``eigvalsh`` in float64 (what ``HessianSpectrum(method="exact")`` does)
    against the floor ``torch.func.hessian`` + ``torch.linalg.eigvalsh`` on the same flattened loss, on an
    MLP 784-4-10 (3,190 parameters). Target: at most 1.3x the floor.

Hessian-vector products (HVPs) are counted by wrapping each side's product function. Ours are
reverse-over-reverse (``hessian_vector_product``: the gradient's graph is built once, each product is one
backward pass through it), as PyHessian's are (``torch.autograd.grad`` on its ``create_graph`` gradient). Timed
regions include every side's setup (PyHessian's gradient graph, our ``flat_loss``); ``ms/HVP`` is the median
time over the products, setup and Lanczos bookkeeping included. Runs alternate between contenders; medians
over ``--repeats``. (a) also times one product alone, setup excluded (median of ``--product-repeats``), ours
against PyHessian's, and prints how many fewer products ours needs: the end-to-end ratio is the product of the
two, so it says whether a win comes from cheaper products or from Lanczos needing fewer of them than power
iteration.
Torch runs on ``--threads`` threads (default 1: on a shared 2-core machine two threads make timings erratic).
Target for (a): ours at least 3x faster than PyHessian at equal accuracy. ``--ledger DIR`` also records each
comparison (a model of (a), of (b), and (c)) as a row of ``DIR/benchmarks_hessian_vs_peers.jsonl``
(``iclr17.studies.benchmark_ledger``): every number printed, by contender (``ours_seconds``,
``pyhessian_power_over_ours`` ...).

Peers come from the ``bench`` extra (``pip install -e .[bench]``); a missing one is reported and skipped.
Work-arounds for torch 2.x, in this script only: PyHessian's ``density`` calls ``torch.eig``, removed in
torch 1.9 (it raises); it is replaced, during PyHessian's call only, by a shim on ``torch.linalg.eigh`` (the
tridiagonal is symmetric, so this is the answer ``torch.eig`` gave). PyHessian's constructor accumulates a
``create_graph`` gradient into ``p.grad``; the gradients are cleared before and after each of its runs.
The ``torch.jit.script is deprecated`` FutureWarning printed in (c) is torch's own: forward-mode AD (the
``jacfwd`` of ``exact_hessian``) loads ``torch._decomp.decompositions_for_jvp``, which scripts its decompositions.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.metadata
import math
import statistics
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import scipy.sparse.linalg
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iclr17.datamodules import MNISTDataModule
from iclr17.functional.hessian import (
    exact_hessian,
    flat_loss,
    hessian_vector_product,
    lanczos_extremes,
    slq_density,
)
from iclr17.modules import MLP
from iclr17.studies.benchmark_ledger import command_line, record

try:
    import pyhessian

    # the module: the package's ``from .hessian import hessian`` shadows it with the class
    pyhessian_hessian = importlib.import_module("pyhessian.hessian")
except ImportError as err:
    pyhessian, PYHESSIAN_MISSING = None, f"pyhessian is not installed ({err}); pip install -e .[bench]"
else:
    PYHESSIAN_MISSING = None
try:
    import hessian_eigenthings
except ImportError as err:
    hessian_eigenthings, EIGENTHINGS_MISSING = (
        None,
        f"hessian-eigenthings is not installed ({err}); pip install -e .[bench]",
    )
else:
    EIGENTHINGS_MISSING = None

TOP_K = 5
Batch = tuple[Tensor, Tensor]
STEP_LADDER = [6, 8, 10, 12, 14, 16, 18, 20, 24, 28, 32, 40, 48, 56, 64, 80, 100, 128, 160, 200]
TOL_LADDER = [1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6]
METRIC_PREFIX = {  # contender -> its metrics' prefix in the ledger
    "ours (Lanczos)": "ours", "PyHessian (power)": "pyhessian_power", "eigenthings (Lanczos)": "eigenthings_lanczos",
    "eigenthings (power)": "eigenthings_power", "ours (SLQ)": "ours", "PyHessian (density)": "pyhessian_density",
    "eigenthings (SLQ)": "eigenthings_slq",
}  # fmt: skip


def loss_fn(model: nn.Module, batch: Batch) -> Tensor:
    return F.cross_entropy(model(batch[0]), batch[1])


def small_cnn(c1: int = 8, c2: int = 16) -> nn.Module:
    """Two 5x5 stride-2 convolutions (28 -> 12 -> 4) and a linear layer; strided rather than pooled because
    the second derivatives of max-pooling make every product about 3x dearer on CPU."""
    return nn.Sequential(
        nn.Conv2d(1, c1, 5, stride=2), nn.ReLU(),
        nn.Conv2d(c1, c2, 5, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(c2 * 16, 10),
    )  # fmt: skip


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class Counted:
    """A function that counts its calls (the Hessian-vector products of one run)."""

    def __init__(self, fn: Callable) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def largest(values: Tensor, k: int, magnitude: bool) -> Tensor:
    """The ``k`` largest values (or largest magnitudes), in that order."""
    values = values.double()
    order = values.abs().argsort(descending=True) if magnitude else values.argsort(descending=True)
    return values[order[:k]]


def relative_error(values: Tensor, reference: Tensor, magnitude: bool) -> float:
    """Largest relative error of the top ``len(reference)`` of ``values`` (ordered like ``reference``)."""
    values = largest(values, len(reference), magnitude)
    if len(values) < len(reference):
        return math.inf
    return ((values - reference) / reference.abs()).abs().max().item()


# ---------------------------------------------------------------- reference


def reference_spectrum(model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor, int]:
    """ARPACK on a float64 copy: the ``TOP_K + 3`` largest eigenvalues (descending, tol 1e-10), the smallest
    (tol 1e-3; the ``TOP_K`` smallest to tol 1e-10 when they may be among the largest magnitudes; ascending),
    and the number of products."""
    model64 = copy.deepcopy(model).double()
    params = list(model64.parameters())
    x, y = batch[0].double(), batch[1]
    gradient = torch.autograd.grad(loss_fn(model64, (x, y)), params, create_graph=True)
    sizes = [p.numel() for p in params]
    calls = [0]

    def matvec(v: np.ndarray) -> np.ndarray:
        calls[0] += 1
        parts = torch.split(torch.from_numpy(np.ascontiguousarray(v).reshape(-1)), sizes)
        hv = torch.autograd.grad(
            gradient, params, [p.view_as(q) for p, q in zip(parts, params, strict=True)], retain_graph=True
        )
        return torch.cat([h.reshape(-1) for h in hv]).numpy()

    dim = sum(sizes)
    operator = scipy.sparse.linalg.LinearOperator((dim, dim), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(dim)
    top = scipy.sparse.linalg.eigsh(operator, k=TOP_K + 3, which="LA", tol=1e-10, ncv=40, v0=v0)[0]
    bottom = scipy.sparse.linalg.eigsh(operator, k=1, which="SA", tol=1e-3, ncv=40, v0=v0)[0]  # a check only
    if abs(bottom[0]) > 0.9 * top.min():  # the bottom end may enter the largest magnitudes: resolve it
        bottom = scipy.sparse.linalg.eigsh(operator, k=TOP_K, which="SA", tol=1e-10, ncv=40, v0=v0)[0]
    return torch.from_numpy(np.sort(top)[::-1].copy()), torch.from_numpy(np.sort(bottom)), calls[0]


# ---------------------------------------------------------------- (a) top-5 contenders: (model, batch, setting, seed)
# -> (eigenvalues, products)


def ours_top(model: nn.Module, batch: Batch, steps: int, seed: int) -> tuple[Tensor, int]:
    names = [n for n, _ in model.named_parameters()]
    loss_of, theta = flat_loss(model, loss_fn, batch, names)
    matvec = Counted(hessian_vector_product(loss_of, theta))
    generator = torch.Generator().manual_seed(seed)
    top, _ = lanczos_extremes(matvec, len(theta), TOP_K, steps, generator, theta.dtype, device=theta.device)
    return top, matvec.calls


@contextmanager
def pyhessian_run(model: nn.Module, seed: int):
    """Counted products, seeded global RNG (PyHessian draws from it) and clean ``p.grad`` around one run."""
    counted = Counted(pyhessian_hessian.hessian_vector_product)
    pyhessian_hessian.hessian_vector_product = counted
    for p in model.parameters():
        p.grad = None
    torch.manual_seed(seed)
    try:
        with warnings.catch_warnings():  # its constructor's loss.backward(create_graph=True); p.grad is cleared here
            warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True", UserWarning)
            yield counted
    finally:
        pyhessian_hessian.hessian_vector_product = counted.fn
        for p in model.parameters():
            p.grad = None


def pyhessian_top(model: nn.Module, batch: Batch, tol: float, seed: int, max_iter: int) -> tuple[Tensor, int]:
    with pyhessian_run(model, seed) as counted:
        h = pyhessian.hessian(model, F.cross_entropy, data=batch, cuda=False)
        values, _ = h.eigenvalues(maxIter=max_iter, tol=tol, top_n=TOP_K)
        del h
    return torch.tensor(values), counted.calls


def eigenthings_operator(model: nn.Module, batch: Batch) -> hessian_eigenthings.HessianOperator:
    operator = hessian_eigenthings.HessianOperator(
        model, [batch], hessian_eigenthings.supervised_loss(F.cross_entropy), full_dataset=True
    )
    operator.matvec = Counted(operator.matvec)
    return operator


def eigenthings_lanczos_top(model: nn.Module, batch: Batch, steps: int, seed: int) -> tuple[Tensor, int]:
    operator = eigenthings_operator(model, batch)
    result = hessian_eigenthings.lanczos(operator, k=TOP_K, max_iter=steps, which="LA", seed=seed)
    return result.eigenvalues, operator.matvec.calls


def eigenthings_power_top(model: nn.Module, batch: Batch, tol: float, seed: int, max_iter: int) -> tuple[Tensor, int]:
    operator = eigenthings_operator(model, batch)
    result = hessian_eigenthings.deflated_power_iteration(operator, k=TOP_K, max_iter=max_iter, tol=tol, seed=seed)
    return result.eigenvalues, operator.matvec.calls


def calibrate(
    run: Callable[[float], tuple[Tensor, int]],
    ladder: list,
    reference: Tensor,
    magnitude: bool,
    rtol: float,
    max_hvps: int,
) -> tuple[object, float, int, bool]:
    """The first setting of ``ladder`` whose top-k error is at most ``rtol`` (else the most accurate one
    tried): ``(setting, error, products, reached)``. Stops once a run costs more than ``max_hvps``."""
    best = None
    for setting in ladder:
        values, hvps = run(setting)
        error = relative_error(values, reference, magnitude)
        if error <= rtol:
            return setting, error, hvps, True
        if best is None or error < best[1]:
            best = (setting, error, hvps, False)
        if hvps > max_hvps:
            break
    return best


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def compare_top(name: str, model: nn.Module, batch: Batch, args: argparse.Namespace) -> tuple[float, dict, float]:
    """Part (a); returns the reference lambda_max, the metrics and the seconds of the timed runs."""
    start = time.perf_counter()
    top, bottom, ref_calls = reference_spectrum(model, batch)
    ref_seconds = time.perf_counter() - start
    print(f"\n(a) top-{TOP_K} eigenvalues, {name} ({n_params(model):,} parameters), batch {len(batch[1])}, float32")
    print(
        f"  reference (ARPACK, float64, {ref_calls} products, {ref_seconds:.1f} s): "
        f"largest {_rounded(top.tolist(), 5)}, smallest {_rounded(bottom.tolist(), 5)}"
    )
    metrics = {"reference_products": ref_calls, "reference_seconds": ref_seconds, "reference_largest": top.tolist(),
               "reference_smallest": bottom.tolist()}  # fmt: skip
    top_magnitude = largest(torch.cat([top, bottom]), TOP_K, magnitude=True)
    targets = {False: top[:TOP_K], True: top_magnitude}
    if not torch.equal(top_magnitude, top[:TOP_K]):
        print(
            f"  note: the {TOP_K} largest magnitudes {_rounded(top_magnitude.tolist(), 5)} are not the {TOP_K} "
            "largest eigenvalues; power iteration (which finds magnitudes) is scored against the former"
        )

    seed = args.seed
    contenders: dict[str, tuple[Callable, list]] = {
        "ours (Lanczos)": (lambda s: ours_top(model, batch, s, seed), STEP_LADDER)
    }
    if pyhessian is not None:
        contenders["PyHessian (power)"] = (
            lambda t: pyhessian_top(model, batch, t, seed, args.power_max_iter),
            TOL_LADDER,
        )
    else:
        print(f"  PyHessian: skipped, {PYHESSIAN_MISSING}")
    if hessian_eigenthings is not None:
        contenders["eigenthings (Lanczos)"] = (lambda s: eigenthings_lanczos_top(model, batch, s, seed), STEP_LADDER)
        contenders["eigenthings (power)"] = (
            lambda t: eigenthings_power_top(model, batch, t, seed, args.power_max_iter),
            TOL_LADDER,
        )
    else:
        print(f"  hessian-eigenthings: skipped, {EIGENTHINGS_MISSING}")

    settings = {}
    for label, (run, ladder) in contenders.items():
        magnitude = label.endswith("(power)")
        setting, error, hvps, reached = calibrate(run, ladder, targets[magnitude], magnitude, args.rtol, args.max_hvps)
        settings[label] = (setting, error, hvps, reached)

    times: dict[str, list[float]] = {label: [] for label in contenders}
    for _ in range(args.repeats):
        for label, (run, _) in contenders.items():
            times[label].append(timed(lambda run=run, label=label: run(settings[label][0]))[0])

    ours_time = statistics.median(times["ours (Lanczos)"])
    print(f"  equal accuracy: max relative error on the top {TOP_K} <= {args.rtol:g} (cheapest ladder setting)")
    print(
        f"  {'method':<22} {'setting':>12} {'HVPs':>6} {'max rel err':>12} {'median s':>9} {'ms/HVP':>7} "
        f"{'peer/ours':>9}"
    )
    for label in contenders:
        setting, error, hvps, reached = settings[label]
        kind = "steps" if label.endswith("(Lanczos)") else "tol"
        median = statistics.median(times[label])
        flag = "" if reached else "  (did not reach rtol)"
        print(
            f"  {label:<22} {kind + ' ' + format(setting, 'g'):>12} {hvps:>6} {error:>12.2e} {median:>9.3f} "
            f"{1e3 * median / hvps:>7.1f} {median / ours_time:>9.2f}{flag}"
        )
        key = METRIC_PREFIX[label]
        found = {kind: setting, "hvps": hvps, "max_rel_err": error, "seconds": median, "reached": reached}
        found["ms_per_hvp"] = 1e3 * median / hvps
        metrics |= {f"{key}_{stat}": value for stat, value in found.items()}
        if key != "ours":
            metrics[f"{key}_over_ours"] = median / ours_time
    if "PyHessian (power)" in times:
        ratio = statistics.median(times["PyHessian (power)"]) / ours_time
        print(f"  ours vs PyHessian: {ratio:.2f}x faster   target >= 3x")
        ours_ms, peer_ms = product_milliseconds(model, batch, args)
        fewer = settings["PyHessian (power)"][2] / settings["ours (Lanczos)"][2]
        print(
            f"  one product alone (setup excluded, median of {args.product_repeats}): ours {ours_ms:.2f} ms, "
            f"PyHessian {peer_ms:.2f} ms (ours {ours_ms / peer_ms:.2f}x its cost); ours needs {fewer:.1f}x fewer "
            "products (Lanczos vs power iteration)"
        )
        metrics |= {"ours_product_ms": ours_ms, "pyhessian_product_ms": peer_ms,
                    "product_cost_ratio": ours_ms / peer_ms, "fewer_products": fewer}  # fmt: skip
    return top[0].item(), metrics, sum(sum(runs) for runs in times.values())


def product_milliseconds(model: nn.Module, batch: Batch, args: argparse.Namespace) -> tuple[float, float]:
    """Median milliseconds of one Hessian-vector product after setup: ours and PyHessian's, alternated."""
    names = [n for n, _ in model.named_parameters()]
    loss_of, theta = flat_loss(model, loss_fn, batch, names)
    ours = hessian_vector_product(loss_of, theta)
    v = torch.randn(len(theta), generator=torch.Generator().manual_seed(args.seed))
    with pyhessian_run(model, args.seed) as counted:
        h = pyhessian.hessian(model, F.cross_entropy, data=batch, cuda=False)
        gradient, params = h.gradsH, h.params
        pieces = [q.view_as(p) for q, p in zip(torch.split(v, [p.numel() for p in params]), params, strict=True)]
        ours(v), counted.fn(gradient, params, pieces)  # warm-up
        times = {"ours": [], "peer": []}
        for _ in range(args.product_repeats):
            times["ours"].append(timed(lambda: ours(v))[0])
            times["peer"].append(timed(lambda: counted.fn(gradient, params, pieces))[0])
    return 1e3 * statistics.median(times["ours"]), 1e3 * statistics.median(times["peer"])


# ---------------------------------------------------------------- (b) density


@contextmanager
def torch_eig_shim():
    """``torch.eig(A, eigenvectors=True)`` as it was before torch 1.9, for symmetric ``A`` (PyHessian's
    tridiagonal): eigenvalues as an ``(n, 2)`` real/imaginary table, and the eigenvectors."""
    removed = torch.eig

    def eig(a: Tensor, eigenvectors: bool = False) -> tuple[Tensor, Tensor]:
        values, vectors = torch.linalg.eigh(a)
        return torch.stack([values, torch.zeros_like(values)], dim=1), vectors

    torch.eig = eig
    try:
        yield
    finally:
        torch.eig = removed


def smoothed(nodes: list[Tensor], weights: list[Tensor], grid: Tensor, sigma: float) -> Tensor:
    density = torch.zeros_like(grid)
    for v, w in zip(nodes, weights, strict=True):
        gauss = torch.exp(-((grid[:, None] - v[None, :]) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
        density += gauss @ w
    return density / len(nodes)


def ours_density(model: nn.Module, batch: Batch, steps: int, probes: int, seed: int):
    """``slq_density``'s grid, density and statistics, and the number of products."""
    names = [n for n, _ in model.named_parameters()]
    loss_of, theta = flat_loss(model, loss_fn, batch, names)
    matvec = Counted(hessian_vector_product(loss_of, theta))
    generator = torch.Generator().manual_seed(seed)
    grid, density, info = slq_density(matvec, len(theta), steps, probes, generator, theta.dtype, device=theta.device)
    return (grid, density, info), matvec.calls


def pyhessian_density(model: nn.Module, batch: Batch, steps: int, probes: int, seed: int):
    with pyhessian_run(model, seed) as counted, torch_eig_shim():
        h = pyhessian.hessian(model, F.cross_entropy, data=batch, cuda=False)
        nodes, weights = h.density(iter=steps, n_v=probes)
        del h
    as_tensors = [torch.tensor(np.asarray(v, dtype=np.float64)) for v in nodes]
    return (as_tensors, [torch.tensor(np.asarray(w, dtype=np.float64)) for w in weights]), counted.calls


def eigenthings_density(model: nn.Module, batch: Batch, steps: int, probes: int, seed: int):
    operator = eigenthings_operator(model, batch)
    result = hessian_eigenthings.spectral_density(operator, num_runs=probes, lanczos_steps=steps, seed=seed)
    nodes = [row[~torch.isnan(row)].double() for row in result.raw_eigenvalues]
    weights = [w[: len(v)].double() for w, v in zip(result.raw_weights, nodes, strict=True)]
    return (nodes, weights), operator.matvec.calls


def compare_density(
    name: str, model: nn.Module, batch: Batch, args: argparse.Namespace, lam_max: float | None
) -> tuple[dict, float]:
    """Part (b); ``lam_max`` is (a)'s reference (computed here when None). Returns the metrics and the seconds of
    the timed runs."""
    steps, probes, seed, dim = args.slq_steps, args.slq_probes, args.seed, n_params(model)
    contenders = {"ours (SLQ)": ours_density}
    if pyhessian is not None:
        contenders["PyHessian (density)"] = pyhessian_density
    if hessian_eigenthings is not None:
        contenders["eigenthings (SLQ)"] = eigenthings_density
    times = {label: [] for label in contenders}
    outputs = {}
    for _ in range(args.repeats):
        for label, fn in contenders.items():
            seconds, outputs[label] = timed(lambda fn=fn: fn(model, batch, steps, probes, seed))
            times[label].append(seconds)

    (grid, ours, info), _ = outputs["ours (SLQ)"]
    sigma = info["sigma"]
    lam_max = reference_spectrum(model, batch)[0][0].item() if lam_max is None else lam_max
    print(f"\n(b) density, {name} ({dim:,} parameters): {steps} Lanczos steps x {probes} Rademacher probes, float32")
    print(f"  common grid {len(grid)} points on [{grid[0]:.4f}, {grid[-1]:.4f}], sigma {sigma:.4g} (ours: 1% of span)")
    header = (
        f"  {'method':<20} {'HVPs':>6} {'median s':>9} {'peer/ours':>9} {'L1 to ours':>10} {'trace':>10} "
        f"{'max node':>9}"
    )
    print(header + f"   (reference lambda_max {lam_max:.5f})")
    ours_time = statistics.median(times["ours (SLQ)"])
    metrics = {"grid_points": len(grid), "grid_low": grid[0].item(), "grid_high": grid[-1].item(), "sigma": sigma,
               "reference_lambda_max": lam_max}  # fmt: skip
    for label in contenders:
        result, hvps = outputs[label]
        if label == "ours (SLQ)":
            density, trace, top = ours, info["trace"], info["lambda_max"]
        else:
            nodes, weights = result
            density = smoothed(nodes, weights, grid, sigma)
            trace = dim * statistics.mean((w * v).sum().item() for v, w in zip(nodes, weights, strict=True))
            top = max(v.max().item() for v in nodes)
        l1 = ((density - ours).abs().sum() * (grid[1] - grid[0])).item()
        median = statistics.median(times[label])
        print(
            f"  {label:<20} {hvps:>6} {median:>9.3f} {median / ours_time:>9.2f} {l1:>10.1e} {trace:>10.3f} {top:>9.5f}"
        )
        key = METRIC_PREFIX[label]
        metrics |= {f"{key}_hvps": hvps, f"{key}_seconds": median, f"{key}_trace": float(trace),
                    f"{key}_max_node": float(top)}  # fmt: skip
        if key != "ours":
            metrics |= {f"{key}_over_ours": median / ours_time, f"{key}_l1_to_ours": l1}
    return metrics, sum(sum(runs) for runs in times.values())


# ---------------------------------------------------------------- (c) exact mode vs the floor


def compare_exact(batch: Batch, args: argparse.Namespace) -> tuple[dict, dict, float]:
    """Part (c); returns the case, the metrics and the seconds of the timed runs."""
    torch.manual_seed(args.seed)
    model = MLP([784, args.exact_hidden, 10]).double().eval()
    batch = (batch[0].double(), batch[1])
    names = [n for n, _ in model.named_parameters()]

    def ours() -> Tensor:
        loss_of, theta = flat_loss(model, loss_fn, batch, names)
        return torch.linalg.eigvalsh(exact_hessian(loss_of, theta).double())

    def floor() -> Tensor:
        loss_of, theta = flat_loss(model, loss_fn, batch, names)
        return torch.linalg.eigvalsh(torch.func.hessian(loss_of)(theta))

    def hessian_only(build: Callable[[Callable, Tensor], Tensor]) -> Callable[[], Tensor]:
        def run() -> Tensor:
            loss_of, theta = flat_loss(model, loss_fn, batch, names)
            return build(loss_of, theta)

        return run

    parts = {
        "ours": ours,
        "floor": floor,
        "ours Hessian only": hessian_only(exact_hessian),
        "floor Hessian only": hessian_only(lambda f, t: torch.func.hessian(f)(t)),
    }
    times = {label: [] for label in parts}
    outputs = {}
    for _ in range(args.repeats):
        for label, fn in parts.items():
            seconds, outputs[label] = timed(fn)
            times[label].append(seconds)
    scale = outputs["floor"].abs().max()
    agreement = ((outputs["ours"] - outputs["floor"]).abs().max() / scale).item()
    medians = {label: statistics.median(t) for label, t in times.items()}
    print(
        f"\n(c) exact spectrum, MLP 784-{args.exact_hidden}-10 ({n_params(model):,} parameters), batch "
        f"{len(batch[1])}, float64"
    )
    print(f"  floor (torch.func.hessian + eigvalsh): median {medians['floor']:.3f} s   runs {_rounded(times['floor'])}")
    print(f"  ours (exact_hessian + eigvalsh):       median {medians['ours']:.3f} s   runs {_rounded(times['ours'])}")
    print(
        f"  Hessian alone: floor {medians['floor Hessian only']:.3f} s, ours {medians['ours Hessian only']:.3f} s; "
        f"max |difference| / max |lambda| = {agreement:.1e}"
    )
    print(f"  ratio (ours / floor): {medians['ours'] / medians['floor']:.3f}   target <= 1.3")
    case = {"part": "c", "net": f"MLP 784-{args.exact_hidden}-10", "parameters": n_params(model),
            "samples": len(batch[1]), "dtype": "float64", "repeats": args.repeats, "threads": args.threads}  # fmt: skip
    metrics = {"floor_seconds": medians["floor"], "ours_seconds": medians["ours"], "floor_runs": times["floor"],
               "ours_runs": times["ours"], "floor_hessian_seconds": medians["floor Hessian only"],
               "ours_hessian_seconds": medians["ours Hessian only"], "max_difference_over_max_lambda": agreement,
               "ratio": medians["ours"] / medians["floor"]}  # fmt: skip
    return case, metrics, sum(sum(runs) for runs in times.values())


def _rounded(values: list[float], digits: int = 3) -> list[float]:
    return [round(v, digits) for v in values]


# ---------------------------------------------------------------- main


def train(model: nn.Module, batch: Batch, steps: int) -> None:
    """Full-batch Adam (lr 1e-3) on the Hessian batch: the paper's "after training" point, where the class
    outliers stand out from the bulk."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(model, batch).backward()
        optimizer.step()
    for p in model.parameters():
        p.grad = None


def load_batch(samples: int, seed: int) -> Batch:
    datamodule = MNISTDataModule(subset_size=samples, normalization="unit", seed=seed)
    datamodule.setup("fit")
    images, labels = datamodule.train_set.tensors
    return images, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512, help="images in the fixed Hessian batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender (medians reported)")
    parser.add_argument("--rtol", type=float, default=1e-3, help="'equal accuracy': max relative error on the top 5")
    parser.add_argument("--power-max-iter", type=int, default=500, help="power iterations per eigenvalue, at most")
    parser.add_argument("--product-repeats", type=int, default=50, help="products timed alone in (a), per side")
    parser.add_argument("--max-hvps", type=int, default=1500, help="stop a calibration ladder past this many products")
    parser.add_argument("--slq-steps", type=int, default=80, help="Lanczos steps per probe in (b)")
    parser.add_argument("--slq-probes", type=int, default=2, help="Rademacher probes in (b)")
    parser.add_argument("--exact-hidden", type=int, default=4, help="hidden width of (c)'s MLP 784-h-10")
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"], help="models of (a)")
    parser.add_argument("--density-models", nargs="+", default=["mlp"], choices=["mlp", "cnn"], help="models of (b)")
    parser.add_argument("--parts", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    parser.add_argument("--train-steps", type=int, default=100, help="full-batch Adam steps before measuring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a shared 2-core machine)")
    parser.add_argument("--ledger", default=None, help="record the results in this ledger folder (default: print only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    versions = [f"torch {torch.__version__}", f"{torch.get_num_threads()} thread(s)"]
    for package, module in (("pyhessian", pyhessian), ("hessian-eigenthings", hessian_eigenthings)):
        versions.append(f"{package} {importlib.metadata.version(package)}" if module else f"{package} MISSING")
    print("Hessian benchmark:", ", ".join(versions))
    for missing in (PYHESSIAN_MISSING, EIGENTHINGS_MISSING):
        if missing:
            print(f"  {missing}; its comparisons are skipped")
    batch = load_batch(args.samples, args.seed)
    print(f"MNIST: {len(batch[1])} training images (MNISTDataModule(subset_size={args.samples}, seed={args.seed}))")

    torch.manual_seed(args.seed)
    rows: list[tuple[dict, dict, float]] = []  # (case, metrics, seconds) of each comparison, for the ledger
    models = {"mlp": ("MLP 784-128-10", MLP([784, 128, 10])), "cnn": ("small CNN", small_cnn())}
    for key, (name, model) in models.items():
        top_part, density_part = (
            "a" in args.parts and key in args.models,
            "b" in args.parts and key in args.density_models,
        )
        if not (top_part or density_part):
            continue
        train(model, batch, args.train_steps)
        model.eval()
        case = {"net": name, "parameters": n_params(model), "samples": len(batch[1]), "dtype": "float32",
                "repeats": args.repeats, "threads": args.threads, "train_steps": args.train_steps}  # fmt: skip
        lam_max = None
        if top_part:
            lam_max, metrics, seconds = compare_top(name, model, batch, args)
            rows.append(({"part": "a", **case, "rtol": args.rtol}, metrics, seconds))
        if density_part:
            metrics, seconds = compare_density(name, model, batch, args, lam_max)
            rows.append(({"part": "b", **case, "steps": args.slq_steps, "probes": args.slq_probes}, metrics, seconds))
    if "c" in args.parts:
        rows.append(compare_exact(batch, args))
    if args.ledger:
        for case, metrics, seconds in rows:
            record("hessian_vs_peers", case, metrics, command_line("ICLR17_DATA_DIR"), args.ledger, seconds, __file__)


if __name__ == "__main__":
    main()
