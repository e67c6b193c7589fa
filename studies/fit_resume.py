"""Fits that survive being stopped: a study's fit keeps an epoch-end checkpoint in its run folder and, started again
after a kill, a crash or a time cap, continues from that checkpoint instead of from the start.

The checkpoint is ``<run dir>/resume/last.ckpt``, written atomically by Lightning's ``ModelCheckpoint`` after every
training epoch that ran all its batches, after that epoch's validation (:class:`EpochEndCheckpoint`; never inside an
epoch, from which Lightning cannot resume exactly, so a kill loses at most the epoch under way). A fit with a step
budget (``trainer.max_steps``) keeps none and starts over. The checkpoint carries what Lightning restores (loops,
model, optimizers, schedulers, every callback's state) and :class:`FitSegments`: which commit trained which epochs
for how long, and the global random state at the checkpoint, so that a resumed single-process fit continues bit for
bit (tested). Once a fit has run to its end the checkpoint is deleted, before the final weights are evaluated (an
evaluation that crashes makes the run fit again from the start: a resumed fit that trains nothing would record no
training metrics). Its ledger row lists the segments when there were several and counts the seconds of every
segment up to its last checkpoint (work redone after a kill is not counted). A time cap (a study's ``max_time``)
counts the whole fit: Lightning's ``Timer`` keeps its elapsed time in the checkpoint, so a capped run retried under
the same cap stops again about where it stopped, and under a larger cap goes on.
"""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_warn

from iclr17.studies.runner import Run, Study

RESUME_FOLDER = "resume"  # in the run's folder: last.ckpt while the run is unfinished


def random_states() -> dict[str, Any]:
    """The process's global random states (torch, CUDA where there is one, numpy, Python) in types that a
    ``weights_only`` checkpoint load accepts."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": (name, keys.tolist(), position, has_gauss, gauss), "python": random.getstate()}  # fmt: skip


def set_random_states(states: dict[str, Any]) -> None:
    """Restore what :func:`random_states` returned."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))


class FitSegments(pl.Callback):
    """Records, in every checkpoint, the segments of a fit (each start or resumption until it stopped) and the global
    random state of the process at the checkpoint; restores both when a fit resumes from it.

    It changes nothing in training: the random state it restores is the one an unbroken fit would have had at that
    point. Under DDP every rank has its own random state and only rank 0's would be saved, so it is not restored
    there: a resumed DDP fit's random draws (dropout, noise) differ from an unbroken fit's, and so do its weights
    unless the model draws nothing at random in training (tested). Nor is a GPU's random stream carried between a
    machine with CUDA and one without: a fit resumed across that line says so, and each segment records its device.

    Args:
        commit: the commit of the code that runs this segment (the ledger row's ``commit``).
        dirty: whether that checkout had uncommitted changes (the row's ``dirty``).
    """

    def __init__(self, commit: str = "unknown", dirty: bool = False) -> None:
        self.commit, self.dirty = commit, dirty
        self.earlier: list[dict[str, Any]] = []  # segments before this one, as their last checkpoint saw them
        self._started, self._first_epoch = time.perf_counter(), 0
        self._next_epoch: int | None = None  # the epoch after the last one that ended
        self._random_states: dict[str, Any] | None = None
        self._device = "unknown"  # the accelerator this segment trains on

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started, self._device = time.perf_counter(), trainer.strategy.root_device.type
        if self._random_states is not None and trainer.world_size == 1:
            set_random_states(self._random_states)
            if bool(self._random_states["cuda"]) != torch.cuda.is_available():
                there, here = ("with", "without") if self._random_states["cuda"] else ("without", "with")
                rank_zero_warn(f"resuming a fit checkpointed in a process {there} CUDA in one {here} it: the GPU's "
                               "random stream is not carried across, so random draws made on a GPU may differ from "
                               "an unbroken fit's")  # fmt: skip
        self._random_states = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._first_epoch = trainer.current_epoch  # the loops are restored by now
        code = [(s["commit"], s["dirty"]) for s in self.earlier]
        if any(c != (self.commit, self.dirty) for c in code):
            rank_zero_warn(f"resuming a fit that other code trained before (commit, dirty: {code}); this segment runs "
                           f"{self.commit}, dirty={self.dirty}; the ledger row lists every segment's")  # fmt: skip

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._next_epoch = trainer.current_epoch + 1  # before the epoch's checkpoint: Lightning runs those last

    def segments(self) -> list[dict[str, Any]]:
        """The earlier segments and this one up to now: ``commit``, ``dirty``, ``device`` (the accelerator's type,
        ``cpu`` or ``cuda``; absent from segments checkpointed before it was kept), ``first_epoch`` (0-based) and
        ``seconds``."""
        now = {"commit": self.commit, "dirty": self.dirty, "device": self._device, "first_epoch": self._first_epoch,
               "seconds": round(time.perf_counter() - self._started, 1)}  # fmt: skip
        return [*self.earlier, now]

    def whole_fit(self, seconds: float) -> tuple[float, dict[str, Any]]:
        """The seconds of the whole fit, given this segment's as the caller measured them (plus the earlier
        segments'), and what a ledger row records of the segments: ``{"segments": [...]}`` after a resumption,
        else nothing."""
        if not self.earlier:
            return seconds, {}
        return seconds + sum(segment["seconds"] for segment in self.earlier), {"segments": self.segments()}

    def state_dict(self) -> dict[str, Any]:
        # the epoch a fit resumed from this (epoch-end) checkpoint starts at: its first_epoch, even when it has no
        # epoch left to train and so never reaches on_train_start
        return {"segments": self.segments(), "random_states": random_states(), "next_epoch": self._next_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.earlier, self._random_states = list(state_dict["segments"]), state_dict["random_states"]
        if state_dict.get("next_epoch") is not None:  # absent from checkpoints written before it was kept
            self._first_epoch = state_dict["next_epoch"]


class EpochEndCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that saves only after a training epoch that ran to its last batch: a fit stopped inside an
    epoch (a time cap) keeps the checkpoint of the epoch before, from which Lightning resumes cleanly. Lightning's
    own save at the end of training, which would catch a fit stopped inside an epoch, is left out.

    A fit whose training dataloader has no length (or is shorter than ``limit_train_batches``) saves nothing either,
    and says so: its epochs cannot be told whole.
    A fit with a step budget (``trainer.max_steps`` set, e.g. the EntNet world model) saves nothing, so it starts over
    when run again: Lightning restarts a step-budgeted fit from an epoch-end checkpoint as if mid-epoch and trains
    no batch in the next epoch (pytorch-lightning 2.6; found with the world-model config, tested).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step_budget, self.batches_this_epoch = False, 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.step_budget = trainer.max_steps != -1
        if self.step_budget:
            rank_zero_warn(
                f"trainer.max_steps={trainer.max_steps}: this fit keeps no resume checkpoint and starts "
                "over if it is stopped (Lightning cannot resume a step-budgeted fit from an epoch end)"
            )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.batches_this_epoch = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any) -> None:
        self.batches_this_epoch += 1
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.step_budget:
            return
        if self.batches_this_epoch == trainer.num_training_batches:  # the epoch ran whole
            super().on_train_epoch_end(trainer, pl_module)
        elif not trainer.should_stop:  # not cut by a time cap: the loader ran out before its announced length
            rank_zero_warn(
                f"an epoch ended after {self.batches_this_epoch} of {trainer.num_training_batches} training batches "
                "without being stopped (a dataloader with no length, or shorter than limit_train_batches): such an "
                "epoch cannot be told whole, so it is not saved and a stopped fit starts over"
            )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Nothing: every whole epoch is saved when it ends."""


CHECKPOINT_SETTINGS = {"filename": "{epoch}", "save_top_k": 1, "save_last": True, "save_on_train_epoch_end": True}


def last_checkpoint(out_dir: Path) -> Path | None:
    """The run's resume checkpoint, when an earlier segment left one."""
    last = out_dir / RESUME_FOLDER / "last.ckpt"
    return last if last.is_file() else None


def _resume_callback_specs(out_dir: Path, commit: str, dirty: bool) -> list[tuple[type[pl.Callback], dict[str, Any]]]:
    """The two callbacks of a resumable fit and their arguments, the one source of :func:`resume_callbacks` and
    :func:`resume_args`."""
    return [(EpochEndCheckpoint, {"dirpath": str(out_dir / RESUME_FOLDER), **CHECKPOINT_SETTINGS}),
            (FitSegments, {"commit": commit, "dirty": dirty})]  # fmt: skip


def resume_callbacks(out_dir: Path, commit: str, dirty: bool) -> list[pl.Callback]:
    """The callbacks that make a fit driven by hand resumable (what :func:`resume_args` gives a CLI fit): the
    epoch-end checkpoint in ``<out_dir>/resume`` and the :class:`FitSegments` recorder; fit with
    ``ckpt_path=last_checkpoint(out_dir)``."""
    return [callback(**arguments) for callback, arguments in _resume_callback_specs(out_dir, commit, dirty)]


def resume_args(out_dir: Path, commit: str, dirty: bool) -> list[str]:
    """The fit arguments that make a study's fit resumable: the callbacks of :func:`resume_callbacks`, a CSV log
    written at every logging step (so that a killed segment's history reaches its last checkpoint), and
    ``--ckpt_path`` when an earlier segment left a checkpoint."""
    callbacks = [{"class_path": f"{callback.__module__}.{callback.__qualname__}", "init_args": arguments}
                 for callback, arguments in _resume_callback_specs(out_dir, commit, dirty)]  # fmt: skip
    args = [*(f"--trainer.callbacks+={json.dumps(callback)}" for callback in callbacks),
            "--trainer.logger.flush_logs_every_n_steps=1"]  # fmt: skip
    last = last_checkpoint(out_dir)
    return args if last is None else [*args, f"--ckpt_path={last}"]


def discard(out_dir: Path) -> None:
    """Delete a run's resume checkpoint: once its fit has run to its end, or when a rerun must start over."""
    shutil.rmtree(out_dir / RESUME_FOLDER, ignore_errors=True)


class ResumableStudy(Study):
    """A study whose runs continue from their resume checkpoint (``<run dir>/resume``) when started again;
    ``run --force`` deletes it, so that the rerun starts over."""

    def start_over(self, run: Run) -> None:
        discard(self.run_dir(run))


def merged_log_rows(log_dir: Path) -> list[dict[str, str]]:
    """The rows of a fit's ``metrics.csv`` (Lightning's CSVLogger) in ``log_dir``; for a ``version_<n>`` folder,
    of every segment's version up to it (a resumed fit logs each segment into the next version): each segment's rows
    replace the earlier segments' rows from its first logged epoch on (a killed segment may have logged past its
    last checkpoint)."""
    versions = [log_dir]
    if re.fullmatch(r"version_\d+", log_dir.name):
        number = int(log_dir.name.removeprefix("version_"))
        found = {int(p.name.removeprefix("version_")): p for p in log_dir.parent.glob("version_*")
                 if re.fullmatch(r"version_\d+", p.name)}  # fmt: skip
        versions = [found[n] for n in sorted(found) if n <= number]
    rows: list[dict[str, str]] = []
    for version in versions:
        path = version / "metrics.csv"
        if not path.is_file():
            continue
        with open(path, newline="") as handle:
            segment = list(csv.DictReader(handle))
        epochs = [int(float(r["epoch"])) for r in segment if r.get("epoch", "") != ""]
        if epochs:
            rows = [r for r in rows if r.get("epoch", "") == "" or int(float(r["epoch"])) < min(epochs)]
        rows += segment
    return rows
