"""Projected gradient descent on K p = 3 spherical spin glasses as a LightningModule (arXiv:1511.06444); the math
is ``iclr17.functional.spin_glass``, the couplings come from ``iclr17.datamodules.SpinGlassDataModule``."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from iclr17.functional.halting import update_first_hits
from iclr17.functional.spin_glass import energy, random_sphere_points, sphere_gradient, step_size, symmetrize

from .process_memory import unshare_memory


class SpinGlass(pl.LightningModule):
    """Projected gradient descent on K p = 3 spherical spin glasses at once (arXiv:1511.06444), each instance with
    its own halting times.

    The parameter ``w`` is ``(K, N)``: K starting points drawn uniformly on the sphere from ``init_seed``.
    Each training step reads the couplings (the batch, from :class:`SpinGlassDataModule`), computes every
    instance's energy and projected gradient, records in the persistent buffer ``first_hits`` (``(K, E)``)
    the first step at which the gradient norm is below each eps, and takes the step with
    ``gamma_t = lr / (1 + t decay)``. The projected gradient is what ``w.grad`` holds before the optimizer
    step, so ``HaltingTime(rule="grad_norm_below")`` finds the same halting step for K = 1. Training stops
    once every instance met every eps (``stop_when_halted``). Logs ``train/loss_step`` (mean energy per spin,
    H/N), ``train/grad_norm`` (mean over instances) and ``train/halted`` (fraction halted at the last eps);
    the test step logs ``test/energy``, ``test/grad_norm`` and ``test/halted``. ``loss(couplings)`` is that mean
    energy per spin at the current points, without side effects, for measurement callbacks.

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
        unshare_memory(self)  # this process's own tensors (``ddp_spawn`` leaves plain attributes shared)
        hp = getattr(self.trainer.datamodule, "hparams", {})
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

    def loss(self, couplings: Tensor) -> Tensor:
        """The mean over instances of the energy per spin, ``H(w) / N``, for (symmetrised or raw) couplings."""
        return energy(couplings, self.w).mean() / self.hparams.n_spins

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
        self.log_dict({"train/loss_step": loss, "train/grad_norm": norms.mean(), "train/halted": halted}, prog_bar=True)
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
