"""Regenerate RESULTS.md's and README.md's tables from the ledgers: ``iclr17 results`` (``--check``: fail if any
is stale).

A table sits between ``<!-- table: NAME -->`` and ``<!-- /table -->``; NAME is a key of
``iclr17.studies.catalog.RESULTS_TABLES``, which names the ledger the table is drawn from (or several, whose rows it
gets one ledger after the other; each row names its ``study``) and its renderer (a pure function of the rows). A
block table has its markers on lines of their own; an inline one (a summary in a sentence or a table cell) has both
markers and its one-line text on one line. Everything outside the markers is hand-written prose and is left as it
is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from iclr17.studies.ledger import read

# A block (the opening marker ends its line) or inline (the closing marker on the opening one's line).
BLOCK = re.compile(
    r"(?P<open><!-- table: (?P<name>[\w.-]+) -->)(?P<body>\n.*?|[^\n]*?)(?P<close><!-- /table -->)", re.S
)


class StaleTables(Exception):
    """A file's tables differ from what their ledgers give."""


def regenerate(
    text: str,
    tables: Mapping[str, tuple],
    ledger_dir: str | Path,
    source: str = "RESULTS.md",
    only: Collection[str] | None = None,
    ledgers: dict[str, list[dict[str, Any]]] | None = None,
) -> str:
    """``text`` with every marked table (of those named in ``only``, if given) replaced by its renderer's output
    over its ledger's rows (:func:`ledger_rows`, sharing ``ledgers`` when given, so that several files share the
    reads and see the same rows).

    An unknown table name, an opening marker without its closing one, or an inline table whose renderer gives more
    than one line, is an error naming ``source`` and line.
    """
    opened = [m for m in re.finditer(r"<!-- table: ([\w.-]+) -->", text)]
    closed = {m.start() for m in BLOCK.finditer(text)}
    for marker in opened:
        line = text.count("\n", 0, marker.start()) + 1
        if marker.group(1) not in tables:
            known = ", ".join(sorted(tables))
            raise KeyError(f"{source}:{line}: unknown table {marker.group(1)!r} (known: {known})")
        if marker.start() not in closed:
            raise ValueError(f"{source}:{line}: table {marker.group(1)!r} has no closing <!-- /table -->")

    ledgers = {} if ledgers is None else ledgers

    def render(match: re.Match) -> str:
        if only is not None and match.group("name") not in only:
            return match.group(0)
        name = match.group("name")
        stems, renderer = tables[name]
        body = renderer(ledger_rows(stems, ledger_dir, ledgers)).rstrip("\n")
        if match.group("body").startswith("\n"):
            return f"{match.group('open')}\n{body}\n{match.group('close')}"
        if "\n" in body:
            line = text.count("\n", 0, match.start()) + 1
            raise ValueError(f"{source}:{line}: inline table {name!r} renders {body.count(chr(10)) + 1} lines, not one")
        return match.group("open") + body + match.group("close")

    return BLOCK.sub(render, text)


def ledger_rows(
    stems: str | tuple[str, ...], ledger_dir: str | Path, ledgers: dict[str, list[dict[str, Any]]] | None = None
) -> list[dict[str, Any]]:
    """The rows of the ledger ``<ledger_dir>/<stem>.jsonl``, or of several one ledger after the other; each file
    read once into ``ledgers`` (by path) when given."""
    ledgers = {} if ledgers is None else ledgers
    rows = []
    for stem in (stems,) if isinstance(stems, str) else stems:
        path = Path(ledger_dir) / f"{stem}.jsonl"
        if str(path) not in ledgers:
            ledgers[str(path)] = read(path)
        rows += ledgers[str(path)]
    return rows


def main(
    files: tuple[str, ...] = ("RESULTS.md", "README.md"), ledger_dir: str = "results/ledgers", check: bool = False
) -> None:
    """Rewrite the marked tables of ``files`` from the ledgers (or, with ``check``, fail naming every file that
    differs).

    Args:
        files: the markdown files whose marked tables are regenerated (``--files '[README.md]'`` for one).
        ledger_dir: folder of the ledgers.
        check: change nothing; exit with an error if a table is stale.
    """
    from iclr17.studies.catalog import RESULTS_TABLES

    texts = {path: Path(path).read_text() for path in files}
    ledgers: dict[str, list[dict[str, Any]]] = {}  # every file drawn from one read of each ledger
    fresh = {path: regenerate(text, RESULTS_TABLES, ledger_dir, path, ledgers=ledgers) for path, text in texts.items()}
    if check:
        stale = [path for path, text in texts.items() if fresh[path] != text]
        if stale:
            raise StaleTables(
                f"{', '.join(stale)}: tables differ from the ledgers in {ledger_dir}; run `iclr17 results`"
            )
        print("\n".join(f"{path}: {_tables(text)}, matching the ledgers" for path, text in texts.items()))
        return
    for path in files:  # every file rendered before any is written
        partial = Path(f"{path}.partial")
        partial.write_text(fresh[path])
        os.replace(partial, path)  # never a half-written file
        print(f"{path}: {_tables(fresh[path])} regenerated from {ledger_dir}")


def _tables(text: str) -> str:
    """``1 table`` or ``36 tables``: the marked tables of ``text``."""
    n = len(BLOCK.findall(text))
    return f"{n} table{'' if n == 1 else 's'}"
