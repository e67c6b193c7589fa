"""Write small bAbI v1.2 files in the exact release format under ``<root>/babi/tasks_1-20_v1-2/<subset>/``.

    python -m tests.data OUT_DIR --only babi

Stories are generated like task 1 ("single supporting fact"): people move between places, and a question
asks where someone is; the answer is the last place they moved to. Lines are ``<id> <text>``, questions
``<id> <question>? <TAB><answer><TAB><supporting id>`` with the release's space before the first TAB.
"""

from __future__ import annotations

import random
from pathlib import Path

PEOPLE = ["Mary", "John", "Sandra", "Daniel"]
PLACES = ["bathroom", "hallway", "garden", "office", "kitchen", "bedroom"]
VERBS = ["moved to", "went to", "journeyed to", "travelled to"]


def story_lines(rng: random.Random, n_questions: int) -> list[str]:
    lines, where, last_line = [], {}, {}
    line_id = 0
    for _ in range(n_questions):
        for _ in range(2):
            person, place = rng.choice(PEOPLE), rng.choice(PLACES)
            line_id += 1
            lines.append(f"{line_id} {person} {rng.choice(VERBS)} the {place}.")
            where[person], last_line[person] = place, line_id
        person = rng.choice(sorted(where))
        line_id += 1
        lines.append(f"{line_id} Where is {person}? \t{where[person]}\t{last_line[person]}")
    return lines


def write_babi_file(path: Path, n_stories: int, seed: int, questions_per_story: int = 5) -> int:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [line for _ in range(n_stories) for line in story_lines(rng, questions_per_story)]
    path.write_text("\n".join(lines) + "\n")
    return n_stories * questions_per_story


def write_babi(root: str | Path, tasks: tuple[int, ...] = (1, 2), n_train_stories: int = 40) -> Path:
    """Write train and test files of the given task numbers for both ``en`` and ``en-10k``."""
    from iclr17.datamodules.babi_format import babi_path

    for subset in ("en", "en-10k"):
        for task in tasks:
            write_babi_file(babi_path(root, task, "train", subset), n_train_stories, seed=task)
            write_babi_file(babi_path(root, task, "test", subset), n_train_stories // 4, seed=100 + task)
    return Path(root) / "babi"
