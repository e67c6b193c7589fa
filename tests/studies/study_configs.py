"""The study a shipped config (``configs/studies/<name>.yaml``) builds, parsed by jsonargparse as the CLI does; a
small fit config for FitStudy tests."""

from __future__ import annotations

from typing import Any

import yaml
from jsonargparse import ArgumentParser

from iclr17.studies.runner import Study
from tests.conftest import REPO_ROOT


def shipped_study(cls: type[Study], name: str, arxiv: str | None = None, **overrides: Any) -> Study:
    """``cls`` built from the shipped study config ``name`` with ``overrides`` on top; with ``arxiv``, the config's
    header is checked to give the paper (that arXiv id and a ``Paper:`` line) and a ``Command:`` line."""
    path = REPO_ROOT / "configs" / "studies" / f"{name}.yaml"
    if arxiv is not None:
        header = "".join(line for line in path.read_text().splitlines(True) if line.startswith("#"))
        assert "Command:" in header and "Paper:" in header and f"arXiv:{arxiv}" in header
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "study")
    return parser.instantiate(parser.parse_object({"study": yaml.safe_load(path.read_text()) | overrides})).study


# A BatchNorm + dropout MLP on two Gaussian clusters, 3 epochs of 7 batches: seconds per fit on the CPU.
BN_CLASSIFIER_CONFIG = """
seed_everything: 0
trainer:
  max_epochs: 3
  accelerator: cpu
  callbacks:
    - class_path: BatchNormStatistics
      init_args: {source: test, momentum: 0.1, batch_size: 16}
model:
  class_path: Classifier
  init_args:
    num_classes: 2
    net: {class_path: iclr17.MLP, init_args: {widths: [2, 8, 2], batchnorm: true, dropout: 0.3}}
    optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.1}}
data:
  class_path: GaussianMixtureDataModule
  init_args:
    num_classes: 2
    dim: 2
    centers: [[-1.0, -1.0], [1.0, 1.0]]
    n_samples: 100
    cluster_std: 1.5
    batch_size: 16
"""
