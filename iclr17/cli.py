"""``iclr17`` command line: LightningCLI in subclass mode, so configs name classes by their bare names.

    iclr17 fit --config configs/classifier/mnistfc.yaml
    iclr17 fit --config classifier/mnistfc.yaml          # the same file, shipped inside the package
    iclr17 fit --print_config --config classifier/mnistfc.yaml

A ``--config`` path that does not exist on disk is looked up among the configs shipped in the package
(``iclr17.configs``), with or without its leading ``configs/``; ``iclr17 configs`` lists them.

Layers: this LightningCLI sits above ``modules``, ``datamodules`` and ``callbacks`` and below the studies, which
run it; the console script's front door is ``iclr17.__main__``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from importlib import resources

import yaml
from jsonargparse import Namespace, lazy_instance
from pytorch_lightning import LightningDataModule, LightningModule, Trainer
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

import iclr17  # noqa: F401  (registers every module, datamodule and callback for bare class names)
from iclr17.callbacks.run_folder import run_folder
from iclr17.modules.entropy_sgd.optim import EntropySGD
from iclr17.modules.entropy_sgd.training import EntropySGDTraining, stacked_minibatches
from iclr17.wandb_logger import OfflineFirstWandbLogger


def shipped_configs() -> list[str]:
    """Names of the YAML configs installed with the package, e.g. ``classifier/mnistfc.yaml``."""
    root = resources.files("iclr17.configs")
    found: list[str] = []

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".yaml"):
                found.append(prefix + child.name)

    walk(root, "")
    return sorted(found)


def resolve_config_path(value: str) -> str:
    """An existing path unchanged; otherwise the matching shipped config's path, if there is one."""
    if os.path.exists(value):
        return value
    name = value.removeprefix("configs/")
    candidate = resources.files("iclr17.configs").joinpath(name)
    return str(candidate) if candidate.is_file() else value


def resolve_config_args(args: list[str]) -> list[str]:
    """``args`` with each ``--config`` / ``-c`` value that names a shipped config replaced by its path."""
    resolved = list(args)
    for i, arg in enumerate(resolved):
        if arg in ("--config", "-c") and i + 1 < len(resolved):
            resolved[i + 1] = resolve_config_path(resolved[i + 1])
        elif arg.startswith("--config="):
            resolved[i] = "--config=" + resolve_config_path(arg.removeprefix("--config="))
    return resolved


class SaveConfigToRunDir(SaveConfigCallback):
    """Saves the full config, seed included, as ``config.yaml`` in the run's folder next to its checkpoints.

    Lightning's default writes to ``trainer.log_dir``, which for wandb is the shared ``save_dir``, so each
    run would overwrite the previous run's file. Every logger also receives the config as hyperparameters
    under ``cli`` (searchable in the wandb UI).
    """

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        path = run_folder(trainer) / self.config_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=self.multifile)
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams({"cli": config})


class ICLR17CLI(LightningCLI):
    """LightningCLI with the project's defaults: wandb (offline first), a RichProgressBar, a recorded seed."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Entropy-SGD: an EntropySGDTraining module gets L + 1 stacked minibatches per outer step (1 with
        # inner_batches: same); any other module steps EntropySGD on one batch. The derived value replaces a
        # batches_per_step given in a config or on the command line.
        parser.link_arguments("model", "data.init_args.batches_per_step", compute_fn=_batches_per_step)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        trainer = config.trainer
        callbacks = trainer.callbacks or []
        has_progress_bar = any(_is_progress_bar(c) for c in callbacks)
        if trainer.enable_progress_bar is not False and not has_progress_bar:
            trainer.callbacks = [*callbacks, Namespace(class_path=_class_path(RichProgressBar), init_args=Namespace())]


def _batches_per_step(model: Namespace) -> int:
    """L + 1 for an EntropySGDTraining module (its optimizer's L, or its default optimizer's), else 1."""
    module, _, name = model.class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not issubclass(cls, EntropySGDTraining):
        return 1
    optimizer = model.init_args.get("optimizer")
    if optimizer is not None:
        L = optimizer.init_args.L
    else:  # the class's default_optimizer: EntropySGD, or a functools.partial of it
        defaults = getattr(cls.default_optimizer, "keywords", {})
        L = defaults.get("L", inspect.signature(EntropySGD).parameters["L"].default)
    return stacked_minibatches(L, model.init_args.get("inner_batches", "fresh"))


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_progress_bar(callback: object) -> bool:
    if isinstance(callback, Namespace):  # parsed but not yet instantiated: class_path is fully qualified
        module, _, name = callback.class_path.rpartition(".")
        return issubclass(getattr(importlib.import_module(module), name), ProgressBar)
    return isinstance(callback, ProgressBar)


def cli(args: list[str] | None = None) -> ICLR17CLI:
    """Run a subcommand (``["fit", "--config", ...]``; default: the command line) and return the finished CLI.

    Shipped-config names in ``--config`` are resolved first; for the command line this rewrites
    ``sys.argv``, so that DDP's launcher starts its worker processes with the same, resolved arguments.
    """
    if args is None:
        sys.argv[1:] = resolve_config_args(sys.argv[1:])
    else:
        args = resolve_config_args(args)
    return ICLR17CLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=True,
        save_config_callback=SaveConfigToRunDir,
        save_config_kwargs={"save_to_log_dir": False},
        trainer_defaults={"logger": lazy_instance(OfflineFirstWandbLogger)},
        args=args,
        auto_configure_optimizers=False,
    )
