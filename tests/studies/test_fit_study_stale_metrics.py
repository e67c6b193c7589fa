"""A FitStudy row describes the final weights: a metric the fit stopped logging before its last epoch (as EBGAN-LN's
generator losses once its margin is 0) is left out, though Lightning's ``callback_metrics`` still hold its old value;
metrics logged in the last epoch, and the final evaluation's, are kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch

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


def test_stale_metrics_compares_each_metric_s_last_epoch_with_the_log_s_last(tmp_path):
    rows = [
        {"epoch": "0", "step": "6", "train/a": "1.0", "train/b": "2.0", "val/c": ""},
        {"epoch": "0", "step": "6", "train/a": "", "train/b": "", "val/c": "0.5"},
        {"epoch": "1", "step": "13", "train/a": "1.5", "train/b": "", "val/c": ""},
        {"epoch": "", "step": "", "train/a": "", "train/b": "9.0", "val/c": ""},  # no epoch: not counted
        {"epoch": "2", "step": "20", "train/a": "", "train/b": "", "val/c": "0.7"},
    ]
    assert stale_metrics(rows) == {"train/a", "train/b"}
    assert stale_metrics(rows[:3]) == {"train/b", "val/c"}
    assert stale_metrics([]) == set()
