"""``EBGANLadder``: EBGAN-LN, a Ladder Network whose weighted denoising cost is the energy of an EBGAN
(arXiv:1609.03126 section 4.2, Table 2), with a generator trained against it and a margin decayed to 0."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn

from iclr17.functional.ebgan import MarginSchedule, discriminator_loss, generator_loss, margin_at
from iclr17.functional.ladder import ladder_loss

from ..averaged_gradients import AveragedManualBackward
from ..ladder.module import LOSS_NOISE_SEED, Ladder
from ..ladder.nets import LadderNetwork
from ..step_logging import is_logging_step
from .module import _on_buffer_copies
from .nets import MNISTGenerator

ZDistribution = Literal["normal", "uniform"]


class EBGANLadder(AveragedManualBackward, Ladder):
    """EBGAN-LN: the Ladder Network (:class:`~iclr17.modules.ladder.Ladder`) as EBGAN's discriminator.

    The energy of an input is the Ladder Network's weighted denoising cost, ``E(x) = sum_l lambda_l C^(l)(x)``
    (bottom layer only by default: ``lambda_0 C^(0)``, the LN's bottom-layer reconstruction cost; arXiv:1609.03126
    section 4.2). Each training batch ``(x_labelled, y_labelled, x_unlabelled)`` makes, by manual optimisation:

    - D step (the Ladder Network): ``L_D = CE(labelled) + mean E(x_unlabelled) + mean [m - E(G(z))]^+``, the
      Ladder Network's loss plus EBGAN's per-sample hinge (eq 1) on as many fakes as unlabelled examples. Real,
      labelled and generated examples are batch-normalised separately, so the fakes change nothing in the real
      terms.
    - G step: ``L_G = mean E(G(z))`` (eq 2), the same z; only G steps.

    The margin follows ``margin_schedule`` from ``margin`` to ``final_margin`` (our design: the paper decays it
    gradually to 0 but its schedule, App. D, is not available; ``docs/papers/ebgan.md``). At ``m = 0`` the hinge
    ``[0 - E]^+`` is 0 for every fake (an energy is a sum of squares, >= 0) and has no gradient, so L_D is
    exactly the Ladder Network's loss: from then on the fakes are not generated, G is not stepped (it can no
    longer reach D), and the model trains as a plain Ladder Network.

    G maps ``(N, z_dim)`` noise to images in [-1, 1] (tanh, as the EBGAN MNIST generators); they are rescaled to
    the data's [0, 1] and flattened, ``(G(z) + 1) / 2``, before the Ladder Network sees them. Both optimisers'
    learning rates follow the Ladder Network's linear decay. Evaluation, noise, checkpoints and the running
    statistics are the Ladder's. Under DDP each step's gradients are averaged over processes by one reduction of
    the stepped network's (``AveragedManualBackward``), as EBGAN's; G's BatchNorm buffers are each process's own
    (they see different z, and G is only used in training mode).

    Logged besides the Ladder's: ``train/loss_d``, ``train/loss_g``, ``train/energy_real``, ``train/energy_fake``,
    ``train/margin`` and ``train/margin_active`` (fraction of fakes with ``E(G(z)) < m``). Once ``m = 0`` there are
    no fakes, so ``train/loss_g``, ``train/energy_fake`` and ``train/margin_active`` are no longer logged: the
    trainer's ``callback_metrics`` keep their last values from ``m > 0`` (a ``FitStudy`` ledger row leaves them out,
    ``iclr17.studies.fit_study.stale_metrics``).

    Args:
        network: the Ladder Network (default ``LadderNetwork()``).
        generator: maps ``(N, z_dim)`` noise to ``N`` images of 784 pixels in [-1, 1] and has a ``z_dim`` attribute
            (default ``MNISTGenerator()``, the best MNIST EBGAN G, 5 x 800).
        denoising_weights: lambda_0 ... lambda_L, as for ``Ladder`` (default bottom only, 5000); lambda_0 > 0.
        margin: m_0, the initial margin, on the scale of E (the weighted cost).
        margin_schedule: ``linear`` (default), ``exponential``, ``step`` or ``constant`` (see ``margin_at``).
        final_margin: the margin at the end of the decay (0: a plain Ladder Network from then on).
        margin_decay_epochs: epochs over which the margin decays (fractional epochs: it moves every batch).
        margin_step_every: epochs between changes of the ``step`` schedule.
        z_distribution: ``normal`` N(0, 1) or ``uniform`` U(-1, 1) noise for G.
        optimizer_d: callable from the Ladder Network's parameters to its optimizer (None: Adam lr 0.002).
        optimizer_g: callable from G's parameters to its optimizer (None: ``default_optimizer_g``, Adam lr 0.001,
            the EBGAN MNIST grid's).
        lr_decay_start: epochs after which both learning rates decay linearly (100.5).
        lr_decay_end: epochs at which they reach 0 (150).
    """

    default_optimizer_g = partial(torch.optim.Adam, lr=1e-3)
    not_hyperparameters = ["network", "generator", "optimizer", "optimizer_d", "optimizer_g"]

    def __init__(
        self,
        network: LadderNetwork | None = None,
        generator: nn.Module | None = None,
        denoising_weights: list[float] | None = None,
        margin: float = 1.0,
        margin_schedule: MarginSchedule = "linear",
        final_margin: float = 0.0,
        margin_decay_epochs: float = 100.0,
        margin_step_every: float = 1.0,
        z_distribution: ZDistribution = "normal",
        optimizer_d: OptimizerCallable | None = None,
        optimizer_g: OptimizerCallable | None = None,
        lr_decay_start: float = 100.5,
        lr_decay_end: float = 150.0,
    ) -> None:
        super().__init__(network, denoising_weights, optimizer_d, lr_decay_start, lr_decay_end)
        self.automatic_optimization = False
        if margin < 0 or final_margin < 0:
            raise ValueError(f"margin and final_margin must be >= 0, got {margin} and {final_margin}")
        if margin_schedule not in ("constant", "linear", "exponential", "step"):
            raise ValueError(f"margin_schedule must be constant, linear, exponential or step; got {margin_schedule!r}")
        margin_at(0.0, margin, margin_schedule, final_margin, margin_decay_epochs, margin_step_every)  # checks them
        if z_distribution not in ("normal", "uniform"):
            raise ValueError(f"z_distribution must be 'normal' or 'uniform', got {z_distribution!r}")
        if not self.layers_weighted[0]:
            raise ValueError("EBGANLadder's energy is the bottom-layer cost: denoising_weights[0] must be > 0")
        self.generator = generator if generator is not None else MNISTGenerator()
        if not isinstance(getattr(self.generator, "z_dim", None), int):
            raise TypeError(f"generator {type(self.generator).__name__} needs an integer z_dim attribute")
        self.optimizer_g_factory = optimizer_g if optimizer_g is not None else self.default_optimizer_g

    # ----- the generator and the margin -------------------------------------------------------------------------

    def sample_z(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, z_dim)`` noise for G, drawn on the CPU from ``generator`` (not ``sample_noise``: EBGAN-LN's images
        are flat and in [0, 1], so ``ImageGrids``' contract does not apply)."""
        shape = (n, self.generator.z_dim)
        if self.hparams.z_distribution == "uniform":
            return (torch.rand(shape, generator=generator) * 2 - 1).to(self.device)
        return torch.randn(shape, generator=generator).to(self.device)

    def generate(self, z: Tensor) -> Tensor:
        """G's images as the Ladder Network sees the data: flattened, in [0, 1], ``(G(z) + 1) / 2``."""
        images = self.generator(z).flatten(1)
        if images.shape[1] != self.network.widths[0]:
            raise ValueError(
                f"the generator {type(self.generator).__name__} makes images of {images.shape[1]} values; the Ladder "
                f"Network takes {self.network.widths[0]}"
            )
        return (images + 1) / 2

    def current_margin(self, batch_idx: int = 0) -> float:
        """The margin at batch ``batch_idx`` of the current epoch (of its start by default)."""
        hp = self.hparams
        batches = max(int(self.trainer.num_training_batches), 1) if batch_idx else 1
        epoch = self.current_epoch + batch_idx / batches
        return margin_at(
            epoch, hp.margin, hp.margin_schedule, hp.final_margin, hp.margin_decay_epochs, hp.margin_step_every
        )

    # ----- losses and training ----------------------------------------------------------------------------------

    def discriminator_terms(
        self, batch: Any, margin: float, rng: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        """``L_D``, the labelled logits, the real energies, and (for ``margin > 0``) the noise and fake energies.
        Noise is drawn in this order: labelled half, unlabelled half, z, fakes."""
        x_labelled, y_labelled, x_unlabelled = self.split_batch(batch)
        logits, _, energy_real = self.ladder_terms(x_labelled, y_labelled, x_unlabelled, rng)
        if margin <= 0:  # [0 - E]^+ = 0 for every E >= 0: L_D is the Ladder Network's loss
            return ladder_loss(logits, y_labelled, energy_real), logits, energy_real, None, None
        z = self.sample_z(x_unlabelled.shape[0], rng).to(x_unlabelled.dtype)
        with torch.no_grad():
            fake = self.generate(z)
        energy_fake = self.energy(fake, rng)
        loss = F.cross_entropy(logits, y_labelled) + discriminator_loss(energy_real, energy_fake, margin)
        return loss, logits, energy_real, z, energy_fake

    def loss(self, batch: Any) -> Tensor:
        """L_D of the batch at the current epoch's margin, side-effect free for measurement callbacks: noise from a
        generator seeded by ``LOSS_NOISE_SEED``, G's BatchNorm statistics written to copies."""
        with _on_buffer_copies(self.generator):
            return self.discriminator_terms(
                batch, self.current_margin(), torch.Generator().manual_seed(LOSS_NOISE_SEED)
            )[0]

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        margin = self.current_margin(batch_idx)
        rng = self._noise_generator()
        self.update_running_statistics(self.split_batch(batch)[0])
        with self.toggled_optimizer(opt_d):
            loss_d, logits, energy_real, z, energy_fake = self.discriminator_terms(batch, margin, rng)
            opt_d.zero_grad()
            self.backward_averaged(opt_d, loss_d)
            opt_d.step()
        loss_g = None
        if z is not None:
            with self.toggled_optimizer(opt_g):
                loss_g = generator_loss(self.energy(self.generate(z), rng))
                opt_g.zero_grad()
                self.backward_averaged(opt_g, loss_g)
                opt_g.step()

        if is_logging_step(self, batch_idx):
            y_labelled = self.split_batch(batch)[1]
            values = {
                "train/loss_step": loss_d.detach() + (0.0 if loss_g is None else loss_g.detach()),
                "train/loss_d": loss_d.detach(),
                "train/cross_entropy": F.cross_entropy(logits.detach(), y_labelled),
                "train/energy_real": energy_real.detach().mean(),
                "train/margin": torch.tensor(float(margin), device=self.device),
            }
            if loss_g is not None:
                values["train/loss_g"] = loss_g.detach()
                values["train/energy_fake"] = energy_fake.detach().mean()
                values["train/margin_active"] = (energy_fake.detach() < margin).float().mean()
            self.log_dict(values, sync_dist=True)

    def on_train_epoch_end(self) -> None:
        for scheduler in self.lr_schedulers():
            scheduler.step()

    def configure_optimizers(self) -> Any:
        opt_g = self.optimizer_g_factory(self.generator.parameters())
        opt_d = self.optimizer_factory(self.network.parameters())
        return [opt_g, opt_d], [self.lr_schedule(opt_g), self.lr_schedule(opt_d)]
