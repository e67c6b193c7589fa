"""Training fingerprints: the first training losses and a checksum of the final weights of a short fit.

A refactor that must not change behaviour (moving code between layers, renaming) keeps every fingerprint
bit-identical on the same machine; ``tests/test_fingerprints.py`` compares them with the committed
``tests/fingerprints/<machine>.json``. Both halves ignore names, so that renaming a logged key or a submodule does not
count as a change: the losses are the values of the ``train/*loss*`` scalars of each step, sorted, and the
checksum is over the sorted digests of the individual state-dict tensors.
"""

from __future__ import annotations

import hashlib
import platform
import re
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from iclr17.cli import cli

STEPS = 20


def machine_kind() -> str:
    """The CPU model, its widest vector unit and the torch version, e.g. ``x86_64-amd-epyc-avx512-torch2.14.1``:
    what decides the last bits of a float reduction on the CPU."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
    flags = set(flags.group(1).split()) if flags else set()
    vector = next((unit for unit in ("avx512f", "avx2", "avx") if unit in flags), "novec").removesuffix("f")
    cpu = re.sub(r"[^a-z0-9]+", "-", (model.group(1) if model else platform.processor() or "cpu").lower()).strip("-")
    version = torch.__version__.split("+")[0]
    return f"{platform.machine()}-{cpu}-{vector}-torch{version}"


class LossRecorder(Logger):
    """A logger that keeps, for each logged step, the values of the training losses it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.losses: dict[int, list[float]] = {}

    @property
    def name(self) -> str:
        return "fingerprint"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        values = [float(v) for k, v in metrics.items() if k.startswith("train/") and "loss" in k]
        if values:
            self.losses.setdefault(int(step or 0), []).extend(values)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over the sorted sha256 digests of every tensor's dtype, shape and bytes (names ignored)."""
    digests = []
    for tensor in state_dict.values():
        if not isinstance(tensor, torch.Tensor):
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest = hashlib.sha256(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        digests.append(digest.hexdigest())
    return hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()


def fingerprint(config: str, overrides: list[str]) -> dict[str, Any]:
    """Fit ``config`` for ``STEPS`` optimizer steps on one CPU thread, one validation batch per validation, and
    fingerprint it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # intra-op reductions in a fixed order
    try:
        recorder = LossRecorder()
        result = cli(
            [
                "fit",
                "--config",
                config,
                "--seed_everything=0",
                f"--trainer.max_steps={STEPS}",
                "--trainer.max_epochs=-1",
                "--trainer.max_time=null",
                "--trainer.limit_val_batches=1",
                "--trainer.num_sanity_val_steps=0",
                "--trainer.log_every_n_steps=1",
                "--trainer.enable_checkpointing=false",
                "--trainer.enable_progress_bar=false",
                "--trainer.accelerator=cpu",
                "--trainer.devices=1",
                "--trainer.logger=tests.fingerprint.LossRecorder",
                *overrides,
            ]
        )
        recorder = result.trainer.logger
        steps = sorted(recorder.losses)[:STEPS]
        return {
            "losses": [sorted(recorder.losses[s]) for s in steps],
            "weights": weights_digest(result.model.state_dict()),
        }
    finally:
        torch.set_num_threads(threads)
