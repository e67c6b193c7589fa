"""``Ladder``: the semi-supervised Ladder Network of Rasmus et al. (arXiv:1507.02672) as a LightningModule, the
plain-LN baseline of EBGAN-LN (arXiv:1609.03126 section 4.2, Table 2)."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor
from torchmetrics import MeanMetric

from iclr17.functional.ladder import ladder_loss, linear_lr_decay, pooled_statistics, weighted_denoising_cost

from ..noise_stream import NoiseStream
from ..objective import WeightedMean
from ..process_memory import unshare_memory
from ..step_logging import is_logging_step
from .nets import LadderNetwork

LOSS_NOISE_SEED = 0  # seeds the noise of loss(batch), the same at every call


class Ladder(NoiseStream, pl.LightningModule):
    """The Ladder Network trained on batches that pair labelled and unlabelled examples (arXiv:1507.02672 eq 3).

    A training batch is ``(x_labelled, y_labelled, x_unlabelled)`` (``SemiSupervisedMNISTDataModule``). Its loss
    is the cross-entropy of the corrupted encoder on the labelled examples plus the weighted denoising costs of
    the unlabelled ones, ``sum_l lambda_l C^(l)`` (``denoising_weights``; bottom-layer only by default, the
    variant EBGAN-LN builds on). Labels of the unlabelled examples never enter: the batch does not carry them,
    and the two halves are batch-normalised separately, as the authors' code does. Each step first folds the
    clean pass of the labelled half into the running batch-normalisation statistics that evaluation uses.

    Optimisation as the authors' ``run.py``: Adam with lr 0.002, decayed linearly to 0 between ``lr_decay_start``
    and ``lr_decay_end`` epochs (150 epochs, decay from 0.67 * 150). Noise comes from the module's own
    ``torch.Generator`` (seeded from the global seed plus the process rank, stored in checkpoints), so a
    resumed run continues bit for bit.

    Under DDP (``SemiSupervisedMNISTDataModule`` deals each process its share of every batch) the gradients are
    averaged as usual, and each step's running-statistics update pools the processes' clean-pass statistics over
    the whole labelled batch, so the replicas' running statistics stay equal. Every pass normalises each process's
    own share, as DDP without ``SyncBatchNorm`` does: on N processes the batch statistics come from
    ``batch_size / N`` examples, not the authors' 100 (so above the first layer the pooled pre-activations are not
    exactly one process's on the whole batch).

    Logged: ``train/loss_step``, ``train/cross_entropy``, ``train/denoising_cost`` (the unweighted bottom
    cost C^(0)), ``train/energy`` (the weighted cost, mean over the unlabelled half); ``val/error`` and
    ``test/error`` (per cent, the clean encoder with the running statistics; torchmetrics ``MeanMetric``).

    Args:
        network: the Ladder Network (default ``LadderNetwork()``, 784-1000-500-250-250-250-10, noise 0.3).
        denoising_weights: lambda_0 ... lambda_L (default ``[5000, 0, ..., 0]``: bottom layer only, 100 labels;
            the authors use 2000 for 1000 labels and ``[1000, 10, 0.1, ..., 0.1]`` for the full cost at 100).
        optimizer: callable from the parameters to the optimizer (None: ``default_optimizer``, Adam lr 0.002).
        lr_decay_start: epochs after which the learning rate starts to decay linearly (100.5 = 0.67 * 150).
        lr_decay_end: epochs at which it reaches 0 (150, the authors' ``num_epochs``).
    """

    noise_checkpoint_key = "ladder_noise_rng"

    default_optimizer = partial(torch.optim.Adam, lr=0.002)
    not_hyperparameters = ["network", "optimizer"]

    def __init__(
        self,
        network: LadderNetwork | None = None,
        denoising_weights: list[float] | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_decay_start: float = 100.5,
        lr_decay_end: float = 150.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=self.not_hyperparameters)
        self.network = network if network is not None else LadderNetwork()
        layers = self.network.num_layers + 1
        weights = [5000.0] + [0.0] * (layers - 1) if denoising_weights is None else list(denoising_weights)
        if len(weights) != layers or not all(math.isfinite(w) and w >= 0 for w in weights):
            raise ValueError(
                f"denoising_weights needs {layers} finite values >= 0 (lambda_0 for the input ... lambda_L for the "
                f"top of a {layers - 1}-layer encoder), got {denoising_weights}"
            )
        linear_lr_decay(0, lr_decay_start, lr_decay_end)  # checks 0 <= start < end
        self.register_buffer("denoising_weights", torch.tensor(weights), persistent=False)
        self.layers_weighted = [w > 0 for w in weights]
        self.optimizer_factory = optimizer if optimizer is not None else self.default_optimizer
        self.val_error, self.test_error = MeanMetric(), MeanMetric()
        self.val_cross_entropy, self.test_cross_entropy = WeightedMean(), WeightedMean()  # exact under DDP

    def setup(self, stage: str) -> None:
        unshare_memory(self)  # this process's own metric states (``ddp_spawn`` leaves them shared)

    # ----- the Ladder Network's terms ---------------------------------------------------------------------------

    def split_batch(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        """``(x_labelled, y_labelled, x_unlabelled)`` with the images flattened."""
        if not isinstance(batch, list | tuple) or len(batch) != 3:
            raise ValueError(
                f"{type(self).__name__} trains on (x_labelled, y_labelled, x_unlabelled) batches "
                "(SemiSupervisedMNISTDataModule); got a batch of another form"
            )
        x_labelled, y_labelled, x_unlabelled = batch
        return x_labelled.flatten(1), y_labelled, x_unlabelled.flatten(1)

    def energy(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Per-sample weighted denoising cost ``sum_l lambda_l C^(l)(x_n)`` of the batch ``x``, ``(N,)``: the
        unsupervised term of the loss, and EBGAN-LN's energy (arXiv:1609.03126 section 4.2)."""
        costs = self.network.denoising_costs(x.flatten(1), self.layers_weighted, generator)
        return weighted_denoising_cost(costs, self.denoising_weights.to(costs.dtype))

    def ladder_terms(
        self, x_labelled: Tensor, y_labelled: Tensor, x_unlabelled: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The corrupted logits of the labelled half, the costs ``(N, L + 1)`` and the energies of the unlabelled
        half; the labelled half's noise is drawn first."""
        logits = self.network.encode(x_labelled, corrupted=True, generator=generator).logits
        costs = self.network.denoising_costs(x_unlabelled, self.layers_weighted, generator)
        return logits, costs, weighted_denoising_cost(costs, self.denoising_weights.to(costs.dtype))

    def loss(self, batch: Any) -> Tensor:
        """The Ladder Network's loss of the batch (arXiv:1507.02672 eq 3), side-effect free for measurement
        callbacks: the noise comes from a generator seeded by ``LOSS_NOISE_SEED`` and the running statistics
        are left alone."""
        x_labelled, y_labelled, x_unlabelled = self.split_batch(batch)
        generator = torch.Generator().manual_seed(LOSS_NOISE_SEED)
        logits, _, energy = self.ladder_terms(x_labelled, y_labelled, x_unlabelled, generator)
        return ladder_loss(logits, y_labelled, energy)

    def update_running_statistics(self, x_labelled: Tensor) -> None:
        """Fold the clean pass of the labelled half into the running statistics (as the authors' code). Under DDP
        the processes' statistics are first pooled over the whole labelled batch
        (:func:`~iclr17.functional.ladder.pooled_statistics`), so every replica folds in the same values."""
        with torch.no_grad():
            clean = self.network.encode(x_labelled, corrupted=False)
            means, variances, count = clean.mean[1:], clean.var[1:], x_labelled.shape[0]
            if torch.distributed.is_available() and torch.distributed.is_initialized():  # several processes
                means, variances, count = self._pooled_over_processes(means, variances, count)
            self.network.update_running_statistics(means, variances, count)

    def _pooled_over_processes(
        self, means: list[Tensor], variances: list[Tensor], count: int
    ) -> tuple[list[Tensor], list[Tensor], int]:
        """Every process's per-layer statistics pooled over all their examples, in one all-gather."""
        widths = [len(mean) for mean in means]
        local = torch.cat([means[0].new_tensor([count]), *means, *variances])
        gathered = self.all_gather(local).reshape(-1, len(local))  # (processes, ...), also for a group of one
        counts, *columns = gathered.split([1, *widths, *widths], dim=1)
        pooled = [
            pooled_statistics(counts[:, 0], gathered_means, gathered_variances)
            for gathered_means, gathered_variances in zip(columns[: len(widths)], columns[len(widths) :], strict=True)
        ]
        return [mean for mean, _ in pooled], [var for _, var in pooled], int(counts.sum())

    # ----- training ---------------------------------------------------------------------------------------------

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x_labelled, y_labelled, x_unlabelled = self.split_batch(batch)
        self.update_running_statistics(x_labelled)
        logits, costs, energy = self.ladder_terms(x_labelled, y_labelled, x_unlabelled, self._noise_generator())
        loss = ladder_loss(logits, y_labelled, energy)
        if is_logging_step(self, batch_idx):
            values = {
                "train/loss_step": loss.detach(),
                "train/cross_entropy": F.cross_entropy(logits.detach(), y_labelled),
                "train/denoising_cost": costs[:, 0].detach().mean(),
                "train/energy": energy.detach().mean(),
            }
            self.log_dict(values, sync_dist=True)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(self.network.parameters())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.lr_schedule(optimizer), "interval": "epoch"}}

    def lr_schedule(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        """The authors' linear decay (:func:`~iclr17.functional.ladder.linear_lr_decay`), stepped once an epoch."""
        factor = partial(linear_lr_decay, decay_start=self.hparams.lr_decay_start, decay_end=self.hparams.lr_decay_end)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    # ----- evaluation -------------------------------------------------------------------------------------------

    def _evaluate(self, batch: Any, split: str) -> None:
        x, y = batch
        logits = self.network(x.flatten(1))
        metric = getattr(self, f"{split}_error")
        metric.update(100.0 * (logits.argmax(dim=1) != y).float())
        self.log(f"{split}/error", metric)
        cross_entropy = getattr(self, f"{split}_cross_entropy")
        cross_entropy.update(F.cross_entropy(logits, y), len(y))
        self.log(f"{split}/cross_entropy", cross_entropy)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")
