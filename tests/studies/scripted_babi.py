"""A bAbI study for the protocol tests: its runs return scripted outcomes instead of training (arXiv:1612.03969
section 5.2's protocol, run through the real runner)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iclr17.studies.babi_table import BabiStudy
from iclr17.studies.ledger import read
from iclr17.studies.runner import Outcome, Run


class ScriptedBabiStudy(BabiStudy):
    """``script[(task, seed)] = (status, final validation error, test error)``; a run missing from the script
    raises (a failed row). Each run records the seeds of its task that had finished before it started.

    Args:
        script: the outcome of each (task, seed).
        **kwargs: :class:`~iclr17.studies.babi_table.BabiStudy`'s arguments.
    """

    def __init__(self, script: dict[tuple[int, int], tuple[str, float, float]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.script = script

    def execute(self, run: Run, out_dir: Path) -> Outcome:
        status, val, test = self.script[(run.params["task"], run.seed)]
        ledger = read(self.ledger)
        earlier = sorted(r["seed"] for r in ledger if r["params"] == run.params and r["status"] == "finished")
        epochs = 200 if status == "finished" else 60
        metrics = {"val/error": val, "test/error": test, "epochs": epochs, "finished_before": earlier}
        return Outcome(status, 281 * epochs, 2.0, metrics)
