"""The package's layers, enforced on every import of every source file (../README.md, "Layout").

Bottom up: ``functional`` (the papers' math: torch, numpy and scipy only) <- ``datamodules``, ``modules``,
``callbacks`` (thin Lightning wrappers that never import one another) <- ``iclr17.cli`` (the LightningCLI) <-
``studies`` (many runs of a config) <- the front door (``iclr17.__main__``, ``iclr17.demo``). The re-exports in
``iclr17/__init__.py`` sit with the wrappers. No file uses Lightning's or torch's private API.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

FOLDERS = {  # package -> folder, as pyproject's package-dir maps them
    "iclr17.functional": "functional",
    "iclr17.modules": "modules",
    "iclr17.datamodules": "datamodules",
    "iclr17.callbacks": "callbacks",
    "iclr17.studies": "studies",
    "iclr17": "iclr17",
}
LAYER_OF = {  # the first matching prefix decides a module's layer
    "iclr17.functional": 0,
    "iclr17.datamodules": 1,
    "iclr17.modules": 1,
    "iclr17.callbacks": 1,
    "iclr17.wandb_logger": 1,
    "iclr17.cli": 2,
    "iclr17.studies": 3,
    "iclr17.__main__": 4,
    "iclr17.demo": 4,
    "iclr17.configs": 0,
    "iclr17": 1,  # the package's re-exports
}
SIBLINGS = ("iclr17.datamodules", "iclr17.modules", "iclr17.callbacks")  # one layer, never importing each other
FUNCTIONAL_MAY_IMPORT = {"torch", "numpy", "scipy", "__future__"} | set(sys.stdlib_module_names)
PRIVATE = re.compile(
    r"\._trainer\b|_batches_that_stepped|\bfit_loop\.epoch_loop\b|\btorch\._utils\b|"
    r"\bfrom (?:pytorch_)?lightning(?:\.\w+)*\._\w+|\bimport (?:pytorch_)?lightning(?:\.\w+)*\._\w+"
)


def source_files() -> dict[str, Path]:
    """Dotted module name -> file, for every Python file of the package."""
    found = {}
    for package, folder in FOLDERS.items():
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT / folder).with_suffix("").parts
            if package == "iclr17" and parts[0] in ("modules", "datamodules", "callbacks"):
                continue
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def imports_of(name: str, path: Path) -> list[tuple[int, str]]:
    """Every imported module (absolute dotted name) with its line, relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, base)]
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if base.startswith("iclr17")]
    return found


def layer(name: str) -> int | None:
    for prefix, level in LAYER_OF.items():
        if name == prefix or name.startswith(prefix + "."):
            return level
    return None


def sibling(name: str) -> str | None:
    return next((s for s in SIBLINGS if name == s or name.startswith(s + ".")), None)


FILES = source_files()


def test_every_package_folder_is_walked():
    assert {"iclr17.functional.hessian", "iclr17.modules.classifier", "iclr17.datamodules.mnist"} <= set(FILES)
    assert {"iclr17.callbacks.image_grids", "iclr17.studies.halting", "iclr17.cli", "iclr17.__main__"} <= set(FILES)


@pytest.mark.parametrize("name", sorted(FILES))
def test_imports_point_down_the_layers(name):
    own_layer, own_sibling = layer(name), sibling(name)
    wrong = []
    for line, imported in imports_of(name, FILES[name]):
        where = f"{FILES[name].relative_to(REPO_ROOT)}:{line} imports {imported}"
        if own_layer == 0 and imported.split(".")[0] not in FUNCTIONAL_MAY_IMPORT:
            if not imported.startswith("iclr17.functional"):
                wrong.append(f"{where}: functional imports torch, numpy, scipy and itself only")
            continue
        if not imported.startswith("iclr17"):
            continue
        target_layer, target_sibling = layer(imported), sibling(imported)
        if imported == "iclr17" and own_layer == 1:
            wrong.append(f"{where}: a wrapper imports the package's re-exports (import the module itself)")
        elif target_layer is not None and target_layer > own_layer:
            wrong.append(f"{where}: layer {own_layer} imports layer {target_layer}")
        elif own_sibling and target_sibling and target_sibling != own_sibling:
            wrong.append(f"{where}: {own_sibling} never imports {target_sibling}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(FILES))
def test_no_private_lightning_or_torch_api(name):
    lines = FILES[name].read_text().splitlines()
    hits = [
        f"{FILES[name].relative_to(REPO_ROOT)}:{n}: {line.strip()}"
        for n, line in enumerate(lines, 1)
        if PRIVATE.search(line)
    ]
    assert not hits, "private API (use the public hooks, trainer.strategy, or an attribute of our own):\n" + "\n".join(
        hits
    )


def test_the_checks_catch_a_violation(tmp_path):
    """The walker sees relative and absolute imports, so the checks above can fail."""
    path = tmp_path / "callback.py"
    path.write_text("from ..modules import classifier\nfrom iclr17.studies import halting\nimport pytorch_lightning\n")
    found = {imported for _, imported in imports_of("iclr17.callbacks.callback", path)}
    assert {"iclr17.modules", "iclr17.modules.classifier", "iclr17.studies", "iclr17.studies.halting"} <= found
    assert sibling("iclr17.modules.classifier") == "iclr17.modules" and layer("iclr17.studies.halting") == 3
    assert PRIVATE.search("step = trainer.fit_loop.epoch_loop._batches_that_stepped")
    assert PRIVATE.search("from torch._utils import _flatten_dense_tensors")
    assert not PRIVATE.search("self.trainer.strategy.reduce(x)")
