"""RESULTS.md's tables: regenerated between their markers from the ledgers, prose untouched, bad markers named."""

from __future__ import annotations

import difflib
import re

import pytest

from iclr17.studies.catalog import RESULTS_TABLES
from iclr17.studies.ledger import append
from iclr17.studies.results_tables import regenerate
from tests.conftest import REPO_ROOT
from tests.studies.test_ledger import _row

TABLES = {"squares": ("toy", lambda rows: "| seed |\n|---|\n" + "".join(f"| {r['seed']} |\n" for r in rows))}


def test_marked_tables_are_rewritten_from_their_ledger_and_prose_is_kept(tmp_path):
    for seed in (3, 4):
        append(tmp_path / "toy.jsonl", _row(seed))
    text = "# Title\nprose | with a pipe\n<!-- table: squares -->\n| stale |\n<!-- /table -->\nmore prose\n"
    fresh = regenerate(text, TABLES, tmp_path)
    table = "| seed |\n|---|\n| 3 |\n| 4 |\n"
    assert fresh == f"# Title\nprose | with a pipe\n<!-- table: squares -->\n{table}<!-- /table -->\nmore prose\n"
    assert regenerate(fresh, TABLES, tmp_path) == fresh


def test_an_unknown_table_or_an_unclosed_marker_is_named_by_line(tmp_path):
    with pytest.raises(KeyError, match=r"R.md:2: unknown table 'cubes' \(known: squares\)"):
        regenerate("x\n<!-- table: cubes -->\n<!-- /table -->\n", TABLES, tmp_path, source="R.md")
    with pytest.raises(ValueError, match=r"R.md:3: table 'squares' has no closing"):
        regenerate("x\n\n<!-- table: squares -->\n| a |\n", TABLES, tmp_path, source="R.md")


def test_only_the_named_tables_are_rewritten(tmp_path):
    append(tmp_path / "toy.jsonl", _row(3))
    text = "<!-- table: squares -->\n| stale |\n<!-- /table -->\n"
    assert regenerate(text, TABLES, tmp_path, only=[]) == text
    assert "| 3 |" in regenerate(text, TABLES, tmp_path, only=["squares"])


SLOW_TABLES = {  # minutes of permutation tests
    "halting-spin-glass", "halting-cg", "halting-mlp", "halting-cg-n500", "halting-mlp-paper", "halting-qr",
    "halting-convnet-paper",
}  # fmt: skip


def _committed_tables_match(names) -> None:
    text = (REPO_ROOT / "RESULTS.md").read_text()
    marked = set(re.findall(r"<!-- table: ([\w.-]+) -->", text))
    assert names <= marked
    fresh = regenerate(text, RESULTS_TABLES, REPO_ROOT / "results" / "ledgers", only=names)
    stale = [line for line in difflib.unified_diff(text.splitlines(), fresh.splitlines(), lineterm="", n=0)]
    assert fresh == text, "RESULTS.md differs from its ledgers; run `iclr17 results`:\n" + "\n".join(stale[:40])


def test_every_committed_table_is_marked_and_matches_its_ledger():
    """RESULTS.md holds no table outside the markers, and each marked table is what its ledger gives."""
    text = (REPO_ROOT / "RESULTS.md").read_text()
    outside = re.sub(r"<!-- table: [\w.-]+ -->\n.*?<!-- /table -->", "", text, flags=re.S)
    assert not re.search(r"^\|.*\|\s*$", outside, re.M), "a table in RESULTS.md that no ledger regenerates"
    assert set(re.findall(r"<!-- table: ([\w.-]+) -->", text)) == set(RESULTS_TABLES)
    _committed_tables_match(set(RESULTS_TABLES) - SLOW_TABLES)


@pytest.mark.slow
def test_the_halting_tables_match_their_ledgers():
    _committed_tables_match(SLOW_TABLES)
