"""``EBGAN``: the energy-based GAN of Zhao, Mathieu and LeCun (ICLR 2017) with a standard-GAN switch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Literal, get_args

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from iclr17.functional.ebgan import (
    Energy,
    HingeReduction,
    MarginSchedule,
    discriminator_loss,
    gan_discriminator_loss,
    gan_generator_loss,
    generator_loss,
    margin_at,
    pulling_away_term,
    reconstruction_energy,
)

from ..averaged_gradients import AveragedManualBackward
from ..noise_stream import NoiseStream
from ..objective import WeightedMean
from ..process_memory import unshare_memory
from ..step_logging import is_logging_step
from .metrics import MNISTFeatures, MNISTScore
from .nets import MNISTDiscriminator, MNISTGenerator

Loss = Literal["ebgan", "gan"]
ZDistribution = Literal["normal", "uniform"]
MetricFeatures = Literal["mnist", "inception"]
LOSS_NOISE_SEED = 0  # seeds the noise of loss(batch), the same at every call


class EBGAN(NoiseStream, AveragedManualBackward, pl.LightningModule):
    """EBGAN (``loss="ebgan"``, eqs 1-2 and 13-14 of the paper) or a standard GAN on the same nets (``loss="gan"``).

    Each training batch makes ``d_steps_per_g`` discriminator steps and then one generator step, by manual
    optimization (``toggled_optimizer``, ``manual_backward``, ``clip_gradients``; ``docs/papers/ebgan.md``):

    - D step: ``fake = G(z)`` without gradient; ``L_D = mean D(x) + mean [m - D(fake)]^+`` (EBGAN, per-sample
      hinge) or the binary cross-entropy of real vs fake (GAN); only D's optimizer steps.
    - G step: ``L_G = mean D(G(z)) + lambda_PT f_PT(Enc(G(z)))`` (EBGAN) or ``-mean log D(G(z))`` (GAN); only G
      steps. G's gradient flows through both the auto-encoder's input and its reconstruction target (both are
      ``G(z)``) unless ``detach_recon_target``.

    ``trainer.global_step`` counts optimizer steps, ``d_steps_per_g + 1`` per batch: budget runs with
    ``max_epochs``. Under DDP each step's gradients are averaged over processes by one reduction of the stepped
    network's gradients (``AveragedManualBackward``: DDP's own reducer would wait for the other network's), so
    ``strategy="ddp"`` works without ``find_unused_parameters``. Noise comes from the module's own
    ``torch.Generator``, seeded from the global seed plus the process rank (so DDP processes draw different z) and
    stored in checkpoints.

    Logged on logging steps: ``train/loss_step`` (``loss_d + loss_g``, a progress signal only), ``train/loss_d``,
    ``train/loss_g``, ``train/energy_real``, ``train/energy_fake``, ``train/margin``, ``train/margin_active``
    (fraction of fakes with ``D(G(z)) < m``, the hinge's active set), ``train/pt``. Validation and test log
    ``<split>/energy_real``, ``<split>/energy_fake`` and, with ``mnist_score=True``, ``<split>/mnist_score`` (I',
    one generated sample per evaluation image), with ``fid=True`` ``<split>/fid``, and with ``kid=True``
    ``<split>/kid`` and ``<split>/kid_std``. In GAN mode "energy" means
    ``-log D(.)``.

    ``loss(batch)``, for measurement callbacks, is the discriminator loss L_D of the batch at the current margin,
    with fakes from noise of a generator seeded by ``LOSS_NOISE_SEED`` (see :meth:`loss`).

    Args:
        generator: maps ``(N, z_dim)`` noise to images and has a ``z_dim`` attribute (default: the best MNIST
            EBGAN G, ``MNISTGenerator(n_layers=5, size=800)``).
        discriminator: maps images to ``(output, code)``: a reconstruction for ``loss="ebgan"``, one logit per
            sample for ``loss="gan"`` (default ``MNISTDiscriminator(n_layers=2, size=1024)`` with the head the loss
            needs). Its declared ``image_shape`` (ours declare one), G's images and the data's must agree: the
            first batch of each fit, validation or test checks it.
        loss: ``ebgan`` (energy, margin hinge) or ``gan`` (the paper's baseline, non-saturating G loss).
        energy: ``l2`` (sqrt of the sum of squares, the literal eq 13, default), ``sse`` or ``mse`` (section 2.3).
        margin: m, the (initial) margin; 10 for the MNIST grid on the authors' energy scale.
        margin_schedule: ``constant`` (the paper's MNIST/LSUN/CelebA runs) or a decay from ``margin`` to
            ``final_margin`` over ``margin_decay_epochs``: ``linear``, ``exponential`` or ``step`` (section 4.2).
        final_margin: the margin at the end of a decaying schedule.
        margin_decay_epochs: epochs over which the margin decays.
        margin_step_every: epochs between changes of the ``step`` schedule.
        pt_weight: lambda_PT; 0 for EBGAN, 0.1 for EBGAN-PT (section 2.4). Needs ``batch_size >= 2`` per process.
        hinge_reduction: ``per_sample`` (the paper) or ``batch_mean`` (a port's bug, ``docs/papers/ebgan.md``).
        detach_recon_target: detach G(z) as the reconstruction target in the G loss (a port's bug; default false).
        resample_z_for_g: draw fresh z for the G step instead of reusing the D step's (not in the paper; default false).
        d_steps_per_g: D steps per G step, each with fresh z and the same real batch (not in the paper; default 1).
        z_distribution: ``normal`` N(0, 1) or ``uniform`` U(-1, 1) noise (not stated in the paper).
        optimizer_g: callable from G's parameters to its optimizer (None: ``default_optimizer``, Adam with lr 1e-3,
            the MNIST grid's).
        optimizer_d: callable from D's parameters to its optimizer (None: ``default_optimizer``).
        gradient_clip_val: clip each network's gradient norm to this value before its step (None: no clipping).
        mnist_score: compute I' with the shipped MNIST classifier during validation and test (28x28 1-channel
            generators only).
        fid: compute torchmetrics' FID between the evaluation images and as many generated ones.
        kid: compute torchmetrics' KID (mean and standard deviation over subsets of ``kid_subset_size``) the same
            way, logged at the end of each evaluation epoch.
        metric_features: features for FID and KID: ``mnist``, the shipped MNIST classifier's 512 features
            (offline; 28x28 1-channel images), or ``inception``, torchmetrics' Inception-v3 (needs the
            ``torch-fidelity`` package and its weights, downloaded once or already in its cache).
        kid_subset_size: samples per KID subset (at most the number of evaluation images).
        eval_seed: seed of the noise used in validation and test (plus the process rank), so evaluations repeat.
    """

    noise_checkpoint_key = "ebgan_noise_rng"

    default_optimizer = partial(torch.optim.Adam, lr=1e-3)

    def __init__(
        self,
        generator: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        loss: Loss = "ebgan",
        energy: Energy = "l2",
        margin: float = 10.0,
        margin_schedule: MarginSchedule = "constant",
        final_margin: float = 0.0,
        margin_decay_epochs: float = 1.0,
        margin_step_every: float = 1.0,
        pt_weight: float = 0.0,
        hinge_reduction: HingeReduction = "per_sample",
        detach_recon_target: bool = False,
        resample_z_for_g: bool = False,
        d_steps_per_g: int = 1,
        z_distribution: ZDistribution = "normal",
        optimizer_g: OptimizerCallable | None = None,
        optimizer_d: OptimizerCallable | None = None,
        gradient_clip_val: float | None = None,
        mnist_score: bool = False,
        fid: bool = False,
        kid: bool = False,
        metric_features: MetricFeatures = "mnist",
        kid_subset_size: int = 50,
        eval_seed: int = 1234,
    ) -> None:
        super().__init__()
        switches = dict(
            loss=(loss, Loss),
            energy=(energy, Energy),
            margin_schedule=(margin_schedule, MarginSchedule),
            hinge_reduction=(hinge_reduction, HingeReduction),
            z_distribution=(z_distribution, ZDistribution),
            metric_features=(metric_features, MetricFeatures),
        )
        for name, (value, choices) in switches.items():
            if value not in get_args(choices):
                raise ValueError(f"EBGAN: {name} must be one of {', '.join(get_args(choices))}; got {value!r}")
        ranges = dict(  # argument: (value, holds, what is expected)
            margin=(margin, margin > 0, "> 0"),
            final_margin=(final_margin, final_margin >= 0, ">= 0"),
            margin_decay_epochs=(margin_decay_epochs, margin_decay_epochs > 0, "> 0"),
            margin_step_every=(margin_step_every, margin_step_every > 0, "> 0"),
            pt_weight=(pt_weight, pt_weight >= 0, ">= 0"),
            d_steps_per_g=(d_steps_per_g, d_steps_per_g >= 1, ">= 1"),
            gradient_clip_val=(gradient_clip_val, gradient_clip_val is None or gradient_clip_val > 0, "> 0 or None"),
        )
        for name, (value, holds, expected) in ranges.items():
            if not holds:
                raise ValueError(f"EBGAN: {name} must be {expected}; got {value!r}")
        if loss == "gan" and pt_weight:
            raise ValueError("pt_weight applies to loss='ebgan' only; set it to 0 for the GAN baseline")
        self.save_hyperparameters(ignore=["generator", "discriminator", "optimizer_g", "optimizer_d"])
        self.automatic_optimization = False
        self.generator = generator if generator is not None else MNISTGenerator()
        head = "autoencoder" if loss == "ebgan" else "binary"
        self.discriminator = discriminator if discriminator is not None else MNISTDiscriminator(head=head)
        if not isinstance(getattr(self.generator, "z_dim", None), int):
            raise TypeError(f"generator {type(self.generator).__name__} needs an integer z_dim attribute")
        self.z_dim: int = self.generator.z_dim
        self.optimizer_g_factory = optimizer_g if optimizer_g is not None else self.default_optimizer
        self.optimizer_d_factory = optimizer_d if optimizer_d is not None else self.default_optimizer
        self.val_score = MNISTScore() if mnist_score else None
        self.test_score = MNISTScore() if mnist_score else None
        self.val_energy_real, self.val_energy_fake = WeightedMean(), WeightedMean()  # exact under DDP
        self.test_energy_real, self.test_energy_fake = WeightedMean(), WeightedMean()
        self.val_fid, self.test_fid = (_feature_metric("fid", metric_features) if fid else None for _ in range(2))
        self.val_kid, self.test_kid = (
            _feature_metric("kid", metric_features, subset_size=kid_subset_size) if kid else None for _ in range(2)
        )

    def setup(self, stage: str) -> None:
        unshare_memory(self)  # this process's own metric states (``ddp_spawn`` leaves them shared)

    # ----- noise and the networks' outputs ---------------------------------------------------------------------

    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, z_dim)`` noise from ``generator`` (default: the module's training noise generator)."""
        if generator is None:
            generator = self._noise_generator()
        # drawn on the CPU whatever the device: the generator's state then means the same on every device,
        # so a checkpoint written on a GPU resumes on a CPU (and Lightning's teardown to CPU changes nothing)
        if self.hparams.z_distribution == "uniform":
            return (torch.rand(n, self.z_dim, generator=generator) * 2 - 1).to(self.device)
        return torch.randn(n, self.z_dim, generator=generator).to(self.device)

    def forward(self, z: Tensor) -> Tensor:
        """Generated images ``G(z)``."""
        return self.generator(z)

    def energy_and_code(self, x: Tensor, detach_target: bool = False) -> tuple[Tensor, Tensor]:
        """Per-sample energy (EBGAN: eq 13; GAN: ``-log D(x)``) and the encoder code of ``x``."""
        output, code = self.discriminator(x)
        if self.hparams.loss == "gan":
            return nn.functional.softplus(-output), code
        target = x.detach() if detach_target else x
        return reconstruction_energy(target, output, self.hparams.energy), code

    def energy(self, x: Tensor) -> Tensor:
        """Per-sample energy of images ``x`` (for histograms and monitoring)."""
        return self.energy_and_code(x)[0]

    def reconstruct(self, x: Tensor) -> Tensor:
        """The auto-encoder's reconstruction ``Dec(Enc(x))`` (EBGAN only)."""
        if self.hparams.loss != "ebgan":
            raise RuntimeError("reconstruct needs loss='ebgan' (the GAN discriminator outputs logits)")
        return self.discriminator(x)[0]

    def current_margin(self, batch_idx: int = 0) -> float:
        """The margin at batch ``batch_idx`` of the current epoch (of its start by default)."""
        hp = self.hparams
        if hp.margin_schedule == "constant":
            return hp.margin
        epoch = self.current_epoch + (batch_idx / max(int(self.trainer.num_training_batches), 1) if batch_idx else 0)
        return margin_at(
            epoch, hp.margin, hp.margin_schedule, hp.final_margin, hp.margin_decay_epochs, hp.margin_step_every
        )

    # ----- training ---------------------------------------------------------------------------------------------

    def _d_loss(self, x: Tensor, fake: Tensor, margin: float) -> tuple[Tensor, Tensor, Tensor]:
        if self.hparams.loss == "gan":
            real_logits, fake_logits = self.discriminator(x)[0], self.discriminator(fake)[0]
            loss = gan_discriminator_loss(real_logits, fake_logits)
            return loss, nn.functional.softplus(-real_logits), nn.functional.softplus(-fake_logits)
        real_energy, fake_energy = self.energy(x), self.energy(fake)
        return (
            discriminator_loss(real_energy, fake_energy, margin, self.hparams.hinge_reduction),
            real_energy,
            fake_energy,
        )

    def _g_loss(self, fake: Tensor) -> tuple[Tensor, Tensor | None]:
        """L_G and the encoder codes of the fakes (None for the GAN)."""
        hp = self.hparams
        if hp.loss == "gan":
            return gan_generator_loss(self.discriminator(fake)[0]), None
        fake_energy, code = self.energy_and_code(fake, detach_target=hp.detach_recon_target)
        return generator_loss(fake_energy, code, hp.pt_weight), code

    def _step(self, optimizer: Any, loss: Tensor) -> None:
        optimizer.zero_grad()
        self.backward_averaged(optimizer, loss)
        if self.hparams.gradient_clip_val is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.hparams.gradient_clip_val, gradient_clip_algorithm="norm"
            )
        optimizer.step()

    def loss(self, batch: Any) -> Tensor:
        """L_D (arXiv:1609.03126 section 2.1, eq 1; GAN: the discriminator's cross-entropy) of the batch's images at
        the current epoch's margin, with fakes ``G(z)`` held constant as in the D step, for measurement callbacks. We
        chose the D loss, not the real images' energy alone: it is the objective D descends, and its value moves with
        both networks.

        Side-effect free: z comes from a generator seeded by ``LOSS_NOISE_SEED`` (so every call sees the same
        noise and the training noise stream is untouched), dropout in D draws from a fork of the global RNG, and
        BatchNorm updates copies of its running statistics; nothing is logged."""
        x = batch[0] if isinstance(batch, list | tuple) else batch
        noise = torch.Generator().manual_seed(LOSS_NOISE_SEED)
        z = self.sample_noise(x.shape[0], noise).to(x.dtype)
        with _on_buffer_copies(self.generator, self.discriminator), torch.random.fork_rng(devices=_cuda_devices(x)):
            with torch.no_grad():
                fake = self.generator(z)
            return self._d_loss(x, fake, self.current_margin())[0]

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        opt_g, opt_d = self.optimizers()
        margin = self.current_margin(batch_idx)
        z = self.sample_noise(x.shape[0])
        for i in range(self.hparams.d_steps_per_g):
            with self.toggled_optimizer(opt_d):
                with torch.no_grad():
                    fake = self.generator(z if i == 0 else self.sample_noise(x.shape[0]))
                if batch_idx == 0:
                    self._check_image_shapes(x, fake)
                loss_d, real_energy, fake_energy = self._d_loss(x, fake, margin)
                self._step(opt_d, loss_d)
        if self.hparams.resample_z_for_g:
            z = self.sample_noise(x.shape[0])
        with self.toggled_optimizer(opt_g):
            loss_g, code = self._g_loss(self.generator(z))
            self._step(opt_g, loss_g)

        if is_logging_step(self, batch_idx):
            values = {
                "train/loss_step": loss_d.detach() + loss_g.detach(),
                "train/loss_d": loss_d.detach(),
                "train/loss_g": loss_g.detach(),
                "train/energy_real": real_energy.detach().mean(),
                "train/energy_fake": fake_energy.detach().mean(),
            }
            if self.hparams.loss == "ebgan":
                values["train/margin_active"] = (fake_energy.detach() < margin).float().mean()
                values["train/margin"] = torch.tensor(float(margin), device=self.device)
            if code is not None and self.hparams.pt_weight:
                values["train/pt"] = pulling_away_term(code.detach())
            self.log_dict(values, sync_dist=True, prog_bar=False)

    # ----- evaluation -------------------------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._eval_rng = torch.Generator().manual_seed(self.hparams.eval_seed + self.global_rank)

    on_test_epoch_start = on_validation_epoch_start

    def _evaluate(self, batch: Any, batch_idx: int, split: str) -> None:
        score, fid, kid = (getattr(self, f"{split}_{name}") for name in ("score", "fid", "kid"))
        x = batch[0] if isinstance(batch, list | tuple) else batch
        fake = self.generator(self.sample_noise(x.shape[0], self._eval_rng))
        if batch_idx == 0:
            self._check_image_shapes(x, fake)
        for name, images in (("energy_real", x), ("energy_fake", fake)):
            mean = getattr(self, f"{split}_{name}")
            mean.update(self.energy(images).mean(), len(images))
            self.log(f"{split}/{name}", mean)
        if score is not None:
            score.update(fake)
            self.log(f"{split}/mnist_score", score)
        for metric in (fid, kid):
            if metric is not None:
                metric.update(self._metric_images(x), real=True)
                metric.update(self._metric_images(fake), real=False)
        if fid is not None:
            self.log(f"{split}/fid", fid)

    def _check_image_shapes(self, x: Tensor, fake: Tensor) -> None:
        """Refuse data, G and D that disagree on the image size: a convolutional D takes any size, so a 64-px
        pair fed 32-px images, or a 32-px G with a 64-px D, would otherwise train silently."""
        data, made = tuple(x.shape[1:]), tuple(fake.shape[1:])
        built_for = tuple(getattr(self.discriminator, "image_shape", data))
        if made != data or built_for != data:
            raise ValueError(
                f"EBGAN: the data's images are {_size(data)}, the generator {type(self.generator).__name__} makes "
                f"{_size(made)} and the discriminator {type(self.discriminator).__name__} was built for "
                f"{_size(built_for)}: build both nets for the data's size (their image_size and image_channels)"
            )

    def _metric_images(self, images: Tensor) -> Tensor:
        """Images in [-1, 1] as the feature extractor expects them: unchanged for ``mnist``; in [0, 1] with three
        channels for ``inception`` (torchmetrics' ``normalize=True``)."""
        if self.hparams.metric_features == "mnist":
            return images
        images = ((images + 1) / 2).clamp(0, 1)
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images

    def _log_kid(self, split: str) -> None:
        kid = getattr(self, f"{split}_kid")
        if kid is not None:
            mean, std = kid.compute()
            self.log_dict({f"{split}/kid": mean, f"{split}/kid_std": std})
            kid.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_kid("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        self._log_kid("test")

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            self.optimizer_g_factory(self.generator.parameters()),
            self.optimizer_d_factory(self.discriminator.parameters()),
        ]


@contextmanager
def _on_buffer_copies(*modules: nn.Module) -> Iterator[None]:
    """Run ``modules`` on copies of their buffers, so that BatchNorm's running statistics and counters are written
    to the copies; the originals are put back untouched (not copied into, which would break a backward pass)."""
    owned = [
        (owner, name, buffer)
        for m in modules
        for owner in m.modules()
        for name, buffer in owner.named_buffers(recurse=False)
    ]
    for owner, name, buffer in owned:
        setattr(owner, name, buffer.clone())
    try:
        yield
    finally:
        for owner, name, buffer in owned:
            setattr(owner, name, buffer)


def _cuda_devices(x: Tensor) -> list[torch.device]:
    """The CUDA device whose generator a forward pass on ``x`` may draw from (none on the CPU)."""
    return [x.device] if x.is_cuda else []


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _feature_metric(kind: Literal["fid", "kid"], features: MetricFeatures, subset_size: int = 50) -> Any:
    """torchmetrics' FID or KID on the chosen features, with a clear error when Inception is not available."""
    metric = FrechetInceptionDistance if kind == "fid" else KernelInceptionDistance
    extra = {} if kind == "fid" else {"subset_size": subset_size}
    if features == "mnist":
        return metric(feature=MNISTFeatures(), **extra)
    try:
        return metric(feature=2048, normalize=True, **extra)
    except (ModuleNotFoundError, OSError, RuntimeError) as err:
        raise RuntimeError(
            f"metric_features='inception' needs torch-fidelity and its Inception weights ({err}); install "
            "torch-fidelity with network access once, or use metric_features='mnist' (offline)"
        ) from err
