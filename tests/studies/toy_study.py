"""A study for the runner's tests: run ``x`` squares its seed (and records the source commit it sees, as a resumed
fit's segments do), or fails the way it is told to."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from iclr17.studies.ledger import digest
from iclr17.studies.runner import Outcome, Run, Study, source_commit


class ToyStudy(Study):
    """Square seeds (a study for tests).

    Args:
        seeds: one run per seed.
        marks: folder where each execution leaves a file named by its seed (to count executions).
        raise_on: the seed whose run raises.
        die_on: the seed whose worker process exits with code 3 at once.
        kill_group_on: the seed whose run kills its whole process group (the study's process too).
        sleep: seconds each run sleeps.
        report_modules: record the package's modules already imported when the run starts.
    """

    default_name = "toy"

    def __init__(
        self,
        seeds: list[int] | None = None,
        marks: str | None = None,
        raise_on: int | None = None,
        die_on: int | None = None,
        kill_group_on: int | None = None,
        sleep: float = 0.0,
        report_modules: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.seeds, self.marks, self.sleep = seeds or [1, 2], marks, sleep
        self.raise_on, self.die_on, self.kill_group_on = raise_on, die_on, kill_group_on
        self.report_modules = report_modules

    def planned(self) -> list[Run]:
        return [Run("toy", digest("toy"), (f"--x={s}",), s, {"x": s}) for s in self.seeds]

    def execute(self, run: Run, out_dir: Path) -> Outcome:
        imported = sorted(name for name in sys.modules if name.partition(".")[0] == "iclr17")
        if self.marks is not None:
            (Path(self.marks) / f"{run.seed}-{time.monotonic_ns()}").touch()
        if run.seed == self.raise_on:
            raise RuntimeError(f"seed {run.seed} raises")
        if run.seed == self.die_on:
            os._exit(3)
        if run.seed == self.kill_group_on:
            os.killpg(os.getpgid(0), signal.SIGKILL)
        time.sleep(self.sleep)
        metrics = {"square": run.seed**2, "source": list(source_commit())}
        if self.report_modules:
            metrics["imported"] = imported
        return Outcome("finished", run.seed, self.sleep, metrics)

    def markdown(self, rows: list[dict[str, Any]]) -> str:
        return "\n".join(f"{r['seed']}: {r['metrics'].get('square')}" for r in rows if r["status"] == "finished")
