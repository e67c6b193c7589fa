"""Under two gloo processes (``ddp_spawn``), a fit stopped after 2 of 4 epochs and resumed from the epoch-end
checkpoint of :mod:`iclr17.studies.fit_resume` ends on both ranks with the weights of the unbroken 4-epoch fit (a
model whose training draws nothing at random: under DDP the random state is not restored), and every rank's
:class:`FitSegments` knows both segments."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from iclr17.datamodules import GaussianMixtureDataModule
from iclr17.modules import MLP
from iclr17.modules.classifier import Classifier
from iclr17.studies.fit_resume import EpochEndCheckpoint, FitSegments
from tests.ddp_helpers import cpu_trainer


class SaveWeightsAndSegments(pl.Callback):
    """Every rank writes its final weights and its segments: spawned workers send their callbacks back to no one."""

    def __init__(self, segments: FitSegments, path) -> None:
        self.segments, self.path = segments, path

    def on_fit_end(self, trainer, pl_module):
        weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"weights": weights, "segments": self.segments.segments()}, f"{self.path}.rank{trainer.global_rank}")


def _fit(folder, name: str, max_epochs: int, ckpt_path=None) -> list[dict]:
    folder.mkdir(exist_ok=True)
    pl.seed_everything(0)
    segments = FitSegments(commit=name)
    checkpoint = EpochEndCheckpoint(dirpath=folder / "checkpoints", filename="{epoch}", save_top_k=1, save_last=True,
                                    save_on_train_epoch_end=True)  # fmt: skip
    trainer = cpu_trainer([segments, checkpoint, SaveWeightsAndSegments(segments, folder / name)],
                          strategy="ddp_spawn", devices=2, max_epochs=max_epochs)  # fmt: skip
    data = GaussianMixtureDataModule(num_classes=2, n_samples=96, batch_size=8, seed=1)
    trainer.fit(Classifier(num_classes=2, net=MLP([2, 8, 2])), data, ckpt_path=ckpt_path)
    return [torch.load(f"{folder / name}.rank{rank}", weights_only=False) for rank in range(2)]


@pytest.mark.timeout(600)
def test_a_ddp_fit_resumed_after_two_epochs_ends_where_the_unbroken_fit_ends(tmp_path):
    unbroken = _fit(tmp_path / "unbroken", "unbroken", 4)
    _fit(tmp_path / "resumed", "first", 2)
    resumed = _fit(tmp_path / "resumed", "second", 4, ckpt_path=tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    for rank in range(2):
        assert [s["first_epoch"] for s in resumed[rank]["segments"]] == [0, 2]
        assert [s["commit"] for s in resumed[rank]["segments"]] == ["first", "second"]
        for name, value in unbroken[0]["weights"].items():
            assert torch.equal(resumed[rank]["weights"][name], value), (rank, name)
