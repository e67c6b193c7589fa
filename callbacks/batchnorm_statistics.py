"""BatchNorm statistics re-estimated before every evaluation, as the Entropy-SGD authors' code does.

The authors' Lua ``train.lua`` (ucla-vision/entropy-sgd; arXiv:1611.01838, the code behind Table 1) calls
``compute_bn_params`` before each evaluation: dropout set to 0, the network in training mode, the evaluated
images fed forward in batches of 1024, so that the BatchNorm running statistics come from the evaluation data
rather than from the dropout-noisy training batches. Their PyTorch port does the same on the training images.
``docs/papers/entropy_sgd.md`` lists the choices below beside the authors' code.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import move_data_to_device
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .measurement import LossFn, check_loss_contract, measurement_mode, module_loss

Source = Literal["train", "test"]
BatchNorm = nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d | nn.SyncBatchNorm
DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


class _PooledMoments:
    """Per-channel count, mean and sum of squared deviations of a BatchNorm layer's inputs, merged batch by batch
    in float64 (Chan et al.'s pairwise update), so the result is the mean and variance over every input seen."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, None, None

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0].detach().double()
        dims = [d for d in range(x.dim()) if d != 1]
        n = x.numel() // x.shape[1]
        mean = x.mean(dims)
        m2 = (x - mean.view(1, -1, *[1] * (x.dim() - 2))).square().sum(dims)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.count * n / total)
        self.count = total

    def write_to(self, bn: BatchNorm) -> None:
        """Set ``bn``'s running mean and (unbiased, as BatchNorm stores it) running variance."""
        if self.mean is None:
            raise RuntimeError(f"BatchNormStatistics: the {type(bn).__name__} layer saw no input during re-estimation")
        bn.running_mean.copy_(self.mean)
        bn.running_var.copy_(self.m2 / max(self.count - 1, 1))


class BatchNormStatistics(pl.Callback):
    """Before every validation and test, re-estimate every BatchNorm layer's running statistics on a whole data
    split; after it, put the training-time statistics back.

    Re-estimation (the authors' ``compute_bn_params``): every dropout layer off, every other submodule in
    training mode, gradients off, the ``source`` split fed forward in order in batches of ``batch_size``
    through ``loss_fn`` (default: the module's side-effect-free ``loss(batch)``). With ``momentum=None`` (ours,
    the default) each layer's statistics are reset to the mean and unbiased variance of its inputs over the
    whole split (accumulated in float64; the inputs of a layer are those of this training-mode forward, in which
    earlier layers normalise with their batch statistics). With a float ``momentum`` the layers instead keep
    their training-time statistics and update them batch by batch with that exponential-average momentum, as
    Torch7's BatchNorm did in the authors' code (momentum 0.1, no reset: after the 10 test batches of MNIST the
    training statistics still weigh 0.9^10 = 35%).

    Measurement never changes training: the evaluation runs with the re-estimated statistics, and at its end
    every BatchNorm buffer (running mean, variance, batch count) and the ``momentum`` attribute are restored
    exactly; every submodule's train/eval flag is as the hook found it; the global RNG is not consumed (the
    split is read in order, the loader's seed is forked away). A training run is therefore bit-identical with
    and without the callback, and checkpoints (written after this callback's hooks: Lightning runs checkpoint
    callbacks last) hold the training-time statistics, so resuming is unaffected. The authors' Lua code instead
    kept the re-estimated statistics for the next epoch's exponential average; after the 468 steps of an epoch
    they weigh 0.9^468 there, so the difference is negligible.

    Under DDP every process re-estimates on the whole split (not a shard), so all processes evaluate with the
    same statistics; the cost is one forward pass over the split per process per evaluation.

    Args:
        source: ``train`` (ours, the default; the authors' PyTorch port) re-estimates on the datamodule's training
            split (``train_dataloader().dataset``, read in order, without sampling); ``test`` re-estimates on its
            test split (``test_dataloader().dataset``): the authors' Lua code, which EVALUATES WITH TEST-SET
            STATISTICS, so its test numbers are not those of a model fixed before seeing the test images.
        batch_size: images per forward pass (1024 in the authors' code); it matters only through the batch
            statistics that earlier layers normalise with.
        momentum: None (default) resets and takes each layer's exact statistics over the split; a float in
            (0, 1] keeps the training statistics and updates them with this momentum per batch (0.1: the
            authors' Torch7 code).
        loss_fn: ``(module, batch) -> scalar`` run on each batch of the split; default: the module's
            ``loss(batch)``.
    """

    def __init__(
        self,
        source: Source = "train",
        batch_size: int = 1024,
        momentum: float | None = None,
        loss_fn: LossFn | None = None,
    ) -> None:
        if source not in ("train", "test"):
            raise ValueError(f"BatchNormStatistics: source must be 'train' or 'test', got {source!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"BatchNormStatistics: batch_size must be a positive integer, got {batch_size!r}")
        if momentum is not None and not 0.0 < momentum <= 1.0:
            raise ValueError(f"BatchNormStatistics: momentum must be None or in (0, 1], got {momentum!r}")
        self.source, self.batch_size, self.momentum = source, batch_size, momentum
        self.loss_fn = loss_fn or module_loss
        self._saved: dict[BatchNorm, tuple[dict[str, Tensor], float | None]] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        check_loss_contract("BatchNormStatistics", pl_module, self.loss_fn)
        if not batchnorm_layers(pl_module):
            raise ValueError(
                f"BatchNormStatistics: {type(pl_module).__name__} has no BatchNorm layer that tracks running "
                "statistics, so there is nothing to re-estimate; remove the callback"
            )

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reestimate(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reestimate(trainer, pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def source_dataset(self, trainer: pl.Trainer) -> Any:
        """The map-style dataset of the ``source`` split, from the datamodule's ``<source>_dataloader()``."""
        datamodule = trainer.datamodule
        if datamodule is None:
            raise RuntimeError(
                f"BatchNormStatistics(source={self.source!r}) reads the {self.source} split from the trainer's "
                "datamodule; pass a LightningDataModule to fit/validate/test"
            )
        dataset = getattr(datamodule, f"{self.source}_dataloader")().dataset
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"BatchNormStatistics: {type(datamodule).__name__}.{self.source}_dataloader() serves a "
                f"{type(dataset).__name__}, not a map-style dataset (with __len__ and __getitem__)"
            )
        return dataset

    @torch.no_grad()
    def _reestimate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        layers = batchnorm_layers(pl_module)
        self._saved = {bn: ({k: b.clone() for k, b in bn.named_buffers()}, bn.momentum) for bn in layers}
        loader = DataLoader(
            self.source_dataset(trainer), batch_size=self.batch_size, shuffle=False, generator=torch.Generator()
        )
        moments = {bn: _PooledMoments() for bn in layers} if self.momentum is None else {}
        hooks = [bn.register_forward_pre_hook(m) for bn, m in moments.items()]
        try:
            with measurement_mode(pl_module, train=True):
                for module in pl_module.modules():
                    if isinstance(module, DROPOUT):
                        module.eval()
                for bn in layers:
                    bn.momentum = self.momentum if self.momentum is not None else 0.0
                for batch in loader:
                    self.loss_fn(pl_module, move_data_to_device(batch, pl_module.device))
        finally:
            for hook in hooks:
                hook.remove()
            for bn, (_, momentum) in self._saved.items():
                bn.momentum = momentum
        for bn, m in moments.items():
            m.write_to(bn)

    @torch.no_grad()
    def _restore(self) -> None:
        if self._saved is None:
            return
        for bn, (buffers, momentum) in self._saved.items():
            for name, buffer in bn.named_buffers():
                buffer.copy_(buffers[name])
            bn.momentum = momentum
        self._saved = None


def batchnorm_layers(module: nn.Module) -> list[BatchNorm]:
    """Every BatchNorm layer (1d, 2d, 3d, sync) of ``module`` that keeps running statistics."""
    return [m for m in module.modules() if isinstance(m, BatchNorm) and m.track_running_stats]
