"""The quiet Trainer of the studies and benchmarks: it trains, and writes and validates nothing."""

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from iclr17.modules import MLP, Classifier
from iclr17.studies.trainers import quiet_trainer


class CountValidationBatches(pl.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.batches += 1


def test_quiet_trainer_fits_within_its_limits_and_leaves_no_files(tmp_path):
    data = TensorDataset(torch.randn(40, 2), torch.randint(0, 2, (40,)))
    loader = DataLoader(data, batch_size=4)
    counter = CountValidationBatches()
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=3, callbacks=[counter])
    trainer.fit(Classifier(MLP([2, 3, 2]), num_classes=2), loader, loader)
    assert trainer.global_step == 6 and trainer.current_epoch == 2
    assert trainer.logger is None and trainer.checkpoint_callback is None and not trainer.progress_bar_callback
    assert counter.batches == 0  # neither the sanity check nor the epochs validate
    assert list(tmp_path.iterdir()) == []  # conftest runs every test in its own tmp_path


def test_max_steps_alone_is_not_capped_at_one_epoch():
    loader = DataLoader(TensorDataset(torch.randn(8, 2), torch.randint(0, 2, (8,))), batch_size=4)
    trainer = quiet_trainer(max_steps=5)
    trainer.fit(Classifier(MLP([2, 3, 2]), num_classes=2), loader)
    assert trainer.global_step == 5
