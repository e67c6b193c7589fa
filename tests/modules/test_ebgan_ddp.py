"""EBGAN under 2-process gloo DDP on CPU (modelled on tests/test_ddp.py): replicas stay equal, noise differs."""

import pytest
import pytorch_lightning as pl
import torch

from iclr17.datamodules import MNISTDataModule
from iclr17.modules import EBGAN, MNISTDiscriminator, MNISTGenerator
from tests.ddp_helpers import cpu_trainer
from tests.test_ddp import AssertReplicasEqual


class AssertRanksDrawDifferentNoise(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            z = pl_module.all_gather(pl_module.sample_noise(4))
            assert z.shape[0] == 2 and not torch.equal(z[0], z[1]), "both processes drew the same z"


class AssertGradientsAreAveraged(pl.Callback):
    """Wraps the module's gradient reduction: after it, every gradient must be the mean of the processes' local
    gradients (a sum would keep replicas equal too, so equality alone cannot tell)."""

    def on_train_start(self, trainer, pl_module):
        reduce = pl_module._average_gradients

        def checked(optimizer):
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            local = torch.cat([p.grad.detach().flatten().clone() for p in params])
            reduce(optimizer)
            averaged = torch.cat([p.grad.detach().flatten() for p in params])
            torch.testing.assert_close(averaged, pl_module.all_gather(local).mean(dim=0))
            assert not torch.equal(*pl_module.all_gather(local).unbind(0)), "local gradients should differ"

        pl_module._average_gradients = checked


@pytest.mark.timeout(300)
def test_ebgan_ddp_fit_keeps_replicas_equal(mnist_fixture_dir):
    pl.seed_everything(0)
    dm = MNISTDataModule(data_dir=str(mnist_fixture_dir), val_size=100, batch_size=32, normalization="tanh")
    model = EBGAN(MNISTGenerator(z_dim=8, n_layers=2, size=32), MNISTDiscriminator(n_layers=3, size=16), pt_weight=0.1)
    trainer = cpu_trainer(
        strategy="ddp_spawn",
        devices=2,
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=1,
        callbacks=[AssertReplicasEqual(), AssertRanksDrawDifferentNoise(), AssertGradientsAreAveraged()],
    )
    trainer.fit(model, dm)
