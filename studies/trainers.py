"""The Trainer a study or benchmark drives by hand: it trains and does nothing else."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint


def quiet_trainer(
    max_epochs: int | None = None,
    max_steps: int = -1,
    limit_train_batches: int | None = None,
    callbacks: list[pl.Callback] | None = None,
    accelerator: str = "cpu",
) -> pl.Trainer:
    """A Trainer with no logger, progress bar, model summary or validation, and no checkpoints but those a
    checkpoint callback in ``callbacks`` writes (a study's resume checkpoint).

    For drivers that score or time each run themselves (``iclr17.studies.ebgan_grid``, ``benchmarks/``), so a run
    costs only the fit and writes no files of its own. The limits mean what they mean to ``pl.Trainer``.

    Args:
        max_epochs: epochs to train (None: Lightning's default, unlimited when ``max_steps`` is set).
        max_steps: optimizer steps to train (-1: no limit).
        limit_train_batches: training batches per epoch (None: all).
        callbacks: callbacks of the run (e.g. ``HaltingTime``, or ``EpochEndCheckpoint`` to make it resumable).
        accelerator: Lightning accelerator name.
    """
    return pl.Trainer(
        accelerator=accelerator,
        max_epochs=max_epochs,
        max_steps=max_steps,
        limit_train_batches=limit_train_batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks or []),
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
