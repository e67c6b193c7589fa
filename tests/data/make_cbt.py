"""Write small Children's Book Test files in the exact release format under ``<root>/cbt/CBTest/data/``.

    python -m tests.data OUT_DIR --only cbt

Each example: lines ``1`` to ``20`` of tokenised context, then
``21 <query with XXXXX><TAB><answer><TAB><TAB><c1>|...|<c10>`` and a blank line. The answer is the name
mentioned most recently in the context, so the task is learnable.
"""

from __future__ import annotations

import random
from pathlib import Path

NAMES = ["Tom", "Alice", "Rabbit", "Queen", "King", "Hatter", "Mouse", "Duck", "Dodo", "Lory", "Bill", "Cat"]
FILLER = ["the", "a", "said", "went", "to", "very", "little", "and", "was", "then", "garden", "door", ",", "."]


def example_lines(rng: random.Random) -> list[str]:
    candidates = rng.sample(NAMES, 10)
    lines = []
    for number in range(1, 21):
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 9))]
        words.insert(rng.randint(0, len(words)), rng.choice(candidates))
        lines.append(f"{number} {' '.join(words)}")
    last = [w for line in lines for w in line.split()[1:] if w in candidates][-1]
    query = " ".join([*(rng.choice(FILLER) for _ in range(3)), "XXXXX", *(rng.choice(FILLER) for _ in range(3))])
    lines.append(f"21 {query}\t{last}\t\t{'|'.join(candidates)}")
    return lines


def write_cbt_file(path: Path, n_examples: int, seed: int) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\n".join(example_lines(rng)) + "\n\n" for _ in range(n_examples)))


def write_cbt(root: str | Path, word_types: tuple[str, ...] = ("NE", "CN"), n_train: int = 60) -> Path:
    from iclr17.datamodules.cbt import cbt_path

    for word_type in word_types:
        for split, n, seed in (("train", n_train, 1), ("val", n_train // 4, 2), ("test", n_train // 4, 3)):
            write_cbt_file(cbt_path(root, word_type, split), n, seed)
    return Path(root) / "cbt"
