"""RESULTS.md's tables: regenerated between their markers from the ledgers, prose untouched, bad markers named."""

from __future__ import annotations

import pytest

from iclr17.studies.ledger import append
from iclr17.studies.results_tables import regenerate
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
