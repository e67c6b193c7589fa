"""Two gloo processes on CPU: replicas stay identical and metrics equal the single-process ones."""

from functools import partial

import pytest
import pytorch_lightning as pl
import torch

from iclr17.callbacks import HessianSpectrum
from iclr17.datamodules import BabiDataModule, GaussianMixtureDataModule, MNISTDataModule
from iclr17.modules import MLP, Classifier, EntNet, EntropyClassifier, EntropySGD
from tests.ddp_helpers import SaveOnEachRank, cpu_trainer


class AssertReplicasEqual(pl.Callback):
    """On every rank: gather each rank's flattened parameters and require them all equal."""

    def on_train_end(self, trainer, pl_module):
        flat = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        gathered = pl_module.all_gather(flat)
        assert gathered.shape[0] == 2
        assert torch.equal(gathered[0], gathered[1]), "DDP replicas drifted apart"


class AssertOuterSteps(pl.Callback):
    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_end(self, trainer, pl_module):
        assert trainer.global_step == self.steps
        assert float(pl_module.entropy_optimizer().diagnostics["x_minus_mu_norm"]) > 0


class SeedEachRankDifferently(pl.Callback):
    """As if the user had not seeded the processes alike: the optimizer must still share its noise seed."""

    def setup(self, trainer, pl_module, stage):
        torch.manual_seed(1000 + trainer.global_rank)


class AssertPerDeviceBatch(pl.Callback):
    def __init__(self, size: int) -> None:
        self.size = size

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        assert len(batch[0]) == self.size


@pytest.mark.timeout(300)
def test_ddp_fit_keeps_replicas_equal_and_validates_like_one_process(tmp_path):
    """81 validation points: the two processes get 41 and 40 (3 and 2 batches of 20), none twice."""
    pl.seed_everything(0)
    dm = GaussianMixtureDataModule(centers=[[-1.0, -1.0], [1.0, 1.0]], n_samples=200, n_val=81, batch_size=40)
    model = Classifier(MLP([2, 8, 2]), num_classes=2)
    ddp = cpu_trainer(
        strategy="ddp_spawn", devices=2, max_epochs=3, callbacks=[AssertReplicasEqual()], default_root_dir=tmp_path
    )
    ddp.fit(model, dm)  # the last validation runs on the final weights, in the same two processes (one spawn)
    ddp_metrics = ddp.callback_metrics
    (single_metrics,) = cpu_trainer(devices=1).validate(model, dm)
    assert 0 < single_metrics["val/acc"] < 1  # so that a point counted twice would move the accuracy
    assert float(ddp_metrics["val/acc"]) == pytest.approx(single_metrics["val/acc"], abs=1e-6)
    assert float(ddp_metrics["val/loss"]) == pytest.approx(single_metrics["val/loss"], rel=1e-5)


@pytest.mark.timeout(300)
def test_ddp_divides_the_global_batch(mnist_fixture_dir):
    dm = MNISTDataModule(data_dir=str(mnist_fixture_dir), val_size=100, batch_size=64, flatten=True)
    model = Classifier(MLP([784, 10]))
    cpu_trainer(strategy="ddp_spawn", devices=2, max_steps=2, callbacks=[AssertPerDeviceBatch(32)]).fit(model, dm)


@pytest.mark.timeout(300)
def test_cli_ddp_launch_with_a_shipped_config_name(tmp_path):
    """Lightning's DDP launcher re-runs the command line; the resolved config path must reach the workers."""
    import subprocess
    import sys
    from pathlib import Path

    run = subprocess.run(
        [Path(sys.executable).parent / "iclr17", "fit", "--config", "classifier/gaussian_mixture.yaml"]
        + ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.max_epochs=2", "--data.init_args.batch_size=50"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(list((tmp_path / "runs" / "iclr17").glob("*/checkpoints/*.ckpt"))) == 1


@pytest.mark.timeout(300)
def test_entnet_ddp_fit_keeps_replicas_equal_and_counts_every_question(fixture_data_root):
    """Validation in the DDP fit and test under DDP give one process's per-task errors; so does a later
    one-process run of the same model object (no counts left over from the workers)."""
    dm = BabiDataModule(data_dir=str(fixture_data_root), tasks=[1, 2], batch_size=16)
    model = EntNet(embedding_dim=8, n_slots=3)
    trainer = cpu_trainer(strategy="ddp_spawn", devices=2, max_epochs=1, callbacks=[AssertReplicasEqual()])
    trainer.fit(model, dm)  # its last validation runs on the final weights
    ddp_val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/error")}
    (ddp_test,) = cpu_trainer(strategy="ddp_spawn", devices=2).test(model, dm)
    (single_val,) = cpu_trainer(devices=1).validate(model, dm)
    (single_test,) = cpu_trainer(devices=1).test(model, dm)
    assert set(ddp_val) == {"val/error", "val/error_task1", "val/error_task2"}
    for name, value in ddp_val.items():
        assert value == pytest.approx(single_val[name], abs=1e-6), name
    for name in ("test/error", "test/error_task1", "test/error_task2"):
        assert ddp_test[name] == pytest.approx(single_test[name], abs=1e-6), name


@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["exact", "lanczos"])
def test_hessian_spectrum_under_ddp_equals_one_process(tmp_path, method):
    """Two processes hold 45 samples each of the same 90-sample subset; averaged products give its Hessian."""
    records = {}
    for name, kwargs in (("ddp", {"strategy": "ddp_spawn", "devices": 2}), ("single", {"devices": 1})):
        pl.seed_everything(0)
        dm = GaussianMixtureDataModule(num_classes=3, n_samples=90, batch_size=30, seed=1)
        model = Classifier(MLP([2, 6, 3]), num_classes=3)
        callback = HessianSpectrum(method=method, n_samples=90, top_k=3, lanczos_steps=40, at_fit_end=False)
        saver = SaveOnEachRank(callback, "history", tmp_path / name)
        cpu_trainer(max_epochs=1, callbacks=[callback, saver], **kwargs).fit(model, dm)
        records[name] = saver.load(rank=0)["history"][0]
    assert records["ddp"]["n_samples"] == records["single"]["n_samples"] == 90
    torch.testing.assert_close(records["ddp"]["eigenvalues"], records["single"]["eigenvalues"], rtol=1e-6, atol=1e-9)


@pytest.mark.timeout(300)
def test_entropy_sgd_replicas_stay_identical_with_langevin_noise(tmp_path):
    """Every rank draws the same Langevin noise and averages gradients per inner step: no drift."""
    pl.seed_everything(0)
    dm = GaussianMixtureDataModule(num_classes=3, dim=4, n_samples=240, batch_size=20, batches_per_step=4)
    model = EntropyClassifier(MLP([4, 16, 3]), num_classes=3, optimizer=partial(EntropySGD, L=3, eps=0.05, gamma0=0.03))
    trainer = cpu_trainer(
        strategy="ddp_spawn",
        devices=2,
        max_epochs=2,
        callbacks=[SeedEachRankDifferently(), AssertReplicasEqual(), AssertOuterSteps(2 * 240 // (20 * 4))],
        default_root_dir=tmp_path,
    )
    trainer.fit(model, dm)
