"""Parser for the bAbI v1.2 text format (Weston et al. 2015, arXiv:1502.05698), written here because Hugging Face's
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
        DataFormatError: for a line that is not UTF-8 or does not start with a number and a space.
    """
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise DataFormatError(f"{path}:{line_no}: not UTF-8 text (byte {err.start}: {err.reason})") from None
            if not line.strip():
                continue
            match = _LINE.match(line)
            if match is None:
                raise DataFormatError(f"{path}:{line_no}: expected '<number> <text>', got {line[:60]!r}")
            yield f"{path}:{line_no}", int(match.group(1)), match.group(2)


def parse_babi(path: str | os.PathLike) -> list[BabiExample]:
    """Parse one bAbI file into examples, in file order.

    Every line of the v1.2 release (all 20 tasks, ``en`` and ``en-10k``) follows these rules, and any line
    that breaks one is an error: a line without a TAB is a statement and ends with ``.`` (no ``?``); a line
    with a TAB is a question of exactly three fields, ``<question>?``, a one-word answer and the ids of one
    or more earlier statements of its story. Ids start at 1 with each story and go up by one, and every story
    ends with a question. So a question that lost its TABs is refused, not read as a statement.

    Raises:
        DataFormatError: naming the file and line for any line that breaks the rules, and the file for one
            that holds no question.
    """
    examples: list[BabiExample] = []
    story: list[tuple[str, ...]] = []
    statement_ids: set[int] = set()
    previous_id, story_index, unasked = 0, -1, None  # unasked: where the statements after the last question start
    for where, line_id, text in numbered_lines(path):
        if line_id == 1:
            if unasked:
                raise DataFormatError(f"{unasked}: the story ends without a question after this statement")
            story, statement_ids, story_index = [], set(), story_index + 1
        elif previous_id == 0:
            raise DataFormatError(f"{where}: expected id 1 (the first line of a story), got {line_id}")
        elif line_id != previous_id + 1:
            raise DataFormatError(f"{where}: expected id {previous_id + 1} (or 1 to start a story), got {line_id}")
        previous_id = line_id
        if "\t" in text:
            examples.append(_question(where, text, story, statement_ids, story_index))
            unasked = None
            continue
        if not text.rstrip().endswith(".") or "?" in text:
            raise DataFormatError(
                f"{where}: expected a statement ending in '.' or a question line of 3 TAB-separated fields "
                f"(question, answer, supporting facts); got {text!r}"
            )
        story.append(tokenize(text))
        statement_ids.add(line_id)
        unasked = unasked or where
    if unasked:
        raise DataFormatError(f"{unasked}: the story ends without a question after this statement")
    if not examples:
        raise DataFormatError(f"{path}: the file holds no questions")
    return examples


def _question(
    where: str, text: str, story: list[tuple[str, ...]], statement_ids: set[int], story_index: int
) -> BabiExample:
    fields = text.split("\t")
    if len(fields) != 3:
        raise DataFormatError(
            f"{where}: a question line has 3 TAB-separated fields (question, answer, supporting facts); "
            f"got {len(fields)}: {text!r}"
        )
    question, answer, ids = fields
    if not question.rstrip().endswith("?"):
        raise DataFormatError(f"{where}: the question before the first TAB must end with '?', got {question!r}")
    if len(answer.split()) != 1:
        raise DataFormatError(
            f"{where}: expected a one-word answer after the first TAB (a list is one word, 'apple,milk'), "
            f"got {answer!r}"
        )
    if not story:
        raise DataFormatError(f"{where}: question with an empty story (no statement before it)")
    words = ids.split()
    if not words or not all(w.isdecimal() and int(w) in statement_ids for w in words):
        raise DataFormatError(
            f"{where}: expected the ids of earlier statements of this story after the second TAB, got {ids!r}"
        )
    supporting = tuple(int(w) for w in words)
    return BabiExample(tuple(story), tokenize(question), answer.strip().lower(), supporting, story_index)
