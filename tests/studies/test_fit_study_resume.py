"""A study's fit that is killed (here: a crash at the start of an epoch) continues from its last epoch-end checkpoint
when the study runs it again, and ends with the weights, optimizer state and ledger values of a fit that was never
stopped (bit for bit: dropout, shuffled batches and Adam's moments included); the row lists both segments, a
finished run leaves no checkpoint, and ``resume=False`` trains from the start."""

from __future__ import annotations

import csv
import json
import time
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from iclr17.datamodules import GaussianMixtureDataModule
from iclr17.modules.classifier import Classifier
from iclr17.modules.nets import MLP
from iclr17.studies.fit_resume import RESUME_FOLDER, EpochEndCheckpoint, FitSegments, merged_log_rows, random_states
from iclr17.studies.fit_study import FitStudy, epoch_history
from iclr17.studies.ledger import read
from iclr17.studies.runner import record_run, source_commit
from tests.studies.study_configs import BN_CLASSIFIER_CONFIG


def _config() -> str:
    """The small BatchNorm + dropout classifier, 4 epochs under Adam (whose moments a resume must restore)."""
    config = yaml.safe_load(BN_CLASSIFIER_CONFIG)
    config["trainer"]["max_epochs"] = 4
    config["model"]["init_args"]["optimizer"] = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}}
    return yaml.safe_dump(config)


class CrashAtEpoch(pl.Callback):
    """Raises at the start of epoch ``epoch``: a run killed there (its last checkpoint: the epoch before)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"killed at epoch {self.epoch}")


def _study(folder: Path, extra: list[str] | None = None, resume: bool = True, max_time: str | None = None) -> FitStudy:
    config = folder / "classifier.yaml"
    config.write_text(_config())
    return FitStudy(fit_config=str(config), seeds=[5], extra=extra, resume=resume, history=["val/acc"],
                    max_time=max_time, ledger_dir=str(folder / "ledgers"), runs_dir=str(folder / "runs"))  # fmt: skip


def _callback(name: str, **init_args) -> list[str]:
    return [f"--trainer.callbacks+={json.dumps({'class_path': f'{__name__}.{name}', 'init_args': init_args})}"]


def _crash(epoch: int) -> list[str]:
    return _callback("CrashAtEpoch", epoch=epoch)


class SlowBatches(pl.Callback):
    """Sleeps ``seconds`` after every training batch: a time cap then cuts the fit at a known pace (training itself
    is untouched)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds)


class CrashWhileTesting(pl.Callback):
    """Raises when the final weights are tested: a run killed after its fit, during the evaluations."""

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        raise RuntimeError("killed while testing")


def _fit(study: FitStudy):
    run = study.planned()[0]
    out_dir = study.run_dir(run)
    return study.fit_and_evaluate(run, out_dir), out_dir


def _last_epoch_saved(folder: Path) -> int | None:
    """The epoch of the resume checkpoint under ``folder`` (None: there is none)."""
    found = list(folder.rglob(f"{RESUME_FOLDER}/last.ckpt"))
    return torch.load(found[0], weights_only=True)["epoch"] if found else None


def _assert_same_fit(got, expected) -> None:
    """The same final step count, weights and metrics (segments aside) as the ``expected`` (fit, outcome)."""
    assert got[0].trainer.global_step == expected[0].trainer.global_step
    for name, value in expected[0].model.state_dict().items():
        assert torch.equal(got[0].model.state_dict()[name], value), name
    assert {k: v for k, v in got[1].metrics.items() if k != "segments"} == expected[1].metrics


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    (fit, outcome), out_dir = _fit(_study(tmp_path_factory.mktemp("unbroken")))
    return fit, outcome, out_dir


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resumed")
    with pytest.raises(RuntimeError, match="killed at epoch 2"):
        _fit(_study(folder, _crash(2)))
    left = sorted(p.name for p in (folder / "runs").rglob(f"{RESUME_FOLDER}/*"))
    (fit, outcome), out_dir = _fit(_study(folder))
    return fit, outcome, out_dir, left


def test_a_killed_fit_leaves_its_last_epoch_end_checkpoint(resumed):
    assert resumed[3] == ["epoch=1.ckpt", "last.ckpt"]


def test_the_resumed_fit_ends_bit_for_bit_where_an_unbroken_fit_ends(unbroken, resumed):
    expected, got = unbroken[0], resumed[0]
    assert got.trainer.current_epoch == expected.trainer.current_epoch == 4
    assert got.trainer.global_step == expected.trainer.global_step
    for name, value in expected.model.state_dict().items():
        assert torch.equal(got.model.state_dict()[name], value), name
    expected_state = expected.trainer.optimizers[0].state_dict()["state"]
    got_state = got.trainer.optimizers[0].state_dict()["state"]
    for index, state in expected_state.items():
        for key, value in state.items():
            assert torch.equal(got_state[index][key], value), (index, key)
    without_segments = {k: v for k, v in resumed[1].metrics.items() if k != "segments"}
    assert without_segments == unbroken[1].metrics


def test_the_history_of_a_resumed_fit_is_the_unbroken_fits(unbroken, resumed):
    assert resumed[1].metrics["val/acc by epoch"] == unbroken[1].metrics["val/acc by epoch"]
    assert len(unbroken[1].metrics["val/acc by epoch"]) == 4


def test_the_row_lists_the_segments_and_counts_their_seconds(unbroken, resumed):
    segments = resumed[1].metrics["segments"]
    assert [s["first_epoch"] for s in segments] == [0, 2]
    assert {(s["commit"], s["dirty"]) for s in segments} == {source_commit()}
    assert [s["device"] for s in segments] == ["cpu", "cpu"]
    assert "segments" not in unbroken[1].metrics


@pytest.mark.parametrize("saved_with_cuda", [True, False])
def test_a_fit_resumed_across_the_cuda_line_says_its_gpu_draws_differ(saved_with_cuda):
    states = random_states()
    states["cuda"] = [torch.zeros(16, dtype=torch.uint8)] if saved_with_cuda else []
    segments = FitSegments()
    segments.load_state_dict({"segments": [], "random_states": states, "next_epoch": 1})
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    crosses = saved_with_cuda != torch.cuda.is_available()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        segments.on_fit_start(trainer, pl.LightningModule())
    said = [str(w.message) for w in caught if "random stream is not carried across" in str(w.message)]
    assert len(said) == int(crosses)
    assert segments.segments()[-1]["device"] == "cpu"


def test_through_the_runner_a_killed_run_is_failed_then_finished_from_its_checkpoint(tmp_path):
    killed = _study(tmp_path, [*_crash(3), *_callback("SlowBatches", seconds=0.05)])
    start = time.perf_counter()
    record_run(killed, killed.planned()[0], threads=1, machine="test")
    first_call = time.perf_counter() - start
    start = time.perf_counter()
    row = record_run(_study(tmp_path), killed.planned()[0], threads=1, machine="test")
    second_call = time.perf_counter() - start
    assert [r["status"] for r in read(killed.ledger)] == ["failed", "finished"]
    earlier, last = row["metrics"]["segments"]
    assert (earlier["first_epoch"], last["first_epoch"], row["metrics"]["epochs"]) == (0, 3, 4)
    # 3 epochs of 6 slowed batches before the kill: at least 0.9 s; the row adds this call's fit to them
    assert 0.9 <= earlier["seconds"] <= first_call
    assert 0 < row["fit_seconds"] - earlier["seconds"] <= second_call


def test_a_fit_with_a_step_budget_keeps_no_checkpoint_and_starts_over(tmp_path):
    budget = ["--trainer.max_steps=1000"]  # more than the 4 epochs take: the epochs still end the fit
    with pytest.raises(RuntimeError, match="killed at epoch 2"):
        _fit(_study(tmp_path, [*budget, *_crash(2)]))
    assert not list((tmp_path / "runs").rglob("*.ckpt"))
    (fit, outcome), _ = _fit(_study(tmp_path, budget))
    assert "segments" not in outcome.metrics and fit.trainer.current_epoch == 4


def test_a_time_capped_fit_keeps_its_last_whole_epoch_and_goes_on_under_a_larger_cap(unbroken, tmp_path):
    slow = _callback("SlowBatches", seconds=0.25)  # 6 batches: 1.5 s an epoch; the 3-s cap falls inside epoch 1 or 2
    capped = _fit(_study(tmp_path, slow, max_time="00:00:00:03"))[0]
    assert capped[1].status == "capped" and 0 < capped[0].trainer.global_step < 24
    saved = _last_epoch_saved(tmp_path)  # a whole epoch that ended before the cap (none if the cap fell in epoch 0)
    assert saved is None or (saved + 1) * 6 <= capped[0].trainer.global_step
    again = _fit(_study(tmp_path, slow, max_time="00:00:00:03"))[0]  # the same cap: capped again
    assert again[1].status == "capped"
    finished = _fit(_study(tmp_path, slow))[0]  # no cap: it goes on to the end
    # its segments: the first attempt's and this one, and the second's if it saved a whole epoch before its cap
    assert finished[1].status == "finished" and len(finished[1].metrics["segments"]) in (2, 3)
    _assert_same_fit(finished, unbroken)
    assert _last_epoch_saved(tmp_path) is None


def test_a_crash_while_evaluating_refits_from_the_start(unbroken, tmp_path):
    with pytest.raises(RuntimeError, match="killed while testing"):
        _fit(_study(tmp_path, _callback("CrashWhileTesting")))
    assert _last_epoch_saved(tmp_path) is None  # the fit had run to its end: its checkpoint is gone
    again = _fit(_study(tmp_path))[0]
    assert "segments" not in again[1].metrics
    _assert_same_fit(again, unbroken)


def test_force_starts_a_stopped_run_over(tmp_path):
    with pytest.raises(RuntimeError, match="killed at epoch 2"):
        _fit(_study(tmp_path, _crash(2)))
    study = _study(tmp_path)
    assert _last_epoch_saved(tmp_path) == 1
    (row,) = study.run(force=True)
    assert row["status"] == "finished" and "segments" not in row["metrics"]


def test_a_finished_fit_deletes_its_checkpoint(unbroken, resumed):
    assert not (unbroken[2] / RESUME_FOLDER).exists() and not (resumed[2] / RESUME_FOLDER).exists()


def test_without_resume_a_restarted_fit_trains_from_epoch_zero(tmp_path):
    with pytest.raises(RuntimeError, match="killed at epoch 2"):
        _fit(_study(tmp_path, _crash(2), resume=False))
    assert not list((tmp_path / "runs").rglob(RESUME_FOLDER))
    (fit, outcome), _ = _fit(_study(tmp_path, resume=False))
    assert "segments" not in outcome.metrics and fit.trainer.current_epoch == 4


class StopInsideEpoch(pl.Callback):
    """Stops the fit after the first batch of epoch ``epoch``, as a time cap does."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


@pytest.mark.parametrize("stop_in", [0, 2])
def test_an_epoch_cut_short_is_not_saved(stop_in, tmp_path):
    checkpoint = EpochEndCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=1, save_last=True,
                                    save_on_train_epoch_end=True)  # fmt: skip
    trainer = pl.Trainer(max_epochs=5, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[checkpoint, StopInsideEpoch(stop_in)])  # fmt: skip
    data = GaussianMixtureDataModule(num_classes=2, dim=2, centers=[[-1.0, -1.0], [1.0, 1.0]], n_samples=96,
                                     cluster_std=1.5, batch_size=16)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(Classifier(num_classes=2, net=MLP(widths=[2, 8, 2])), data)
    assert not [w for w in caught if "without being stopped" in str(w.message)]  # a stopped epoch is no surprise
    assert trainer.global_step == 6 * stop_in + 1  # one batch of epoch stop_in, then the fit stopped
    if stop_in == 0:  # no whole epoch: nothing saved, not even at the end of training
        assert not list(tmp_path.iterdir())
    else:
        saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
        assert saved["epoch"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["epoch=1.ckpt", "last.ckpt"]


class Unsized(torch.utils.data.IterableDataset):
    """Four batches' worth of two-class points, with no ``__len__``."""

    def __iter__(self):
        generator = torch.Generator().manual_seed(0)
        for _ in range(16):
            yield torch.randn(2, generator=generator), torch.randint(0, 2, (), generator=generator)


@pytest.mark.parametrize("limit", [None, 10])  # no length at all; a limit longer than the 4 batches there are
def test_a_dataloader_that_runs_out_unstopped_warns_and_saves_nothing(limit, tmp_path):
    checkpoint = EpochEndCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=1, save_last=True,
                                    save_on_train_epoch_end=True)  # fmt: skip
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[checkpoint], limit_train_batches=limit)  # fmt: skip
    with pytest.warns(UserWarning, match="an epoch ended after 4 of .* training batches without being stopped"):
        trainer.fit(Classifier(num_classes=2, net=MLP(widths=[2, 8, 2])), torch.utils.data.DataLoader(Unsized(), 4))
    assert trainer.global_step == 8 and not list(tmp_path.iterdir())


def _write_log(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True)
    with open(folder / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_later_segment_replaces_what_a_killed_segment_logged_past_its_checkpoint(tmp_path):
    logs = tmp_path / "lightning_logs"
    _write_log(logs / "version_0", [{"epoch": e, "val/acc": v} for e, v in enumerate((0.5, 0.6, 0.7, 0.8))])
    _write_log(logs / "version_1", [{"epoch": e, "val/acc": v} for e, v in ((2, 0.92), (3, 0.93), (4, 0.94))])
    _write_log(logs / "version_2", [{"epoch": 9, "step": 99, "val/acc": 0.0}])  # another fit's, later: not read
    assert [float(r["val/acc"]) for r in merged_log_rows(logs / "version_1")] == [0.5, 0.6, 0.92, 0.93, 0.94]
    assert epoch_history(logs / "version_1", ["val/acc"]) == {"val/acc": [0.5, 0.6, 0.92, 0.93, 0.94]}
    assert [float(r["val/acc"]) for r in merged_log_rows(logs / "version_0")] == [0.5, 0.6, 0.7, 0.8]
    assert epoch_history(tmp_path / "lightning_logs" / "version_0", ["val/acc"])["val/acc"] == [0.5, 0.6, 0.7, 0.8]


# The fit configs the shipped studies train, shrunk to 3 epochs of 6 batches (the overrides keep what it trains).
SHIPPED = {
    "classifier/mnistfc.yaml": [],
    "entropy_sgd/mnistfc_entropy.yaml": ["--model.init_args.optimizer.init_args.variant=official_lua"],
    "entropy_sgd/mnistfc_lua_bn_entropy.yaml": [],
    "entropy_sgd/lenet_lua_adam.yaml": [],
    "entropy_sgd/char_lstm_adam.yaml": ["--model.init_args.hidden_size=16"],
    "entropy_sgd/char_lstm_entropy_adam.yaml": ["--model.init_args.hidden_size=16"],
    "ebgan/mnist_ebgan.yaml": [],
    "ebgan/ebgan_ln_100.yaml": [],
    "entnet/babi10k.yaml": [],
    "entnet/world_model.yaml": [],  # a step budget: no checkpoint, the killed run starts over
}
SHRUNK = ["--trainer.max_epochs=3", "--trainer.limit_train_batches=6", "--trainer.limit_val_batches=2",
          "--trainer.limit_test_batches=2", "--trainer.num_sanity_val_steps=0"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("config", list(SHIPPED))
def test_shipped_fit_configs_resume_bit_for_bit(config, real_data_dir, tmp_path):
    final = {}
    for mode, kill in (("unbroken", []), ("resumed", _crash(2))):

        def study(more: list[str], mode=mode) -> FitStudy:
            return FitStudy(fit_config=config, seeds=[1], extra=[*SHRUNK, *SHIPPED[config], *more],
                            ledger_dir=str(tmp_path / mode), runs_dir=str(tmp_path / mode))  # fmt: skip

        run = study([]).planned()[0]
        out_dir = tmp_path / mode / "run"
        if kill:
            with pytest.raises(RuntimeError, match="killed at epoch 2"):
                study(kill).fit_and_evaluate(run, out_dir)
        fit, outcome = study([]).fit_and_evaluate(run, out_dir)
        final[mode] = fit.model.state_dict(), outcome
    (expected, unbroken), (got, resumed) = final["unbroken"], final["resumed"]
    step_budget = config == "entnet/world_model.yaml"
    assert [s["first_epoch"] for s in resumed.metrics.get("segments", [{"first_epoch": 0}])] == [0] + [2] * (
        not step_budget
    )
    assert all(torch.equal(got[name], value) for name, value in expected.items())
    assert {k: v for k, v in resumed.metrics.items() if k != "segments"} == unbroken.metrics
