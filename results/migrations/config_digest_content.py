"""One-off migration: the ledgers' ``config_digest`` of a YAML fit config, from the digest of its text (bytes) to
the digest of its content (``iclr17.studies.ledger.config_file_digest``), so that editing a config's comments
(e.g. its ``Measured:`` header line) no longer makes its finished runs look missing.

    .venv/bin/python results/migrations/config_digest_content.py      # from the repository root, no study running

Runs after the other migrations (which wrote text digests). For every row whose ``config`` is a YAML file, every
version of that file in git history is a candidate: a row's old digest must be the text digest of exactly one
content (or, for a FitStudy with evaluations, the digest of that text digest and the evaluations of some version
of a study config in ``configs/studies``), and becomes the same digest of that content. A row already migrated
is kept. A digest that matches nothing is an error naming the ledger and line: nothing is written then. Rerunning it
changes only rows appended since with text digests (by a wheel of the code before this change): it is idempotent. Each
ledger is rewritten whole through a temporary file and ``os.replace``; everything but ``config_digest`` is kept,
byte for byte.

Texts that differ only in comments now share a digest, with one exception: the rows whose digest is in
``iclr17.studies.world_model.ONES_MASK_CONFIGS`` keep their text digest. They ran with EntNet's story position
mask starting at ones, the code's default before issue 15 (f10e798); that commit changed the default and only a
comment of ``configs/entnet/world_model.yaml``, so its content digest would call them runs of today's config
(``N(0, 0.1)``): the study would skip those runs, and the world-model table tells the masks apart by that digest.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path

import yaml

from iclr17.studies.ledger import config_text_digest, digest
from iclr17.studies.world_model import ONES_MASK_CONFIGS

ROOT = Path(__file__).resolve().parents[2]
LEDGERS = ROOT / "results" / "ledgers"


def git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=True).stdout


@cache
def versions(path: str) -> tuple[bytes, ...]:
    """Every committed text of ``path`` (repository-relative), oldest commits last, duplicates once."""
    texts: dict[bytes, None] = {}
    for commit in git("log", "--all", "--format=%H", "--", path).decode().split():
        try:
            texts[git("show", f"{commit}:{path}")] = None
        except subprocess.CalledProcessError:  # the commit deleted it
            continue
    return tuple(texts)


@cache
def evaluation_specs() -> tuple[str, ...]:
    """The ``evaluations`` of every committed version of every study config, as FitStudy digests them."""
    paths = set(git("log", "--all", "--format=", "--name-only", "--", "configs/studies").decode().split())
    specs = set()
    for path in sorted(paths):
        for text in versions(path):
            config = yaml.safe_load(text)
            if isinstance(config, dict) and config.get("evaluations"):
                specs.add(json.dumps(config["evaluations"], sort_keys=True))
    return tuple(sorted(specs))


@cache
def digest_map(config: str) -> tuple[dict[str, str], set[str]]:
    """``(old text digest -> content digest, the content digests)`` of a row's ``config`` over its history."""
    path = "configs/" + config.removeprefix("configs/")
    old_to_new: dict[str, set[str]] = {}
    new: set[str] = set()
    for text in versions(path):
        old, now = digest(text), config_text_digest(text)
        pairs = [(old, now)] + [(digest(old + spec), digest(now + spec)) for spec in evaluation_specs()]
        for before, after in pairs:
            old_to_new.setdefault(before, set()).add(after)
            new.add(after)
    ambiguous = {k: v for k, v in old_to_new.items() if len(v) > 1}
    if ambiguous:
        raise AssertionError(f"{path}: text digests with more than one content digest: {ambiguous}")
    return {k: next(iter(v)) for k, v in old_to_new.items()}, new


def migrated(path: Path) -> tuple[str, int]:
    """The ledger's text with every YAML config's digest migrated, and how many rows changed."""
    lines, changed = [], 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        row = json.loads(line)
        if row["config"].endswith(".yaml") and row["config_digest"] not in ONES_MASK_CONFIGS:
            old_to_new, new = digest_map(row["config"])
            old = row["config_digest"]
            if old in old_to_new:
                line = line.replace(f'"config_digest": "{old}"', f'"config_digest": "{old_to_new[old]}"', 1)
                changed += 1
            elif old not in new:
                raise AssertionError(f"{path}:{number}: {old} is no committed version of {row['config']}")
            if json.loads(line) != row | {"config_digest": old_to_new.get(old, old)}:
                raise AssertionError(f"{path}:{number}: the rewrite changed more than config_digest")
        lines.append(line)
    return "".join(f"{line}\n" for line in lines), changed


def main() -> None:
    results = {path: migrated(path) for path in sorted(LEDGERS.glob("*.jsonl"))}  # every check before any write
    for path, (text, changed) in results.items():
        if changed:
            temporary = path.with_suffix(".jsonl.tmp")
            temporary.write_text(text)
            os.replace(temporary, path)
        print(f"{path.relative_to(ROOT)}: {changed} row(s) migrated")


if __name__ == "__main__":
    main()
