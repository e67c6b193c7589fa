"""Docstrings and config headers point only inside the repository: a user who installed iclr17 can follow every
reference. Papers are cited by arXiv id, section and equation; our own choices by ``docs/papers/<paper>.md``."""

import re

import pytest

from tests.conftest import REPO_ROOT

PACKAGE_DIRS = ("iclr17", "functional", "modules", "datamodules", "callbacks", "studies", "configs", "benchmarks")
OUTSIDE = re.compile(r"shared/papers|\.\./shared|spec section|\bspec \d|\[mem\b")
DOCS_PAGE = re.compile(r"docs/papers/([\w-]+)\.md")


def package_files() -> list[str]:
    files = (
        path
        for folder in PACKAGE_DIRS
        for pattern in ("*.py", "*.yaml")
        for path in (REPO_ROOT / folder).rglob(pattern)
    )
    return sorted(str(path.relative_to(REPO_ROOT)) for path in files)


def test_the_package_has_files_to_check():
    assert len(package_files()) > 50


@pytest.mark.parametrize("name", package_files())
def test_no_reference_points_outside_the_repository(name):
    lines = (REPO_ROOT / name).read_text().splitlines()
    hits = [f"{name}:{number}: {line.strip()}" for number, line in enumerate(lines, 1) if OUTSIDE.search(line)]
    assert not hits, "cite the paper (arXiv id, section, equation) or docs/papers/<paper>.md instead:\n" + "\n".join(
        hits
    )


def test_every_cited_docs_page_exists():
    cited = {(name, page) for name in package_files() for page in DOCS_PAGE.findall((REPO_ROOT / name).read_text())}
    assert cited, "no docs/papers page is cited: the pattern or the package layout changed"
    missing = sorted(
        f"{name} cites docs/papers/{page}.md"
        for name, page in cited
        if not (REPO_ROOT / "docs/papers" / f"{page}.md").is_file()
    )
    assert not missing, "\n".join(missing)
