"""The README's Python snippets run as written, in order, on the MNIST fixture with short Trainer budgets: the
"five lines" a user copies (a classifier, HessianSpectrum, EntropySGD in a plain loop, HaltingTime) must not rot.

What the README leaves to the reader is supplied here, and only that: ``datamodule`` (the snippets' own MNIST
datamodule), a ``loader``, ``n_outer_steps``, ``itertools`` and ``F``; the data path placeholder points at the
fixture, whose 600 training images need a smaller validation split; HessianSpectrum's Lanczos takes 8 steps, not
100 (the snippet's net has 1.9 M parameters); every ``pl.Trainer`` gets a budget of a few batches, no logger and no
checkpoints (the snippets' own arguments are kept and then shortened)."""

from __future__ import annotations

import functools
import itertools
import re

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import iclr17
from tests.conftest import REPO_ROOT

PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _snippets() -> list[str]:
    return PYTHON_BLOCK.findall((REPO_ROOT / "README.md").read_text())


class ShortTrainer(pl.Trainer):
    """The snippet's Trainer, cut to two batches an epoch and at most two epochs, quiet and without files."""

    def __init__(self, *args, root: str, **kwargs) -> None:
        kwargs.update(max_epochs=min(kwargs.get("max_epochs") or 2, 2), max_steps=min(kwargs.get("max_steps", 4), 4))
        kwargs.update(limit_train_batches=2, limit_val_batches=1, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=root)  # fmt: skip
        super().__init__(*args, **kwargs)


def test_the_readme_has_the_four_python_snippets_this_test_runs():
    snippets = _snippets()
    assert len(snippets) == 4
    assert "Classifier(MNISTFC()" in snippets[0] and "HessianSpectrum(" in snippets[1]
    assert "EntropySGD(" in snippets[2] and "HaltingTime(" in snippets[3]


def test_the_readme_python_snippets_run_in_order(mnist_fixture_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pl, "Trainer", functools.partial(ShortTrainer, root=str(tmp_path)))
    small_mnist = functools.partial(iclr17.MNISTDataModule, val_size=100, batch_size=50)
    monkeypatch.setattr(iclr17, "MNISTDataModule", small_mnist)
    short_lanczos = functools.partial(iclr17.HessianSpectrum, lanczos_steps=8, top_k=3)  # MNISTFC: 1.9 M parameters
    monkeypatch.setattr(iclr17, "HessianSpectrum", short_lanczos)
    classifier, hessian, entropy_sgd, halting = (
        s.replace("/path/to/data", str(mnist_fixture_dir)) for s in _snippets()
    )

    namespace: dict = {}
    exec(compile(classifier, "README.md: the classifier snippet", "exec"), namespace)
    model = namespace["model"]
    assert isinstance(model, iclr17.Classifier) and model.trainer.global_step == 4  # 2 epochs x 2 batches

    datamodule = small_mnist(data_dir=str(mnist_fixture_dir))
    namespace["datamodule"] = datamodule
    exec(compile(hessian, "README.md: the HessianSpectrum snippet", "exec"), namespace)
    spectrum = namespace["spectrum"]
    assert [r["when"] for r in spectrum.history] == ["start", "end"]
    assert spectrum.history[-1]["method"] == "lanczos"  # auto: MNISTFC is far above 6,000 parameters
    stats = spectrum.history[-1]["stats"]
    assert capsys.readouterr().out.split() == [str(stats["lambda_max"]), str(stats["n_outliers"])]

    datamodule.setup("fit")
    before = [p.detach().clone() for p in model.parameters()]
    namespace.update(loader=DataLoader(datamodule.train_set, batch_size=50), n_outer_steps=2, itertools=itertools, F=F)
    exec(compile(entropy_sgd, "README.md: the EntropySGD snippet", "exec"), namespace)
    assert namespace["optimizer"].state and any(
        not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True)
    )  # the loop stepped the model

    exec(compile(halting, "README.md: the HaltingTime snippet", "exec"), namespace)
    halting_time = namespace["halting"]
    printed = capsys.readouterr().out
    assert [r["threshold"] for r in halting_time.record] == [0.5, 0.1]
    assert printed.startswith(f"{halting_time.halting_step} [")  # the step, then the per-threshold records
    for record in halting_time.record:
        assert {"step", "epoch", "wall_time", "value", "censored"} <= set(record)


@pytest.mark.parametrize("index", range(4))
def test_each_snippet_names_only_what_the_package_exports(index):
    """Every ``from iclr17 import ...`` name of a snippet is a top-level export."""
    for names in re.findall(r"from iclr17 import ([\w, ]+)", _snippets()[index]):
        missing = [n.strip() for n in names.split(",") if not hasattr(iclr17, n.strip())]
        assert not missing, f"README snippet {index + 1} imports {missing}, which iclr17 does not export"
