"""Everything the package exports is exercised, so a new module, datamodule or callback is covered by adding it.

Each exported LightningModule, LightningDataModule and Callback needs ``tests/smoke/<ClassName>.yaml``, a
config that ``iclr17 fit --trainer.fast_dev_run=true`` runs on CPU in seconds (datamodules read the
fixture data root).
"""

import inspect
from pathlib import Path

import pytest
import pytorch_lightning as pl

import iclr17
from iclr17.cli import cli

SMOKE = Path(__file__).parent / "smoke"


def _exported(base: type) -> list[type]:
    objects = [getattr(iclr17, name) for name in iclr17.__all__]
    return [obj for obj in objects if inspect.isclass(obj) and issubclass(obj, base)]


EXPORTED = _exported(pl.LightningModule) + _exported(pl.LightningDataModule) + _exported(pl.Callback)


def test_every_public_name_is_defined_in_the_package():
    for name in iclr17.__all__:
        assert getattr(iclr17, name).__module__.startswith("iclr17."), f"{name} is not iclr17's own"


@pytest.mark.parametrize("cls", EXPORTED, ids=lambda c: c.__name__)
def test_fast_dev_run_through_the_cli(cls, monkeypatch, fixture_data_root):
    config = SMOKE / f"{cls.__name__}.yaml"
    assert config.is_file(), f"{cls.__name__} is exported but has no smoke config at {config}"
    monkeypatch.setenv("ICLR17_DATA_DIR", str(fixture_data_root))
    result = cli(["fit", "--config", str(config), "--trainer.fast_dev_run=true"])
    assert result.trainer.state.finished
    assert "train/loss_step" in result.trainer.callback_metrics


MODULES = [cls for cls in EXPORTED if issubclass(cls, pl.LightningModule)]


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_cli_test_restores_a_checkpoint(cls, monkeypatch, fixture_data_root, tmp_path):
    """fit, then `iclr17 test --ckpt_path` with the run's saved config: the path a user takes after training."""
    monkeypatch.setenv("ICLR17_DATA_DIR", str(fixture_data_root))
    config = SMOKE / f"{cls.__name__}.yaml"
    logger = ["--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}"]
    cli(["fit", "--config", str(config), "--trainer.max_steps=2", "--trainer.limit_val_batches=1", *logger])
    (checkpoint,) = tmp_path.rglob("*.ckpt")
    (saved_config,) = tmp_path.rglob("config.yaml")
    result = cli(["test", "--config", str(saved_config), "--ckpt_path", str(checkpoint), "--trainer.logger=false"])
    assert result.trainer.state.finished and any(k.startswith("test/") for k in result.trainer.callback_metrics)
