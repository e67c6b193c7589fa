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


def shared_tensors(module: torch.nn.Module) -> list[str]:
    """The names of the tensors of ``module`` (parameters, buffers, plain attributes such as metric states and
    their defaults, tensors in lists) whose storage is shared memory."""
    found = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_shared()]
    for prefix, submodule in module.named_modules():
        held = {**vars(submodule), **{f"_defaults.{k}": v for k, v in getattr(submodule, "_defaults", {}).items()}}
        for name, value in held.items():
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, torch.Tensor) and v.is_shared() for v in values):
                found.append(f"{prefix}.{name}" if prefix else name)
    return found


class AssertOwnMemory(pl.Callback):
    """In every worker, once setup has run: no tensor of the module shares memory with another process
    (``torch.multiprocessing`` shares what it pickles; a shared metric state adds every process's counts)."""

    def _check(self, pl_module: pl.LightningModule) -> None:
        shared = shared_tensors(pl_module)
        assert not shared, f"tensors shared with other processes: {shared}"

    def on_fit_start(self, trainer, pl_module):
        self._check(pl_module)

    def on_validation_start(self, trainer, pl_module):
        self._check(pl_module)

    def on_test_start(self, trainer, pl_module):
        self._check(pl_module)


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
    :class:`AssertOwnMemory` and :class:`CloseProcessGroup` to ``callbacks``."""
    callbacks = list(callbacks)
    if trainer_args.get("strategy") == "ddp_spawn":
        callbacks += [AssertOwnMemory(), CloseProcessGroup()]
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **trainer_args,
    )
