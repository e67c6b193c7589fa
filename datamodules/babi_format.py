"""Parser for the bAbI v1.2 text format (Weston et al. 2015), written here because Hugging Face's
``facebook/babi_qa`` is a loading script that ``datasets`` >= 4 can no longer run.

Format: one line per sentence, ``<id> <text>``; ids restart at 1 with each story. A question line is
``<id> <question>?<TAB><answer><TAB><supporting ids>`` (the release has a space before the first TAB).
Each question becomes one example: every statement of its story before the question, the question, and the
answer as one token (task 8's ``apple,milk`` and task 19's ``s,w`` stay single tokens).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .storage import DataFormatError

BABI_TASKS = {
    1: "single-supporting-fact",
    2: "two-supporting-facts",
    3: "three-supporting-facts",
    4: "two-arg-relations",
    5: "three-arg-relations",
    6: "yes-no-questions",
    7: "counting",
    8: "lists-sets",
    9: "simple-negation",
    10: "indefinite-knowledge",
    11: "basic-coreference",
    12: "conjunction",
    13: "compound-coreference",
    14: "time-reasoning",
    15: "basic-deduction",
    16: "basic-induction",
    17: "positional-reasoning",
    18: "size-reasoning",
    19: "path-finding",
    20: "agents-motivations",
}

_LINE = re.compile(r"^(\d+) (.*)$")


@dataclass(frozen=True)
class BabiExample:
    """One question: the statements before it (oldest first), the question tokens, the answer token, the ids
    of its supporting lines, and which story of the file (0, 1, ...) it belongs to."""

    story: tuple[tuple[str, ...], ...]
    query: tuple[str, ...]
    answer: str
    supporting: tuple[int, ...]
    story_index: int


def tokenize(text: str) -> tuple[str, ...]:
    """Lower-case, drop one trailing ``.`` or ``?``, split on white space (the official ``data.lua`` rule)."""
    return tuple(text.strip().lower().rstrip(".?").split())


def babi_path(root: str | os.PathLike, task: int, split: str, subset: str) -> Path:
    """``<root>/babi/tasks_1-20_v1-2/<subset>/qa<task>_<name>_<split>.txt``."""
    if task not in BABI_TASKS:
        raise ValueError(f"bAbI task must be 1-20, got {task}")
    return Path(root) / "babi" / "tasks_1-20_v1-2" / subset / f"qa{task}_{BABI_TASKS[task]}_{split}.txt"


def numbered_lines(path: str | os.PathLike) -> Iterator[tuple[str, int, str]]:
    """``(where, number, text)`` for every non-blank ``<number> <text>`` line of a bAbI or CBT file, where
    ``where`` is ``file:line`` for error messages.

    Raises:
        DataFormatError: for a line that does not start with a number and a space.
    """
    with open(path, encoding="utf-8") as f:
        for line_no, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            match = _LINE.match(line)
            if match is None:
                raise DataFormatError(f"{path}:{line_no}: expected '<number> <text>', got {line[:60]!r}")
            yield f"{path}:{line_no}", int(match.group(1)), match.group(2)


def parse_babi(path: str | os.PathLike) -> list[BabiExample]:
    """Parse one bAbI file into examples, in file order.

    Raises:
        DataFormatError: naming the file and line for a malformed id, an id out of sequence, a question with
            no TAB-separated answer, or a question with no statement before it (an empty story).
    """
    examples: list[BabiExample] = []
    story: list[tuple[str, ...]] = []
    previous_id, story_index = 0, -1
    for where, line_id, text in numbered_lines(path):
        if line_id == 1:
            story, story_index = [], story_index + 1
        elif line_id != previous_id + 1:
            raise DataFormatError(f"{where}: id {line_id} does not follow id {previous_id}")
        previous_id = line_id
        if "\t" not in text:
            if "?" in text:
                raise DataFormatError(f"{where}: question without a TAB-separated answer: {text!r}")
            story.append(tokenize(text))
            continue
        question, answer, *rest = text.split("\t")
        if not answer.strip():
            raise DataFormatError(f"{where}: the answer after the TAB is missing: {text!r}")
        if not story:
            raise DataFormatError(f"{where}: question with an empty story (no statement before it)")
        try:
            supporting = tuple(int(i) for i in rest[0].split()) if rest else ()
        except ValueError as err:
            raise DataFormatError(f"{where}: supporting ids must be integers, got {rest[0]!r}") from err
        example = BabiExample(tuple(story), tokenize(question), answer.strip().lower(), supporting, story_index)
        examples.append(example)
    return examples
