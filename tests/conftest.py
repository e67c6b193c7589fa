"""Shared fixtures: no network, no wandb uploads, no files left behind, real data through ICLR17_DATA_DIR."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import wandb

from tests.data.make_babi import write_babi
from tests.data.make_cbt import write_cbt
from tests.data.make_cifar10 import write_cifar10
from tests.data.make_images import write_images
from tests.data.make_mnist import write_mnist
from tests.data.make_text import write_ptb, write_war_and_peace

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests run in temporary folders, so a relative data root (CI passes ../shared/data) is fixed here, once.
if os.environ.get("ICLR17_DATA_DIR"):
    os.environ["ICLR17_DATA_DIR"] = str(Path(os.environ["ICLR17_DATA_DIR"]).resolve())


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test runs in its own folder with wandb disabled and the cache under tmp."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("ICLR17_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    yield
    if wandb.run is not None:  # an in-process CLI run leaves its wandb run open, and the next logger would reuse it
        wandb.finish()


@pytest.fixture(scope="session")
def fixture_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with every fixture dataset in its original format: a 600/100-image MNIST, bAbI tasks 1
    and 2 (200 training questions each) in ``en`` and ``en-10k``, CBT NE and CN (60/15/15 examples), a
    CIFAR-10 of 5 x 60 training and 40 test images, and a PTB (200/40/40 sentences) and a War and Peace (BOM,
    CRLF) in their files' formats; CelebA (8/2/2 aligned JPEGs and the partition file), LSUN bedroom exported
    as WebP (8 train, 4 val) and an image folder of 12 PNG/JPEG files (tests/data/make_images.py)."""
    root = tmp_path_factory.mktemp("data_root")
    write_mnist(root, n_train=600, n_test=100)
    write_babi(root)
    write_cbt(root)
    write_cifar10(root, per_batch=60, n_test=40)
    write_ptb(root)
    write_war_and_peace(root)
    write_images(root)
    return root


@pytest.fixture(scope="session")
def mnist_fixture_dir(fixture_data_root: Path) -> Path:
    return fixture_data_root


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """``$ICLR17_DATA_DIR`` when set (CI sets it); a set but missing folder fails instead of skipping."""
    value = os.environ.get("ICLR17_DATA_DIR")
    if not value:
        pytest.skip("ICLR17_DATA_DIR is not set; real-data tests need it (CI sets it to ../shared/data)")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"ICLR17_DATA_DIR={value} is set but {path} is not a folder")
    return path
