"""A FitStudy row describes the final weights: a metric the fit stopped logging before its last epoch (as EBGAN-LN's
generator losses once its margin is 0) is left out, though Lightning's ``callback_metrics`` still hold its old value;
metrics logged in the last epoch, and the final evaluation's, are kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch

from iclr17.studies.fit_resume import merged_log_rows
from iclr17.studies.fit_study import FitStudy, epoch_history, stale_metrics
from tests.studies.study_configs import BN_CLASSIFIER_CONFIG


class LogsUntilEpoch(pl.Callback):
    """Logs ``train/early`` at the end of the epochs before ``epoch`` and ``train/always`` at the end of every epoch,
    both as the epoch's index plus one (measurement only: training is untouched)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = torch.tensor(float(trainer.current_epoch + 1))
        if trainer.current_epoch < self.epoch:
            pl_module.log("train/early", value)
        pl_module.log("train/always", value)


def test_a_metric_last_logged_before_the_final_epoch_is_left_out_of_the_row(tmp_path):
    config = tmp_path / "classifier.yaml"
    config.write_text(BN_CLASSIFIER_CONFIG)  # 3 epochs
    callback = {"class_path": f"{__name__}.LogsUntilEpoch", "init_args": {"epoch": 2}}
    study = FitStudy(fit_config=str(config), seeds=[2], extra=[f"--trainer.callbacks+={json.dumps(callback)}"],
                     ledger_dir=str(tmp_path / "ledgers"), runs_dir=str(tmp_path / "runs"))  # fmt: skip
    (run,) = study.planned()
    fit, outcome = study.fit_and_evaluate(run, tmp_path / "run")
    assert epoch_history(Path(fit.trainer.logger.log_dir), ["train/early"]) == {"train/early": [1.0, 2.0]}
    assert "train/early" not in outcome.metrics
    assert outcome.metrics["train/always"] == 3.0
    assert {"val/acc", "test/acc", "test/loss", "epochs"} <= set(outcome.metrics)


def test_a_step_metric_not_written_in_the_last_epoch_is_kept(tmp_path):
    config = tmp_path / "classifier.yaml"
    config.write_text(BN_CLASSIFIER_CONFIG)  # 3 epochs of 7 batches: a step row every 11 batches, none in epoch 2
    study = FitStudy(fit_config=str(config), seeds=[2], extra=["--trainer.log_every_n_steps=11"],
                     ledger_dir=str(tmp_path / "ledgers"), runs_dir=str(tmp_path / "runs"))  # fmt: skip
    (run,) = study.planned()
    fit, outcome = study.fit_and_evaluate(run, tmp_path / "run")
    rows = merged_log_rows(Path(fit.trainer.logger.log_dir))
    assert {r["epoch"] for r in rows if r.get("train/loss_step", "") != ""} == {"1"}
    assert "train/loss_step" in outcome.metrics


def test_stale_metrics_are_those_whose_companions_were_written_again_in_a_later_epoch_without_them():
    def row(epoch: str, **metrics: float) -> dict[str, str]:
        return {"epoch": epoch, "step": "0"} | {name.replace("_", "/", 1): str(v) for name, v in metrics.items()}

    ebgan_ln = [row("0", train_d=1.0, train_g=2.0), row("0", val_c=0.5), row("1", train_d=1.5), row("1", val_c=0.6)]
    assert stale_metrics(ebgan_ln) == {"train/g"}
    assert stale_metrics(ebgan_ln[:2]) == set()
    assert stale_metrics([*ebgan_ln[:2], row("1", val_c=0.6)]) == set()  # train/d, train/g not written in epoch 1
    sparse_steps = [row("0", train_step=1.0), row("0", train_epoch=0.9), row("1", train_epoch=0.8), row("2", val_c=1)]
    assert stale_metrics(sparse_steps) == set()
    directly_logged = [row("0", train_d=1.0, train_g=2.0), {"epoch": "", "step": "5", "train/d": "3.0"}]
    assert stale_metrics(directly_logged) == set()
    assert stale_metrics([]) == set()
