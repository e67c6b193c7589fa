"""RESULTS.md's and README.md's tables: regenerated between their markers from the ledgers, prose untouched, bad
markers named."""

from __future__ import annotations

import difflib
import inspect
import re

import pytest

from iclr17.studies import catalog, ledger, results_tables
from iclr17.studies.catalog import RESULTS_TABLES
from iclr17.studies.ledger import append
from iclr17.studies.results_tables import BLOCK, StaleTables, main, regenerate
from tests.conftest import REPO_ROOT
from tests.studies.test_ledger import _row

TABLES = {
    "squares": ("toy", lambda rows: "| seed |\n|---|\n" + "".join(f"| {r['seed']} |\n" for r in rows)),
    "count": ("toy", lambda rows: f"{len(rows)} runs, seeds {'+'.join(str(r['seed']) for r in rows)}\n"),
}


def test_marked_tables_are_rewritten_from_their_ledger_and_prose_is_kept(tmp_path):
    for seed in (3, 4):
        append(tmp_path / "toy.jsonl", _row(seed))
    text = "# Title\nprose | with a pipe\n<!-- table: squares -->\n| stale |\n<!-- /table -->\nmore prose\n"
    fresh = regenerate(text, TABLES, tmp_path)
    table = "| seed |\n|---|\n| 3 |\n| 4 |\n"
    assert fresh == f"# Title\nprose | with a pipe\n<!-- table: squares -->\n{table}<!-- /table -->\nmore prose\n"
    assert regenerate(fresh, TABLES, tmp_path) == fresh


def test_an_unknown_table_or_an_unclosed_marker_is_named_by_line(tmp_path):
    with pytest.raises(KeyError, match=r"R.md:2: unknown table 'cubes' \(known: count, squares\)"):
        regenerate("x\n<!-- table: cubes -->\n<!-- /table -->\n", TABLES, tmp_path, source="R.md")
    with pytest.raises(ValueError, match=r"R.md:3: table 'squares' has no closing"):
        regenerate("x\n\n<!-- table: squares -->\n| a |\n", TABLES, tmp_path, source="R.md")


def test_an_inline_table_is_rewritten_within_its_line(tmp_path):
    for seed in (3, 4):
        append(tmp_path / "toy.jsonl", _row(seed))
    text = "| paper | ours: <!-- table: count -->1 run<!-- /table --> (so far) |\n"
    text += "So far <!-- table: count --><!-- /table -->, or <!-- table: count -->3<!-- /table -->.\n"
    fresh = regenerate(text, TABLES, tmp_path)  # the renderer's trailing newline is not the line's
    assert fresh == (
        "| paper | ours: <!-- table: count -->2 runs, seeds 3+4<!-- /table --> (so far) |\n"
        "So far <!-- table: count -->2 runs, seeds 3+4<!-- /table -->, or <!-- table: count -->2 runs, seeds 3+4"
        "<!-- /table -->.\n"
    )
    assert regenerate(fresh, TABLES, tmp_path) == fresh


def test_an_inline_table_must_close_on_its_line_and_render_one_line(tmp_path):
    append(tmp_path / "toy.jsonl", _row(3))
    with pytest.raises(ValueError, match=r"R.md:2: table 'count' has no closing"):
        regenerate("x\nsee <!-- table: count -->1 run\n<!-- /table -->\n", TABLES, tmp_path, source="R.md")
    with pytest.raises(ValueError, match=r"R.md:2: inline table 'squares' renders 3 lines, not one"):
        regenerate("x\nsee <!-- table: squares -->| 3 |<!-- /table -->\n", TABLES, tmp_path, source="R.md")


def test_main_rewrites_every_file_or_names_each_stale_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(catalog, "RESULTS_TABLES", TABLES)
    append(tmp_path / "toy.jsonl", _row(3))
    results, readme = tmp_path / "R.md", tmp_path / "README.md"
    fresh_results = "<!-- table: squares -->\n| seed |\n|---|\n| 3 |\n<!-- /table -->\n"
    results.write_text(fresh_results)
    readme.write_text("ours: <!-- table: count -->0 runs<!-- /table -->\n")  # stale
    files = (str(results), str(readme))
    with pytest.raises(StaleTables, match=r"^\S*README.md: tables differ"):
        main(files, ledger_dir=str(tmp_path), check=True)
    assert readme.read_text() == "ours: <!-- table: count -->0 runs<!-- /table -->\n"  # --check changes nothing
    results.write_text("<!-- table: squares -->\n<!-- /table -->\n")  # stale too: both named
    with pytest.raises(StaleTables, match=r"R.md, \S*README.md: tables differ"):
        main(files, ledger_dir=str(tmp_path), check=True)
    main(files, ledger_dir=str(tmp_path))
    assert results.read_text() == fresh_results
    assert readme.read_text() == "ours: <!-- table: count -->1 runs, seeds 3<!-- /table -->\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R.md", "README.md", "toy.jsonl"]  # no .partial left
    main(files, ledger_dir=str(tmp_path), check=True)
    assert "README.md: 1 table, matching the ledgers" in capsys.readouterr().out


def test_main_writes_nothing_when_a_later_file_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "RESULTS_TABLES", TABLES)
    append(tmp_path / "toy.jsonl", _row(3))
    results, readme = tmp_path / "R.md", tmp_path / "README.md"
    results.write_text("<!-- table: squares -->\n<!-- /table -->\n")  # stale
    readme.write_text("x <!-- table: squares --><!-- /table -->\n")  # three lines in one: an error
    with pytest.raises(ValueError, match="README.md:1: inline table 'squares'"):
        main((str(results), str(readme)), ledger_dir=str(tmp_path))
    assert results.read_text() == "<!-- table: squares -->\n<!-- /table -->\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R.md", "README.md", "toy.jsonl"]


def test_main_reads_each_ledger_once_for_every_file(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "RESULTS_TABLES", TABLES)
    append(tmp_path / "toy.jsonl", _row(3))
    reads = []
    monkeypatch.setattr(results_tables, "read", lambda path: reads.append(path) or ledger.read(path))
    files = [tmp_path / name for name in ("R.md", "README.md")]
    for path in files:
        path.write_text("<!-- table: squares -->\n<!-- /table -->\nso far <!-- table: count --><!-- /table -->\n")
    main(tuple(map(str, files)), ledger_dir=str(tmp_path))
    assert reads == [tmp_path / "toy.jsonl"]
    assert all("1 runs, seeds 3" in path.read_text() and "| 3 |" in path.read_text() for path in files)


def test_a_table_of_several_ledgers_gets_their_rows_one_ledger_after_the_other(tmp_path, monkeypatch):
    append(tmp_path / "toy.jsonl", _row(3))
    append(tmp_path / "more.jsonl", _row(5))
    append(tmp_path / "more.jsonl", _row(6))
    tables = TABLES | {"both": (("more", "toy"), TABLES["count"][1])}
    reads = []
    monkeypatch.setattr(results_tables, "read", lambda path: reads.append(path.name) or ledger.read(path))
    text = "<!-- table: both --><!-- /table --> and <!-- table: count --><!-- /table -->\n"
    fresh = regenerate(text, tables, tmp_path)
    assert fresh == "<!-- table: both -->3 runs, seeds 5+6+3<!-- /table --> and <!-- table: count -->1 runs, seeds 3" \
        "<!-- /table -->\n"  # fmt: skip
    assert reads == ["more.jsonl", "toy.jsonl"]  # each once


def test_only_the_named_tables_are_rewritten(tmp_path):
    append(tmp_path / "toy.jsonl", _row(3))
    text = "<!-- table: squares -->\n| stale |\n<!-- /table -->\n"
    assert regenerate(text, TABLES, tmp_path, only=[]) == text
    assert "| 3 |" in regenerate(text, TABLES, tmp_path, only=["squares"])


SLOW_TABLES = {  # minutes of permutation tests
    "halting-spin-glass", "halting-cg", "halting-mlp", "halting-cg-n500", "halting-mlp-paper", "halting-qr",
    "halting-convnet-paper", "halting-spin-glass-summary.n64-eps1", "halting-mlp-paper-summary", "halting-qr-summary",
    "halting-cg-summary", "halting-cg-summary.eps1e-8-and-1e-10", "halting-spin-glass-pairs.n32-eps1",
}  # fmt: skip


MARKED_FILES = inspect.signature(main).parameters["files"].default  # what `iclr17 results` rewrites


def _marked_names() -> set[str]:
    """The table names marked in the files `iclr17 results` rewrites."""
    return {
        name
        for path in MARKED_FILES
        for name in re.findall(r"<!-- table: ([\w.-]+) -->", (REPO_ROOT / path).read_text())
    }


def _committed_tables_match(names: set[str]) -> None:
    assert names <= _marked_names(), f"not marked in {MARKED_FILES}: {sorted(names - _marked_names())}"
    for path in MARKED_FILES:
        text = (REPO_ROOT / path).read_text()
        fresh = regenerate(text, RESULTS_TABLES, REPO_ROOT / "results" / "ledgers", source=path, only=names)
        stale = [line for line in difflib.unified_diff(text.splitlines(), fresh.splitlines(), lineterm="", n=0)]
        assert fresh == text, f"{path} differs from its ledgers; run `iclr17 results`:\n" + "\n".join(stale[:40])


def test_every_committed_table_is_marked_and_matches_its_ledger():
    """RESULTS.md holds no table outside the markers, every table of the catalogue is marked in RESULTS.md or the
    README, and each marked table is what its ledger gives."""
    text = (REPO_ROOT / "RESULTS.md").read_text()
    outside = re.sub(r"<!-- table: [\w.-]+ -->\n.*?<!-- /table -->", "", text, flags=re.S)
    assert not re.search(r"^\|.*\|\s*$", outside, re.M), "a table in RESULTS.md that no ledger regenerates"
    assert _marked_names() == set(RESULTS_TABLES)
    _committed_tables_match(set(RESULTS_TABLES) - SLOW_TABLES)


# Inline summaries that state numbers no block table of their ledgers shows: name (or name prefix) -> which numbers
DERIVED_IN_SUMMARY = {
    "entnet-babi10k-all-tasks-summary": "the mean and the failures over the tasks of two studies",
    "entnet-babi10k-task.": "each seed's test error (the block table shows their mean and std)",
    "benchmark-entnet-speed-summary": "the speed-up over autograd, a ratio of two rows",
    "halting-spin-glass-pairs.": "each pair's two-sample p (the block table shows their minimum)",
}


def _stems(stems: str | tuple[str, ...]) -> set[str]:
    return {stems} if isinstance(stems, str) else set(stems)


def test_every_number_of_an_inline_summary_is_in_a_block_table_of_its_ledger():
    """A summary restates its block tables (the committed ones, which the tests above keep fresh): each decimal it
    prints appears in a block table drawn from the same ledger, unless it is one of DERIVED_IN_SUMMARY's."""
    inline, blocks = {}, {}
    for path in MARKED_FILES:
        for match in BLOCK.finditer((REPO_ROOT / path).read_text()):
            body = match.group("body")
            (blocks if body.startswith("\n") else inline)[match.group("name")] = body
    checked = 0
    for name, body in inline.items():
        if any(name.startswith(prefix) for prefix in DERIVED_IN_SUMMARY):
            continue
        stems = _stems(RESULTS_TABLES[name][0])
        tables = "\n".join(b for other, b in blocks.items() if _stems(RESULTS_TABLES[other][0]) & stems)
        missing = [
            n for n in re.findall(r"\d+\.\d+", body) if not re.search(rf"(?<![\d.]){re.escape(n)}(?!\d)", tables)
        ]
        assert not missing, f"{name}: {missing} in no block table of {sorted(stems)}"
        checked += 1
    assert checked >= 20


@pytest.mark.slow
def test_the_halting_tables_match_their_ledgers():
    _committed_tables_match(SLOW_TABLES)
