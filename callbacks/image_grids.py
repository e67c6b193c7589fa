"""``ImageGrids``: fixed-z sample grids, reconstruction grids and real-vs-fake energy histograms of a generative
model, sent to whichever loggers are present (wandb, TensorBoard) and otherwise written as PNG files."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchvision.utils import make_grid

from .measurement import LoggingStep, log_histogram, log_image, measurement_mode, media_loggers
from .run_folder import run_folder


class ImageGrids(pl.Callback):
    """Every ``every_n_batches`` training batches and at the end of training, on rank 0, in eval mode:

    - ``images/samples``: ``G(z)`` for ``n_images`` noise vectors drawn once from ``seed`` (the same z all run);
    - ``images/reconstructions`` (models with ``reconstruct``): the first ``n_images // 2`` real images of the
      first training batch, each next to its reconstruction ``Dec(Enc(x))`` (rows alternate real, reconstructed);
    - ``images/energy_real`` and ``images/energy_fake`` histograms (models with ``energy``), on those real images
      and the fixed-z samples: a diagnostic of EBGAN collapse (Zhao, Mathieu & LeCun, arXiv:1609.03126).

    Contract with the model, checked in ``setup``: ``sample_noise(n, generator)`` returns noise on the model's
    device and ``model(z)`` returns images in [-1, 1] of shape ``(n, C, H, W)``; ``reconstruct(x)`` and
    ``energy(x)`` (per-sample energies) are optional. Images go to wandb (``log_image``) and TensorBoard
    (``add_image``, ``add_histogram``); PNG files go to ``<run folder>/image_grids/`` (the run's own folder,
    ``iclr17.callbacks.run_folder``) when neither logger is present or ``save_png=True``. Media are logged at the
    step Lightning gives the scalars of the same batch (one per batch; a GAN's ``global_step`` counts its G and D
    steps), counted by the callback (``iclr17.callbacks.measurement.LoggingStep``). The batch and step counters
    are kept in the callback's state, so a resumed run keeps its cadence and its steps. The model runs in eval
    mode without gradients, with its train flags and the RNG restored afterwards.

    Args:
        every_n_batches: training batches between grids (0: only at the end of training).
        n_images: images per grid (a square number looks best).
        seed: seed of the fixed noise.
        save_png: write PNG files even when an image logger is present.
    """

    def __init__(self, every_n_batches: int = 500, n_images: int = 64, seed: int = 0, save_png: bool = False) -> None:
        if every_n_batches < 0 or n_images < 2:
            raise ValueError(f"every_n_batches must be >= 0 and n_images >= 2; got {every_n_batches}, {n_images}")
        self.every_n_batches = every_n_batches
        self.n_images = n_images
        self.seed = seed
        self.save_png = save_png
        self.batches_seen = 0
        self.logging_step = LoggingStep()
        self.fixed_z: Tensor | None = None
        self.real: Tensor | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not callable(getattr(pl_module, "sample_noise", None)):
            raise TypeError(
                f"ImageGrids needs {type(pl_module).__name__}.sample_noise(n, generator) and forward(z) -> images"
            )
        generator = torch.Generator().manual_seed(self.seed)  # a CPU generator: EBGAN draws its noise on the CPU
        self.fixed_z = pl_module.sample_noise(self.n_images, generator)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.real is None:
            x = batch[0] if isinstance(batch, list | tuple) else batch
            self.real = x[: self.n_images // 2].detach().clone()
        self.batches_seen += 1
        step = self.logging_step.batch_end(trainer)
        if self.every_n_batches and self.batches_seen % self.every_n_batches == 0:
            self.log_grids(trainer, pl_module, step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.logging_step.epoch_end(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.every_n_batches or self.batches_seen % self.every_n_batches:
            self.log_grids(trainer, pl_module, self.logging_step.value)

    def log_grids(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int | None = None
    ) -> dict[str, Tensor]:
        """Compute the grids and histograms now and send them at ``step`` (default: the logging step of the next
        batch); returns them (on rank 0; empty elsewhere). wandb drops a log whose step is behind one already
        written, so media must not run ahead of the scalars."""
        if not trainer.is_global_zero:
            return {}
        step = self.logging_step.value if step is None else step
        media = self._media(pl_module)
        for key, value in media.items():
            if value.dim() == 3:
                log_image(trainer, f"images/{key}", value, step, "image_grids", always_file=self.save_png)
            else:
                log_histogram(trainer, f"images/{key}", value, step)
        if "energy_fake" in media and (self.save_png or not media_loggers(trainer)):
            self._write_energy_png(trainer, media, step)
        return media

    def _media(self, pl_module: pl.LightningModule) -> dict[str, Tensor]:
        with measurement_mode(pl_module):
            fake = pl_module(self.fixed_z.to(pl_module.device))
            nrow = max(1, round(self.n_images**0.5))
            media = {"samples": _grid(fake, nrow)}
            if self.real is not None and callable(getattr(pl_module, "reconstruct", None)):
                real = self.real.to(pl_module.device)
                try:
                    recon = pl_module.reconstruct(real).view_as(real)
                except RuntimeError:  # a model without a decoder (e.g. a GAN discriminator)
                    recon = None
                if recon is not None:
                    pairs = torch.stack([real, recon], dim=1).flatten(0, 1)
                    media["reconstructions"] = _grid(pairs, 2 * max(1, round((len(real) / 2) ** 0.5)))
            if callable(getattr(pl_module, "energy", None)):
                media["energy_fake"] = pl_module.energy(fake).float().cpu()
                if self.real is not None:
                    media["energy_real"] = pl_module.energy(self.real.to(pl_module.device)).float().cpu()
        return media

    @staticmethod
    def _write_energy_png(trainer: pl.Trainer, media: dict[str, Tensor], step: int) -> None:
        """The real and fake energy histograms in one figure, ``<run folder>/image_grids/energy_step<N>.png``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = [key for key in ("energy_real", "energy_fake") if key in media]
        values = torch.cat([media[key] for key in keys])
        low, high = float(values.min()), float(values.max())
        pad = 0.5 * max(abs(high), 1.0) if high - low < 1e-6 * max(abs(high), 1.0) else 0.0  # constant energies
        figure, ax = plt.subplots(figsize=(4, 3))
        for key in keys:
            ax.hist(media[key].numpy(), bins=30, range=(low - pad, high + pad), alpha=0.6, label=key[7:])
        ax.set(xlabel="energy", ylabel="count", title=f"step {step}")
        ax.legend()
        figure.tight_layout()
        folder = run_folder(trainer) / "image_grids"
        folder.mkdir(parents=True, exist_ok=True)
        figure.savefig(folder / f"energy_step{step}.png", dpi=100)
        plt.close(figure)

    def state_dict(self) -> dict[str, Any]:
        return {"batches_seen": self.batches_seen, "logging_step": self.logging_step.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches_seen = state_dict["batches_seen"]
        if "logging_step" in state_dict:
            self.logging_step.load_state_dict(state_dict["logging_step"])


def _grid(images: Tensor, nrow: int) -> Tensor:
    """A ``(C, H, W)`` grid in [0, 1] of images in [-1, 1] (flat 784-vectors are shown as 28x28)."""
    if images.dim() == 2 and images.shape[1] == 784:
        images = images.view(-1, 1, 28, 28)
    return make_grid(images.float().cpu(), nrow=nrow, normalize=True, value_range=(-1, 1), padding=2)
