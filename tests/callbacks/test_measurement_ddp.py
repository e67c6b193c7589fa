"""Under two gloo processes, HessianSpectrum averages its Hessian-vector products through the Trainer's strategy
(``trainer.strategy.reduce``), and the spectrum equals the one process's on the whole subset."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy

from iclr17.callbacks import HessianSpectrum
from iclr17.datamodules import GaussianMixtureDataModule
from iclr17.modules import MLP
from tests.callbacks.user_models import WithLoss
from tests.ddp_helpers import CloseProcessGroup

N_PARAMS = 2 * 6 + 6 + 6 * 3 + 3


class CountingDDP(DDPStrategy):
    """``ddp_spawn`` that records the size of every tensor it reduces."""

    def __init__(self) -> None:
        super().__init__(start_method="spawn")
        self.reduced: list[int] = []

    def reduce(self, tensor, *args, **kwargs):
        self.reduced.append(tensor.numel() if isinstance(tensor, torch.Tensor) else 0)
        return super().reduce(tensor, *args, **kwargs)


class SaveSpectrumAndReductions(pl.Callback):
    """Every rank writes the spectrum's history and its strategy's reductions: spawned workers send nothing back."""

    def __init__(self, spectrum: HessianSpectrum, path) -> None:
        self.spectrum, self.path = spectrum, path

    def on_fit_end(self, trainer, pl_module):
        reduced = getattr(trainer.strategy, "reduced", [])
        torch.save({"history": self.spectrum.history, "reduced": reduced}, f"{self.path}.rank{trainer.global_rank}")


def _spectrum(tmp_path, name: str, strategy) -> list[dict]:
    pl.seed_everything(0)
    dm = GaussianMixtureDataModule(num_classes=3, n_samples=90, batch_size=None, seed=1)  # 45 samples a process
    spectrum = HessianSpectrum(method="lanczos", n_samples=90, top_k=3, lanczos_steps=30, at_fit_end=False)
    callbacks = [spectrum, SaveSpectrumAndReductions(spectrum, tmp_path / name)]
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, callbacks=[*callbacks, CloseProcessGroup()], **strategy,
    )  # fmt: skip
    trainer.fit(WithLoss(MLP([2, 6, 3])), dm)
    ranks = 2 if name == "ddp" else 1
    return [torch.load(f"{tmp_path / name}.rank{r}", weights_only=False) for r in range(ranks)]


@pytest.mark.timeout(300)
def test_hessian_products_are_averaged_through_the_strategy(tmp_path):
    (single,) = _spectrum(tmp_path, "single", {"devices": 1})
    ranks = _spectrum(tmp_path, "ddp", {"strategy": CountingDDP(), "devices": 2})
    for rank in ranks:
        products = rank["reduced"].count(N_PARAMS)  # each Lanczos step's H v, and the determinism check's two
        assert products >= 30 + 2
        torch.testing.assert_close(
            rank["history"][0]["eigenvalues"], single["history"][0]["eigenvalues"], rtol=1e-6, atol=1e-9
        )
    assert ranks[0]["reduced"] == ranks[1]["reduced"]
