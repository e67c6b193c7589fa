"""Every shipped EBGAN config parses; the MNIST ones run one batch on the fixture MNIST through the CLI."""

from pathlib import Path

import pytest

from iclr17.cli import cli
from tests.conftest import REPO_ROOT

CONFIGS = sorted((REPO_ROOT / "configs" / "ebgan").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_parses(config: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["mnist_ebgan_pt", "mnist_gan"])
def test_mnist_config_runs_one_batch(name, monkeypatch, fixture_data_root):
    monkeypatch.setenv("ICLR17_DATA_DIR", str(fixture_data_root))
    config = REPO_ROOT / "configs" / "ebgan" / f"{name}.yaml"
    result = cli(["fit", "--config", str(config), "--trainer.fast_dev_run=true", "--data.init_args.val_size=100"])
    assert result.trainer.state.finished
    assert result.trainer.callback_metrics["val/mnist_score"] >= 0
