import pytest
import wandb

from iclr17.wandb_logger import OfflineFirstWandbLogger, resolve_wandb_offline, wandb_credentials_present


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path / "netrc"


def test_offline_without_credentials(no_credentials):
    assert not wandb_credentials_present()
    assert resolve_wandb_offline(None) is True


def test_online_with_a_netrc_entry_for_the_wandb_host(no_credentials):
    no_credentials.write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    assert wandb_credentials_present() and resolve_wandb_offline(None) is False


def test_netrc_entry_for_another_host_does_not_count(no_credentials):
    no_credentials.write_text("machine example.org login user password abc\n")
    assert resolve_wandb_offline(None) is True


def test_env_mode_and_explicit_argument_win(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    assert resolve_wandb_offline(None) is False
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_offline(None) is True
    assert resolve_wandb_offline(False) is False


def test_offline_run_is_written_under_save_dir(no_credentials, tmp_path):
    wandb.teardown()  # wandb caches its settings (WANDB_MODE=disabled from other tests) until torn down
    try:
        logger = OfflineFirstWandbLogger(project="p", save_dir=str(tmp_path / "runs"))
        logger.log_metrics({"x": 1.0})
        logger.experiment.finish()
    finally:
        wandb.teardown()
    assert list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
