"""The MNIST EBGAN configs run one batch on the fixture MNIST through the CLI (tests/test_cli.py parses every
shipped config)."""

import math

import pytest

from iclr17.cli import cli
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("name", ["mnist_ebgan_pt", "mnist_gan"])
def test_mnist_config_runs_one_batch(name, monkeypatch, fixture_data_root):
    monkeypatch.setenv("ICLR17_DATA_DIR", str(fixture_data_root))
    config = REPO_ROOT / "configs" / "ebgan" / f"{name}.yaml"
    result = cli(["fit", "--config", str(config), "--trainer.fast_dev_run=true", "--data.init_args.val_size=100"])
    assert result.trainer.state.finished
    assert math.isfinite(float(result.trainer.callback_metrics["val/mnist_score"]))
