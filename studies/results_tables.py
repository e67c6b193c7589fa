"""Regenerate RESULTS.md's tables from the ledgers: ``iclr17 results`` (``--check``: fail if any is stale).

A table in RESULTS.md sits between ``<!-- table: NAME -->`` and ``<!-- /table -->``; NAME is a key of
``iclr17.studies.catalog.RESULTS_TABLES``, which names the ledger the table is drawn from and its renderer (a pure
function of the ledger's rows). Everything outside the markers is hand-written prose and is left as it is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path

from iclr17.studies.ledger import read

BLOCK = re.compile(r"(<!-- table: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


class StaleTables(Exception):
    """RESULTS.md's tables differ from what their ledgers give."""


def regenerate(
    text: str,
    tables: Mapping[str, tuple],
    ledger_dir: str | Path,
    source: str = "RESULTS.md",
    only: Collection[str] | None = None,
) -> str:
    """``text`` with every marked table (of those named in ``only``, if given) replaced by its renderer's output
    over its ledger's rows.

    An unknown table name, or an opening marker without its closing one, is an error naming ``source`` and line.
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

    def render(match: re.Match) -> str:
        if only is not None and match.group("name") not in only:
            return match.group(0)
        stem, renderer = tables[match.group("name")]
        body = renderer(read(Path(ledger_dir) / f"{stem}.jsonl")).rstrip("\n") + "\n"
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(render, text)


def main(path: str = "RESULTS.md", ledger_dir: str = "results/ledgers", check: bool = False) -> None:
    """Rewrite the tables of ``path`` from the ledgers (or, with ``check``, fail if any differs).

    Args:
        path: the markdown file whose marked tables are regenerated.
        ledger_dir: folder of the ledgers.
        check: change nothing; exit with an error if a table is stale.
    """
    from iclr17.studies.catalog import RESULTS_TABLES

    text = Path(path).read_text()
    fresh = regenerate(text, RESULTS_TABLES, ledger_dir, source=path)
    if check:
        if fresh != text:
            raise StaleTables(f"{path}: tables differ from the ledgers in {ledger_dir}; run `iclr17 results`")
        print(f"{path}: {len(BLOCK.findall(text))} tables match the ledgers")
        return
    partial = Path(f"{path}.partial")
    partial.write_text(fresh)
    os.replace(partial, path)  # never a half-written RESULTS.md
    print(f"{path}: {len(BLOCK.findall(fresh))} tables regenerated from {ledger_dir}")
