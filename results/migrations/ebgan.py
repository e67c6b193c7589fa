"""One-off: the reduced EBGAN Table 1 grid's runs.csv files (arXiv:1609.03126 section 4.1) -> a ledger.

    .venv/bin/python results/migrations/ebgan.py        # from the repository root; rewrites the ledger

Reads ``results/ebgan/grid/runs.csv`` (one epoch cut at 200 batches, I' on 2,000 samples) and
``results/ebgan/grid_1epoch/runs.csv`` (one full epoch, I' on 10,000 samples) from git at 978148c and writes
``results/ledgers/ebgan_grid_reduced.jsonl``, one row per run, with the run keys that
``configs/studies/ebgan_grid_reduced.yaml`` and ``ebgan_grid_reduced_1epoch.yaml`` plan, so the study sees them as
done. The runs were made by the old driver (``python -m iclr17.studies.ebgan_grid``) on the tree committed as
606ebf7 (RESULTS.md, section "EBGAN"; results/ebgan/README.md: the working tree on top of 681893e, committed as
606ebf7, which also added the files). Their budgets were batch counts, not time caps: every row is ``finished``.
The CSVs do not record optimizer steps (``steps`` is null); their ``seconds`` (``fit_seconds`` here) timed the
fit, the I' scoring and the sample grid together.
"""

from __future__ import annotations

import csv
import io
import subprocess
from dataclasses import asdict
from pathlib import Path

from iclr17.studies.ebgan_grid import BUDGET_KEYS, CONFIG, GridPoint, budget_digest
from iclr17.studies.ledger import append, read

SOURCE = "978148c"
RUN_COMMIT = "606ebf7"
LEDGER = Path("results/ledgers/ebgan_grid_reduced.jsonl")
MACHINE = "dev (2 shared x86-64 cores, no GPU, load average 5-9 from other jobs), the grid's runs one at a time"
AXES = (
    "--n-layer-g 2 3 --n-layer-d 2 3 --size-g 400 --size-d 128 256 --dropout-d 0 --pt-weight 0 0.1 "
    "--gan-optim adam --gan-lr 0.01 0.001"
)
PREFIX = "ICLR17_DATA_DIR=/work/shared/data python -m iclr17.studies.ebgan_grid"
SOURCES = {  # raw file -> (budget, command from results/ebgan/README.md at 978148c, "<same axes>" written out)
    "results/ebgan/grid/runs.csv": (
        {"epochs": 1, "limit_batches": 200, "score_samples": 2000, "val_size": 10_000},
        f"{PREFIX} --out results/ebgan/grid {AXES} --limit-batches 200 --score-samples 2000"
        "  # budget: one epoch cut at 200 batches of 64 (no time cap), I' on 2,000 samples",
    ),
    "results/ebgan/grid_1epoch/runs.csv": (
        {"epochs": 1, "limit_batches": None, "score_samples": 10_000, "val_size": 10_000},
        f"{PREFIX} --out results/ebgan/grid_1epoch {AXES} --epochs 1 --score-samples 10000"
        "  # budget: one full epoch of 50,000 images, batch 64 (no time cap), I' on 10,000 samples",
    ),
}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def point_of(record: dict[str, str]) -> GridPoint:
    """The grid point of a runs.csv row (every value was written with ``str``)."""
    return GridPoint(
        record["model"], int(record["n_layer_g"]), int(record["n_layer_d"]), int(record["size_g"]),
        int(record["size_d"]), {"True": True, "False": False}[record["dropout_d"]], record["optim_d"],
        record["optim_g"], float(record["lr"]), float(record["pt_weight"]),
    )  # fmt: skip


def main() -> None:
    commit = git("rev-parse", RUN_COMMIT).strip()
    LEDGER.unlink(missing_ok=True)
    for path, (budget, command) in SOURCES.items():
        assert set(budget) == set(BUDGET_KEYS)
        for record in csv.DictReader(io.StringIO(git("show", f"{SOURCE}:{path}"))):
            point = point_of(record)
            append(LEDGER, {
                "study": "ebgan_grid_reduced", "config": CONFIG, "config_digest": budget_digest(budget),
                "params": asdict(point) | budget, "overrides": list(point.overrides), "seed": int(record["seed"]),
                "commit": commit, "dirty": False, "machine": MACHINE, "command": command, "status": "finished",
                "steps": None, "fit_seconds": float(record["seconds"]), "metrics": {"score": float(record["score"])},
            })  # fmt: skip
    print(f"{LEDGER}: {len(read(LEDGER))} rows")


if __name__ == "__main__":
    main()
