"""HaltingTime under two gloo processes halts at the same steps as one process on the same full batch."""

import functools

import pytest
import pytorch_lightning as pl
import torch

from iclr17.callbacks import HaltingTime
from iclr17.datamodules import GaussianMixtureDataModule
from iclr17.modules import MLP, Classifier
from tests.ddp_helpers import CloseProcessGroup


class SavedHaltingTime(HaltingTime):
    """Every rank writes its record: spawned workers do not send callbacks back."""

    def __init__(self, path, **kwargs):
        super().__init__(**kwargs)
        self.path = path

    def on_train_end(self, trainer, pl_module):
        super().on_train_end(trainer, pl_module)
        torch.save({"record": self.record, "step": trainer.global_step}, f"{self.path}.rank{trainer.global_rank}")


@pytest.mark.timeout(300)
def test_ddp_halting_equals_one_process(tmp_path):
    """Three rules at once (full-data loss: shards summed over processes; its plateau: a window of those reduced
    losses; gradient norm: DDP's averaged gradients); the gradient rule stops the run, on both processes at the
    same step."""
    results = {}
    for name, strategy in (("ddp", {"strategy": "ddp_spawn", "devices": 2}), ("single", {"devices": 1})):
        pl.seed_everything(0)
        dm = GaussianMixtureDataModule(num_classes=3, n_samples=90, batch_size=None, seed=1)  # 45 samples a process
        model = Classifier(MLP([2, 6, 3]), num_classes=3, optimizer=functools.partial(torch.optim.SGD, lr=0.5))
        callbacks = [
            SavedHaltingTime(tmp_path / f"{name}_loss", rule="train_loss_below", thresholds=[0.9, 0.6], stop=False),
            SavedHaltingTime(
                tmp_path / f"{name}_plateau", rule="loss_plateau", thresholds=[0.025, 0.012], window=3, stop=False
            ),
            SavedHaltingTime(tmp_path / f"{name}_grad", rule="grad_norm_below", thresholds=[0.1]),
        ]
        callbacks += [CloseProcessGroup()] if name == "ddp" else []
        trainer = pl.Trainer(
            accelerator="cpu", max_steps=150, logger=False, enable_progress_bar=False, enable_model_summary=False,
            enable_checkpointing=False, limit_val_batches=0, callbacks=callbacks, **strategy,
        )  # fmt: skip
        trainer.fit(model, dm)
        for rule in ("loss", "plateau", "grad"):
            ranks = range(2 if name == "ddp" else 1)
            results[name, rule] = [torch.load(f"{tmp_path / name}_{rule}.rank{r}", weights_only=False) for r in ranks]
    for rule in ("loss", "plateau", "grad"):
        (single,) = results["single", rule]
        assert not any(r["censored"] for r in single["record"])
        for rank_result in results["ddp", rule]:
            assert [r["step"] for r in rank_result["record"]] == [r["step"] for r in single["record"]]
            assert rank_result["step"] == single["step"] < 150  # both processes stopped where one process did
