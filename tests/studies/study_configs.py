"""The study a shipped config (``configs/studies/<name>.yaml``) builds, parsed by jsonargparse as the CLI does."""

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
