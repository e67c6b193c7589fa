"""``make demo``: EntNet (Henaff et al., arXiv:1612.03969) learns the world-model task of section 5.1 for 40
seconds, then prints its test error in one line and writes a figure of validation error against time.

    python -m iclr17.demo [LightningCLI overrides, e.g. --trainer.max_time=00:00:00:30]

It runs ``iclr17 fit --config entnet/world_model_demo.yaml`` with the overrides, then validates and tests
the final weights. The config validates every 50 training batches (``val_check_interval``) rather than once
per epoch, so that a slow or busy machine still shows validation points before the time cap. The model is
tiny (d = 20) and torch runs it on one thread: beside other jobs on a 2-core machine, one thread made 301
updates in 15 s and two threads 26 (two threads stall whenever another process holds a core).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import WandbLogger

from iclr17.callbacks.run_folder import run_folder
from iclr17.cli import cli

CONFIG = "entnet/world_model_demo.yaml"
CHANCE_ERROR = 0.99  # one of 100 grid squares
PAPER = "paper: 0.00 at T = 10 after full training"


class ValidationCurve(Callback):
    """Records ``(seconds since training started, optimizer steps, val/error)`` after every validation
    that is not the sanity check, in ``points``."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int, float]] = []
        self.start = time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.monotonic()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            error = float(trainer.callback_metrics["val/error"])
            self.points.append((time.monotonic() - self.start, trainer.global_step, error))


def plot(points: list[tuple[float, int, float]], test: tuple[float, float, str], path: Path) -> Path:
    """Validation error against training time, the final test error as a star, guessing as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.2))
    axes.plot([p[0] for p in points], [p[2] for p in points], marker="o", markersize=3, label="validation")
    axes.plot(*test[:2], marker="*", markersize=12, linestyle="none", label=f"test, {test[2]}")
    axes.axhline(CHANCE_ERROR, color="grey", linestyle="--", label="guessing")
    axes.set(xlabel="training time (s)", ylabel="error", ylim=(0, 1.02), title="EntNet on the world-model task")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def main(args: list[str] | None = None) -> tuple[str, LightningCLI]:
    """Train, validate, test; print the result line and the figure's path; return the line and the CLI."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = cli(["fit", "--config", CONFIG, *(sys.argv[1:] if args is None else args)])
        trainer, datamodule = run.trainer, run.datamodule
        (curve,) = (c for c in trainer.callbacks if isinstance(c, ValidationCurve))
        seconds, steps = time.monotonic() - curve.start, trainer.global_step
        trainer.validate(run.model, datamodule, verbose=False)  # the final weights' point on the curve
        curve.points[-1] = (seconds, steps, curve.points[-1][2])
        error = trainer.test(run.model, datamodule, verbose=False)[0]["test/error"]
    finally:
        torch.set_num_threads(threads)
    lengths = datamodule.hparams.test_lengths
    stories = f"stories of {min(lengths)}" + (f"-{max(lengths)}" if len(lengths) > 1 else "") + " sentences"
    figure = plot(curve.points, (seconds, error, stories), run_folder(trainer) / "validation_error.png")
    line = (
        f"world-model test error {error:.2f} on {stories} after {seconds:.0f} s of training "
        f"({steps} updates; guessing: {CHANCE_ERROR:.2f}; {PAPER})"
    )
    for logger in trainer.loggers:  # wandb prints its closing lines now, before ours, not at exit
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
    print(f"\n{line}\nfigure: {figure}")
    return line, run


if __name__ == "__main__":  # run as `python -m iclr17.demo`: the config's callback is iclr17.demo's class
    from iclr17.demo import main as demo_main

    demo_main()
