"""The p = 3 spherical spin glass and its projected gradient descent, for K independent instances at once
(arXiv:1511.06444; the authors' ``code/3spin.lua``).

Energy ``H(w) = (1/N) sum_ijk x_ijk w_i w_j w_k`` on the sphere ``||w|| = sqrt(N)`` (the 1/N is N^-(p-1)/2),
couplings i.i.d. with mean 0 and variance 1 from one of four ensembles. Gradient descent from a uniform
random point: project the gradient onto the sphere's tangent space, step with ``gamma_t = lr / (1 + t decay)``,
rescale to radius sqrt(N); the halting time at eps is the first step at which the projected gradient's norm is
below eps. The pure functions take a leading ensemble dimension K; :class:`SpinGlass` wraps them as a
LightningModule whose data, the couplings, come from :class:`SpinGlassDataModule`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from iclr17.callbacks.halting_time.functional import update_first_hits  # the rule HaltingTime applies

CouplingEnsemble = Literal["gaussian", "bernoulli", "uniform", "exponential"]
COUPLING_ENSEMBLES: tuple[str, ...] = ("gaussian", "bernoulli", "uniform", "exponential")


def sample_couplings(
    n_instances: int, n_spins: int, ensemble: CouplingEnsemble, generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> Tensor:  # fmt: skip
    """``(K, N, N, N)`` i.i.d. couplings with mean 0 and variance 1 (arXiv:1511.06444): ``gaussian`` N(0, 1),
    ``bernoulli`` +-1, ``uniform`` on [-sqrt(3), sqrt(3)], ``exponential`` Exp(1) - 1."""
    shape = (n_instances, n_spins, n_spins, n_spins)
    if ensemble == "gaussian":
        return torch.randn(shape, generator=generator, dtype=dtype)
    if ensemble == "bernoulli":
        return torch.randint(0, 2, shape, generator=generator).to(dtype).mul_(2).sub_(1)
    if ensemble == "uniform":
        return torch.rand(shape, generator=generator, dtype=dtype).mul_(2 * math.sqrt(3)).sub_(math.sqrt(3))
    if ensemble == "exponential":
        return torch.empty(shape, dtype=dtype).exponential_(1.0, generator=generator).sub_(1)
    raise ValueError(f"ensemble must be one of {COUPLING_ENSEMBLES}, got {ensemble!r}")


def symmetrize(couplings: Tensor) -> Tensor:
    """The average of ``x_ijk`` over the 6 permutations of (i, j, k): the same energy, and the gradient
    becomes one contraction (:func:`sphere_gradient`)."""
    out = couplings.clone()
    for perm in ((0, 2, 1, 3), (0, 1, 3, 2), (0, 2, 3, 1), (0, 3, 1, 2), (0, 3, 2, 1)):
        out += couplings.permute(perm)
    return out.div_(6)


def random_sphere_points(n_instances: int, n_spins: int, generator: torch.Generator, dtype=torch.float32) -> Tensor:
    """``(K, N)`` points drawn uniformly on the sphere of radius sqrt(N)."""
    w = torch.randn(n_instances, n_spins, generator=generator, dtype=dtype)
    return w * (math.sqrt(n_spins) / w.norm(dim=1, keepdim=True))


def energy(couplings: Tensor, w: Tensor) -> Tensor:
    """``(K,)`` energies ``H(w) = (1/N) sum_ijk x_ijk w_i w_j w_k`` (any couplings, symmetric or not)."""
    return torch.einsum("kabc,ka,kb,kc->k", couplings, w, w, w) / w.shape[1]


def sphere_gradient(symmetric_couplings: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """``(energy, projected gradient)`` at points ``w`` on the sphere, for symmetrised couplings.

    The Euclidean gradient is ``g_i = (3/N) sum_jk xs_ijk w_j w_k``; its tangent part is
    ``g - (g . w / N) w`` (``||w||^2 = N``); ``H = (g . w) / 3`` by Euler's theorem for a cubic form.
    """
    k, n = w.shape
    ww = (w.unsqueeze(2) * w.unsqueeze(1)).reshape(k, 1, n * n)
    # a row vector times the transposed view: CPU BLAS runs it as gemv (a column-vector bmm is 2-3x slower)
    g = torch.bmm(ww, symmetric_couplings.reshape(k, n, n * n).transpose(1, 2)).squeeze(1) * (3.0 / n)
    radial = (g * w).sum(dim=1, keepdim=True)
    return radial.squeeze(1) / 3.0, g - radial / n * w


def sphere_step(w: Tensor, projected_gradient: Tensor, gamma: float) -> Tensor:
    """One step ``w - gamma g`` rescaled to radius sqrt(N)."""
    w = w - gamma * projected_gradient
    return w * (math.sqrt(w.shape[1]) / w.norm(dim=1, keepdim=True))


def step_size(lr: float, decay: float, step: int) -> float:
    """``gamma_t = lr / (1 + t decay)`` for the (t + 1)-th update, as the Lua code counts (``time`` from 1)."""
    return lr / (1.0 + (step + 1) * decay)


def descend_until_halted(
    symmetric_couplings: Tensor, w: Tensor, eps: Tensor, lr: float = 0.2, decay: float = 0.0, max_steps: int = 10_000
) -> tuple[Tensor, int, Tensor]:
    """Projected gradient descent on K instances in lockstep, each until it met every eps.

    Returns ``(first, last_step, w)``: ``first[k, e]`` is the number of updates instance k had taken when its
    projected gradient norm was first below ``eps[e]`` (-1: not within ``max_steps``, i.e. censored at
    ``last_step``), and ``w`` each instance's last point. An instance that met every eps stops moving, and
    the working set is compacted whenever half of it has halted, so the cost is the sum of the halting times,
    not K times the longest. The Lua code counts gradient evaluations from 1, so its times are these plus one.
    """
    first = torch.full((w.shape[0], len(eps)), -1, dtype=torch.long, device=w.device)
    w_final, active = w.clone(), torch.arange(w.shape[0], device=w.device)
    couplings, step = symmetric_couplings, 0
    for step in range(max_steps + 1):
        _, g = sphere_gradient(couplings, w)
        first[active] = update_first_hits(first[active], torch.linalg.vector_norm(g, dim=1), eps, step)
        halted = (first[active] >= 0).all(dim=1)
        if step == max_steps or bool(halted.all()):
            break
        w = sphere_step(w, g, step_size(lr, decay, step))
        if 2 * int(halted.sum()) >= len(active):
            w_final[active] = w
            keep = ~halted
            active, couplings, w = active[keep], couplings[keep], w[keep]
    w_final[active] = w
    return first, step, w_final


class _Repeated(Dataset):
    def __init__(self, item: Tensor, length: int) -> None:
        self.item, self.length = item, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tensor:
        return self.item


class SpinGlassDataModule(pl.LightningDataModule):
    """The couplings of K spin-glass instances: the "data" of :class:`SpinGlass`, generated seeded in ``setup``.

    Every training batch is the same ``(K, N, N, N)`` tensor (``SpinGlass`` moves it to its device once);
    an epoch is ``steps_per_epoch`` gradient steps. The test split serves it once. Memory: ``4 K N^3`` bytes
    (N = 200: 32 MB per instance).

    Args:
        n_spins: N.
        n_instances: K independent instances.
        ensemble: coupling law (``gaussian``, ``bernoulli``, ``uniform``, ``exponential``), all mean 0, variance 1.
        seed: seeds the couplings.
        steps_per_epoch: gradient steps per epoch.
    """

    def __init__(
        self,
        n_spins: int = 200,
        n_instances: int = 1,
        ensemble: CouplingEnsemble = "gaussian",
        seed: int = 0,
        steps_per_epoch: int = 100,
    ) -> None:
        super().__init__()
        if n_spins < 2 or n_instances < 1 or steps_per_epoch < 1:
            raise ValueError("n_spins must be >= 2, n_instances and steps_per_epoch >= 1")
        self.save_hyperparameters()
        self.couplings: Tensor | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.couplings is None:
            hp = self.hparams
            generator = torch.Generator().manual_seed(hp.seed)
            self.couplings = sample_couplings(hp.n_instances, hp.n_spins, hp.ensemble, generator)

    def _loader(self, length: int) -> DataLoader:
        if self.couplings is None:
            raise RuntimeError("SpinGlassDataModule: call setup() first")
        return DataLoader(_Repeated(self.couplings, length), batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.hparams.steps_per_epoch)

    def test_dataloader(self) -> DataLoader:
        return self._loader(1)


class SpinGlass(pl.LightningModule):
    """Projected gradient descent on K p = 3 spherical spin glasses at once (arXiv:1511.06444), each instance with
    its own halting times.

    The parameter ``w`` is ``(K, N)``: K starting points drawn uniformly on the sphere from ``init_seed``.
    Each training step reads the couplings (the batch, from :class:`SpinGlassDataModule`), computes every
    instance's energy and projected gradient, records in the persistent buffer ``first_hits`` (``(K, E)``)
    the first step at which the gradient norm is below each eps, and takes the step with
    ``gamma_t = lr / (1 + t decay)``. The projected gradient is what ``w.grad`` holds before the optimizer
    step, so ``HaltingTime(rule="grad_norm_below")`` finds the same halting step for K = 1. Training stops
    once every instance met every eps (``stop_when_halted``). Logs ``train/loss`` (mean energy per spin,
    H/N), ``train/grad_norm`` (mean over instances) and ``train/halted`` (fraction halted at the last eps);
    the test step logs ``test/energy``, ``test/grad_norm`` and ``test/halted``.

    Args:
        n_spins: N (must equal the datamodule's).
        n_instances: K (must equal the datamodule's).
        lr: step size (0.2 in the authors' Lua ``main.lua``).
        lr_decay: ``decay`` in ``lr / (1 + t decay)`` (0 in ``main.lua``).
        eps: gradient-norm threshold(s), decreasing (``main.lua``: 0.01 at N = 200).
        init_seed: seeds the starting points.
        stop_when_halted: stop training once every instance met every eps.
    """

    def __init__(
        self,
        n_spins: int = 200,
        n_instances: int = 1,
        lr: float = 0.2,
        lr_decay: float = 0.0,
        eps: float | list[float] = 0.01,
        init_seed: int = 0,
        stop_when_halted: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        eps_list = [float(e) for e in (eps if isinstance(eps, (list, tuple)) else [eps])]
        generator = torch.Generator().manual_seed(init_seed)
        self.w = nn.Parameter(random_sphere_points(n_instances, n_spins, generator))
        self.register_buffer("eps", torch.tensor(eps_list), persistent=False)
        self.register_buffer("first_hits", torch.full((n_instances, len(eps_list)), -1, dtype=torch.long))
        self._host_couplings: Tensor | None = None
        self._couplings: Tensor | None = None

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer else None
        hp = getattr(datamodule, "hparams", {})
        for name in ("n_spins", "n_instances"):
            if name in hp and hp[name] != self.hparams[name]:
                raise ValueError(
                    f"model.{name}={self.hparams[name]} but the datamodule has {name}={hp[name]}; set both alike"
                )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Tensor:
        """The couplings, symmetrised and on ``device``, built once for the tensor the loader repeats."""
        if batch is not self._host_couplings:
            expected = (self.hparams.n_instances, *[self.hparams.n_spins] * 3)
            if tuple(batch.shape) != expected:
                raise ValueError(f"SpinGlass expects couplings of shape {expected}, got {tuple(batch.shape)}")
            self._host_couplings, self._couplings = batch, symmetrize(batch.to(device, self.w.dtype))
        return self._couplings

    def training_step(self, couplings: Tensor, batch_idx: int) -> Tensor:
        with torch.no_grad():
            h, g = sphere_gradient(couplings, self.w)
            norms = torch.linalg.vector_norm(g, dim=1)
            self.first_hits = update_first_hits(self.first_hits, norms, self.eps.to(norms.dtype), self.global_step)
        optimizer = self.optimizers()
        for group in optimizer.param_groups:
            group["lr"] = step_size(self.hparams.lr, self.hparams.lr_decay, self.global_step)
        self.w.grad = g
        optimizer.step()
        with torch.no_grad():
            self.w.mul_(math.sqrt(self.hparams.n_spins) / self.w.norm(dim=1, keepdim=True))
        halted = (self.first_hits[:, -1] >= 0).float().mean()
        loss = h.mean() / self.hparams.n_spins
        self.log_dict({"train/loss": loss, "train/grad_norm": norms.mean(), "train/halted": halted}, prog_bar=True)
        if self.hparams.stop_when_halted and bool((self.first_hits >= 0).all()):
            self.trainer.should_stop = True
        return loss

    def test_step(self, couplings: Tensor, batch_idx: int) -> None:
        h, g = sphere_gradient(couplings, self.w)
        norms = torch.linalg.vector_norm(g, dim=1)
        halted = (norms < self.eps[-1]).float().mean()
        self.log_dict(
            {"test/energy": h.mean() / self.hparams.n_spins, "test/grad_norm": norms.mean(), "test/halted": halted}
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.w], lr=self.hparams.lr)
