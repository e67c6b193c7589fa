"""The Ladder Network and EBGAN-LN under 2-process gloo DDP on CPU: the processes' batches together are the
one-process batches, the running statistics are pooled over both processes' labelled shares, parameters and running
statistics stay equal, EBGAN-LN's gradients are averaged in both steps, and validation counts every example once."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from iclr17.datamodules import SemiSupervisedMNISTDataModule
from iclr17.modules import EBGANLadder, Ladder, MNISTGenerator
from iclr17.modules.ladder import LadderNetwork
from tests.ddp_helpers import cpu_trainer
from tests.modules.test_ebgan_ddp import AssertGradientsAreAveraged
from tests.test_ddp import AssertReplicasEqual

WIDTHS = [784, 12, 6, 10]


def _data(root) -> SemiSupervisedMNISTDataModule:
    return SemiSupervisedMNISTDataModule(
        data_dir=str(root), num_labelled=20, batch_size=8, validation="train_split", val_size=101
    )


class SaveBatches(pl.Callback):
    """Every rank saves the training batches it was given, per epoch, to ``<path>.rank<r>``."""

    def __init__(self, path) -> None:
        self.path, self.batches = path, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.setdefault(trainer.current_epoch, []).append([t.clone() for t in batch])

    def on_train_end(self, trainer, pl_module):
        torch.save(self.batches, f"{self.path}.rank{trainer.global_rank}")


class AssertPooledRunningStatistics(pl.Callback):
    """After the first step (capped counter 1: the running statistics are that step's), every layer's running mean
    and unbiased variance are those of the pre-activations of both processes' labelled shares together, each share's
    clean pass recomputed in numpy under the initial weights with its own batch normalisation; and the replicas hold
    the same running statistics after every step."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx or trainer.current_epoch:
            return
        network, h, pre_activations = pl_module.network, batch[0].double().numpy(), []
        for weight, beta in zip(network.encoder_weights, network.betas, strict=True):
            pre = h @ weight.detach().double().numpy()
            pre_activations.append(pre)
            h = np.maximum((pre - pre.mean(0)) / np.sqrt(pre.var(0) + 1e-10) + beta.detach().double().numpy(), 0)
        self.whole = [pl_module.all_gather(torch.from_numpy(pre)).flatten(0, 1).numpy() for pre in pre_activations]
        assert self.whole[0].shape[0] == 8

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        buffers = torch.cat([b.flatten().double() for b in pl_module.network.buffers()])
        gathered = pl_module.all_gather(buffers)
        assert torch.equal(gathered[0], gathered[1]), "the replicas' running statistics differ"
        if batch_idx or trainer.current_epoch:
            return
        for (running_mean, running_var), pre in zip(pl_module.network.running_statistics(), self.whole, strict=True):
            np.testing.assert_allclose(running_mean.numpy(), pre.mean(0), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(running_var.numpy(), pre.var(0, ddof=1), rtol=1e-4, atol=1e-6)


class AssertBothStepsAveraged(pl.Callback):
    """A D and a G step per batch (the margin never reaches 0), each through the gradient averaging, in every
    process."""

    def on_train_start(self, trainer, pl_module):
        self.calls, average = 0, pl_module._average_gradients

        def counted(optimizer):
            self.calls += 1
            average(optimizer)

        pl_module._average_gradients = counted

    def on_train_end(self, trainer, pl_module):
        assert trainer.global_step == self.calls == 2 * trainer.num_training_batches


def _one_process_batches(root, epoch: int) -> list[list[torch.Tensor]]:
    dm = _data(root)
    dm.setup("fit")
    dm.sampler.set_epoch(epoch)
    return list(dm.train_dataloader())


@pytest.mark.timeout(300)
def test_ladder_ddp_deals_the_one_process_batches_pools_statistics_and_validates_like_one_process(
    mnist_fixture_dir, tmp_path
):
    pl.seed_everything(0)
    model, dm = Ladder(LadderNetwork(WIDTHS), denoising_weights=[1.0, 0.5, 0.0, 0.1]), _data(mnist_fixture_dir)
    saved = SaveBatches(tmp_path / "batches")
    trainer = cpu_trainer(
        strategy="ddp_spawn",
        devices=2,
        max_epochs=2,
        limit_train_batches=3,
        callbacks=[saved, AssertPooledRunningStatistics(), AssertReplicasEqual()],
        default_root_dir=tmp_path,
    )
    trainer.fit(model, dm)

    ranks = [torch.load(f"{saved.path}.rank{r}") for r in range(2)]
    for epoch in range(2):
        expected = _one_process_batches(mnist_fixture_dir, epoch)[:3]
        for k, whole in enumerate(expected):
            for part, one_process in enumerate(whole):
                dealt = [ranks[r][epoch][k][part] for r in range(2)]
                assert len(dealt[0]) == len(dealt[1]) == 4
                torch.testing.assert_close(one_process[0::2], dealt[0], rtol=0, atol=0)
                torch.testing.assert_close(one_process[1::2], dealt[1], rtol=0, atol=0)

    (single,) = cpu_trainer(devices=1).validate(model, dm)
    assert 0 < single["val/error"] < 100  # so that an example counted twice or missed would move it
    assert float(trainer.callback_metrics["val/error"]) == pytest.approx(single["val/error"], abs=1e-4)
    assert float(trainer.callback_metrics["val/cross_entropy"]) == pytest.approx(single["val/cross_entropy"], rel=1e-5)


@pytest.mark.timeout(300)
def test_ebgan_ladder_ddp_averages_both_networks_gradients_and_keeps_replicas_equal(mnist_fixture_dir, tmp_path):
    pl.seed_everything(0)
    generator = MNISTGenerator(z_dim=8, n_layers=2, size=16, init_std=0.05)
    model = EBGANLadder(LadderNetwork(WIDTHS), generator, denoising_weights=[1.0, 0.0, 0.0, 0.0], margin=50.0)
    trainer = cpu_trainer(
        strategy="ddp_spawn",
        devices=2,
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=0,
        callbacks=[
            AssertGradientsAreAveraged(),
            AssertPooledRunningStatistics(),
            AssertReplicasEqual(),
            AssertBothStepsAveraged(),
        ],
        default_root_dir=tmp_path,
    )
    trainer.fit(model, _data(mnist_fixture_dir))
