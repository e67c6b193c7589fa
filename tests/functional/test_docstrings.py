"""Every public function and class of ``iclr17.functional`` says where its math comes from: the arXiv id of the paper
and the place in it (equation, section, algorithm, table, figure, the abstract/introduction when that is all we
have, or the authors' code file that settles what the text leaves out), or, for a tool from elsewhere, a named
reference (authors and year, or the scipy function). A docstring that calls something "ours" points to the
``docs/papers/<paper>.md`` page that explains the choice. Each module has its reference tests next to it, in
``tests/functional/test_<module>.py``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types
from pathlib import Path

import pytest

import iclr17.functional

ARXIV = re.compile(r"arXiv:(\d{4}\.\d{4,5})")
PAPERS = {  # the five ICLR 2017 papers and the follow-up cited for the Hessian width sweep
    "1609.03126": "EBGAN",
    "1612.03969": "Recurrent Entity Networks",
    "1611.07476": "Eigenvalues of the Hessian",
    "1706.04454": "Empirical analysis of the Hessian (follow-up)",
    "1611.01838": "Entropy-SGD",
    "1511.06444": "Universal halting times",
}
TOOLS = {
    "2010.09649": "Hutch++",
    "1302.4389": "Maxout networks",
    "1406.2661": "Generative adversarial nets",
    "1507.02672": "Ladder networks (inside EBGAN-LN)",
}
NAMED = re.compile(  # "Hutchinson 1989", "Ubaru, Chen & Saad 2017", "Goodfellow et al. 2014", "scipy.stats.bootstrap"
    r"\b[A-Z][A-Za-z-]+(?:(?:, | & | and )[A-Z][A-Za-z-]+)*(?: et al\.)?,? (?:19|20)\d\d\b|\bscipy\.stats\.\w+"
)
PLACE = re.compile(  # in the paper, or the authors' code file that settles what the text leaves out
    r"\b(?:eqs? \d|section \d|Algorithm \d|Table \d|Fig\. \d|App\. [A-Z]|abstract|introduction)|\w+\.(?:lua|py)\b"
)
OURS = re.compile(r"\bours\b", re.IGNORECASE)
DOCS_PAGE = re.compile(r"docs/papers/[\w-]+\.md")
TESTS = Path(__file__).resolve().parent


def citation_problems(name: str, doc: str | None) -> list[str]:
    """What is missing from one docstring; empty when it cites properly."""
    if not doc or not doc.strip():
        return [f"{name}: no docstring"]
    problems = []
    ids = ARXIV.findall(doc)
    unknown = sorted(set(ids) - PAPERS.keys() - TOOLS.keys())
    if unknown:
        problems.append(f"{name}: arXiv id(s) {unknown} are not among the papers and tools we implement (a typo?)")
    if not ids and not NAMED.search(doc):
        problems.append(f"{name}: cites neither an arXiv id nor a named reference (authors and year, scipy.stats)")
    if set(ids) & PAPERS.keys() and not PLACE.search(doc):
        problems.append(f"{name}: cites a paper but no place in it (eq, section, Algorithm, Table, Fig., abstract)")
    if OURS.search(doc) and not DOCS_PAGE.search(doc):
        problems.append(f"{name}: calls a choice ours but links no docs/papers/<paper>.md page")
    return problems


def public_objects(module: types.ModuleType) -> list[tuple[str, object]]:
    """Functions and classes defined in ``module`` (not imported into it) whose names do not start with ``_``."""
    return [
        (name, obj)
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
    ]


def module_problems(module: types.ModuleType) -> list[str]:
    """Every citation problem of a module: its own docstring (an arXiv id needed) and each public object's.
    ``__doc__`` is read directly: ``inspect.getdoc`` would lend a class its base class's docstring."""
    problems = [] if ARXIV.search(module.__doc__ or "") else [f"{module.__name__}: module docstring has no arXiv id"]
    for name, obj in public_objects(module):
        problems += citation_problems(f"{module.__name__}.{name}", obj.__doc__)
    return problems


def functional_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(iclr17.functional.__path__, "iclr17.functional."))


def test_the_functional_layer_has_modules_and_objects_to_check():
    names = functional_modules()
    assert {"iclr17.functional.ebgan", "iclr17.functional.hessian", "iclr17.functional.halting"} <= set(names)
    assert sum(len(public_objects(importlib.import_module(n))) for n in names) >= 40


@pytest.mark.parametrize("name", functional_modules())
def test_every_public_function_and_class_cites_its_source(name):
    module = importlib.import_module(name)
    assert public_objects(module), f"{name} defines no public function or class"
    problems = module_problems(module)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", functional_modules())
def test_every_functional_module_has_its_reference_tests_next_to_it(name):
    short = name.rpartition(".")[2]
    path = TESTS / f"test_{short}.py"
    assert path.is_file(), f"{name} has no reference tests in tests/functional/test_{short}.py"
    assert f"iclr17.functional.{short} import" in path.read_text(), f"{path.name} does not import {name}"


_SYNTHETIC_DOCSTRINGS = {  # function name -> its docstring (None: none) in a module that cites badly
    "undocumented": None,
    "vague": "Adds one, as everybody knows.",
    "typo": "Eq 3 of arXiv:1609.0312.",
    "unknown_paper": "Eq 3 of arXiv:2401.00001.",
    "nowhere": "The energy of arXiv:1609.03126.",
    "unexplained": "The margin hinge (arXiv:1609.03126 section 2.1, eq 1) with a schedule that is ours.",
    "good": "The margin hinge (arXiv:1609.03126 section 2.1, eq 1); the schedule is ours (docs/papers/ebgan.md).",
    "tool": "Hutchinson's trace estimate (Hutchinson 1989).",
    "tool_from_scipy": "A percentile interval (``scipy.stats.bootstrap``).",
    "_private": None,
}


def _function_source(name: str, doc: str | None) -> str:
    body = f'"""{doc}"""' if doc else "pass"
    return f"def {name}(x):\n    {body}\n"


_SYNTHETIC = "\n".join(
    [
        '"""A module citing nothing."""',
        "from math import sqrt  # imported, not defined here: not checked",
        "class Bare:\n    pass",
        "class Inheriting(ValueError):\n    pass",
        *(_function_source(name, doc) for name, doc in _SYNTHETIC_DOCSTRINGS.items()),
    ]
)


def _synthetic_module() -> types.ModuleType:
    module = types.ModuleType("iclr17_synthetic_citations")
    exec(compile(_SYNTHETIC, "<synthetic>", "exec"), module.__dict__)  # a fixed, local source
    return module


def test_the_check_fails_on_a_module_that_cites_badly():
    problems = module_problems(_synthetic_module())
    flagged = {p.split(":")[0].rpartition(".")[2] for p in problems}
    assert flagged == {
        "iclr17_synthetic_citations",  # the module docstring
        "undocumented",
        "vague",
        "typo",
        "unknown_paper",
        "nowhere",
        "unexplained",
        "Bare",
        "Inheriting",  # ValueError's docstring is not its own
    }, "\n".join(problems)
    assert any("typo" in p and "1609.0312" in p for p in problems)
    assert any("nowhere" in p and "no place" in p for p in problems)
    assert any("unexplained" in p and "docs/papers" in p for p in problems)


@pytest.mark.parametrize(
    "doc",
    [
        "Spectral density by stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017).",
        "The non-saturating loss (Goodfellow et al. 2014, arXiv:1406.2661, section 3).",
        "Two-sample KS distance (``scipy.stats.ks_2samp``).",
        "tau = (T - mean T) / std T (arXiv:1511.06444, introduction).",
    ],
)
def test_named_references_and_places_are_recognised(doc):
    assert citation_problems("f", doc) == []
