"""The couplings of K spin-glass instances as a LightningDataModule (halting-time paper, arXiv:1511.06444)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from iclr17.functional.spin_glass import CouplingEnsemble, sample_couplings


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
