"""The top-level folders install as iclr17.modules / .datamodules / .callbacks / .configs, editable and wheel."""

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGE_SOURCES = [
    "pyproject.toml",
    "README.md",
    "iclr17",
    "functional",
    "modules",
    "datamodules",
    "callbacks",
    "studies",
    "configs",
]


def test_editable_install_maps_top_level_folders():
    for package, folder in [
        (f"iclr17.{name}", name) for name in ("functional", "modules", "datamodules", "callbacks", "studies")
    ]:
        origin = Path(importlib.util.find_spec(package).origin)
        assert origin == REPO_ROOT / folder / "__init__.py"


@pytest.mark.timeout(300)
def test_built_wheel_imports_and_runs_a_shipped_config(tmp_path):
    source = tmp_path / "source"  # build from a copy: setuptools writes build/ and *.egg-info into the tree
    source.mkdir()
    for name in PACKAGE_SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO_ROOT / name, source / name)
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"), "."]
    subprocess.run(build, cwd=source, check=True, capture_output=True, timeout=240)
    (wheel,) = (tmp_path / "dist").glob("iclr17-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for required in ["iclr17/modules/classifier.py", "iclr17/datamodules/mnist.py", "iclr17/callbacks/__init__.py"]:
        assert required in names
    assert "iclr17/configs/classifier/mnistfc.yaml" in names and "iclr17/py.typed" in names
    assert not any(name.startswith(("tests/", "modules/", "benchmarks/")) for name in names)

    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=120)
    run = subprocess.run(
        [sys.executable, "-c", "import iclr17.modules, iclr17.datamodules, iclr17.callbacks; print(iclr17.__file__)"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.strip().startswith(str(site))
    fit = [sys.executable, "-m", "iclr17", "fit", "--config", "classifier/gaussian_mixture.yaml"]
    run = subprocess.run(
        [*fit, "--trainer.fast_dev_run=true"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "WANDB_MODE": "disabled", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]


def test_every_subpackage_is_listed_in_pyproject():
    import tomllib

    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folder_of = {package: folder for package, folder in config["package-dir"].items()}
    expected = set()
    for package, folder in folder_of.items():
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO_ROOT / folder).parts
            expected.add(".".join((package, *relative)))
    assert expected == set(config["packages"]), "add new sub-packages to [tool.setuptools] packages"


def test_importing_the_package_does_not_import_the_text_data_stack():
    code = "import sys, iclr17; print(sorted(m for m in ('datasets', 'pyarrow') if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
