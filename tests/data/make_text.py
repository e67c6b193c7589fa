"""Write tiny language-model corpora in the exact on-disk formats of the real files.

    python -m tests.data OUT_DIR --only ptb war_and_peace

- ``<root>/ptb/ptb.{train,valid,test}.txt``: Mikolov's format, one sentence a line, words separated by single
  spaces with a leading and a trailing space, rare words as ``<unk>`` and numbers as ``N``. Every word appears on
  the first training line, so the vocabulary is exactly ``PTB_WORDS`` plus ``<eos>`` and valid/test have no
  out-of-vocabulary word.
- ``<root>/war_and_peace/warpeace_input.txt``: the char-rnn copy's format, UTF-8 with a BOM and CRLF line ends.
  Its last line holds ``ω``, which only the test piece of a 90/5/5 split contains (an unknown character).

The sentences come from a small seeded grammar, so a language model can learn them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUBJECTS = ["the cat", "a dog", "mr. <unk>", "the company", "prices"]
VERBS = ["sat on", "bought", "sold", "rose to", "saw"]
OBJECTS = ["the mat", "N shares", "a house", "the board", "<unk> inc."]
PTB_WORDS = sorted({w for phrase in SUBJECTS + VERBS + OBJECTS for w in phrase.split()} | {"and", "'s"})
FIXTURE_PTB_VOCAB_SIZE = len(PTB_WORDS) + 1  # + <eos>
FIXTURE_CHAR_VOCAB_SIZE = 40  # <unk> + the 39 distinct characters of the training piece (checked by a test)


def sentences(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        clauses = [" ".join(rng.choice(part) for part in (SUBJECTS, VERBS, OBJECTS)) for _ in range(rng.integers(1, 3))]
        out.append(" and ".join(clauses))
    return out


def write_ptb(root: str | Path, n_train: int = 200, n_valid: int = 40, n_test: int = 40, seed: int = 0) -> Path:
    """Write the three PTB files under ``root/ptb`` (``root`` is a data root) and return that folder."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "ptb"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        lines = ([" ".join(PTB_WORDS)] if name == "train" else []) + sentences(rng, n)
        (folder / f"ptb.{name}.txt").write_text("".join(f" {line} \n" for line in lines), encoding="utf-8")
    return folder


def write_war_and_peace(root: str | Path, n_lines: int = 150, seed: int = 0) -> Path:
    """Write ``root/war_and_peace/warpeace_input.txt`` (BOM, CRLF) and return its path."""
    rng = np.random.default_rng(seed)
    lines = ['"Well, Prince, so Genoa and Lucca are now just family estates; café!"']
    lines += [sentence.capitalize() + "." for sentence in sentences(rng, n_lines)]
    lines += ["The end (ω)."]
    path = Path(root) / "war_and_peace" / "warpeace_input.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    return path
