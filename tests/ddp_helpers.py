"""What the tests that fit under two gloo processes on CPU (``strategy="ddp_spawn"``) share."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch


class CloseProcessGroup(pl.Callback):
    """Each spawned worker leaves only after both have closed the process group: a worker that exits while its
    peer's gloo threads still listen can make the peer abort ("terminate called without an active exception")."""

    def teardown(self, trainer, pl_module, stage):
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


class SaveOnEachRank(pl.Callback):
    """Saves ``callback.<attribute>`` and the global step to ``<path>.rank<r>`` on every rank at the end of fit,
    since spawned workers do not send their callbacks back. List it after ``callback``, so that the end-of-fit
    hooks of ``callback`` have run; :meth:`load` reads a rank's file back in the test."""

    def __init__(self, callback: pl.Callback, attribute: str, path: str | Path) -> None:
        self.callback, self.attribute, self.path = callback, attribute, Path(path)

    def on_fit_end(self, trainer, pl_module):
        saved = {self.attribute: getattr(self.callback, self.attribute), "step": trainer.global_step}
        torch.save(saved, f"{self.path}.rank{trainer.global_rank}")

    def load(self, rank: int = 0) -> dict:
        return torch.load(f"{self.path}.rank{rank}", weights_only=False)


def cpu_trainer(callbacks=(), **trainer_args) -> pl.Trainer:
    """A CPU Trainer without logger, progress bar or model summary; under ``ddp_spawn`` it adds
    :class:`CloseProcessGroup` to ``callbacks``."""
    callbacks = list(callbacks)
    if trainer_args.get("strategy") == "ddp_spawn":
        callbacks.append(CloseProcessGroup())
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **trainer_args,
    )
