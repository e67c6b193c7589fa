"""The run's own folder: one definition for the command line's saved config and every callback that writes files."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger


def run_folder(trainer: pl.Trainer) -> Path:
    """The folder that belongs to this run alone: where Lightning's ``ModelCheckpoint`` puts ``checkpoints/``.

    With a logger, ``<save_dir>/<name>/<version>`` of the first one: ``runs/iclr17/<wandb run id>`` for the
    default wandb logger, ``<save_dir>/<name>/version_<n>`` for CSV and TensorBoard, so two runs never share it
    (``trainer.log_dir`` is wandb's ``save_dir`` itself, shared by every run). Without a logger,
    ``default_root_dir``. Call it on rank 0, the process that writes files: a wandb run, whose id names the
    folder, exists there only.
    """
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    if isinstance(logger, WandbLogger):
        logger.experiment  # noqa: B018  (creates the run, so that its id names the folder)
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name) / version
