"""The examples in the package's docstrings run and print what they say."""

import doctest
import importlib
import pkgutil

import iclr17


def _package_modules() -> list[str]:
    names = []
    for package in (
        "iclr17",
        "iclr17.functional",
        "iclr17.modules",
        "iclr17.datamodules",
        "iclr17.callbacks",
        "iclr17.studies",
    ):
        path = importlib.import_module(package).__path__
        names += [package] + [m.name for m in pkgutil.walk_packages(path, prefix=f"{package}.")]
    return sorted(set(names) - {"iclr17.__main__", "iclr17.demo"})  # entry points that run on import


def test_every_docstring_example_in_the_package_passes():
    attempted = 0
    for name in _package_modules():
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
        assert result.failed == 0, f"{name}: {result.failed} docstring example(s) failed (see the output above)"
        attempted += result.attempted
    assert attempted >= 3, "the docstring examples were not found"  # MNISTScore's example has three lines
    assert iclr17.__version__
