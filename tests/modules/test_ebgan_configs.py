"""The MNIST EBGAN configs build the grid's models and run one batch on the fixture MNIST through the CLI
(tests/test_cli.py parses every shipped config; tests/test_fingerprints.py fits each for 20 steps)."""

import pytest

from iclr17.cli import cli
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(("name", "loss", "pt_weight"), [("mnist_ebgan_pt", "ebgan", 0.1), ("mnist_gan", "gan", 0.0)])
def test_mnist_config_runs_one_batch(name, loss, pt_weight, monkeypatch, fixture_data_root):
    monkeypatch.setenv("ICLR17_DATA_DIR", str(fixture_data_root))
    config = REPO_ROOT / "configs" / "ebgan" / f"{name}.yaml"
    result = cli(["fit", "--config", str(config), "--trainer.fast_dev_run=true", "--data.init_args.val_size=100"])
    model, trainer = result.model, result.trainer
    assert (model.hparams.loss, model.hparams.pt_weight) == (loss, pt_weight)
    assert trainer.global_step == 2  # one batch: one discriminator step, then one generator step
    assert {"train/loss_d", "train/loss_g", "val/energy_real", "val/mnist_score"} <= set(trainer.callback_metrics)
    assert ("train/pt" in trainer.callback_metrics) == bool(pt_weight)
