"""Timing shared by the side-by-side benchmarks: the sides run in turn, each call timed on the wall clock, and
the medians are reported. Imported by the scripts next to it (``python benchmarks/<script>.py``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def alternate(sides: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each call of each side: ``repeats`` rounds, every side once per round, in the given order (so
    a machine's drift falls on all sides alike)."""
    times: dict[str, list[float]] = {label: [] for label in sides}
    for _ in range(repeats):
        for label, side in sides.items():
            start = time.perf_counter()
            side()
            times[label].append(time.perf_counter() - start)
    return times


def print_medians(times: dict[str, list[float]]) -> dict[str, float]:
    """Print each side's median and runs, aligned; return the medians."""
    width = max(len(label) for label in times) + 1
    medians = {label: statistics.median(runs) for label, runs in times.items()}
    for label, runs in times.items():
        print(f"{label + ':':<{width}} median {medians[label]:.2f} s   runs {[round(t, 2) for t in runs]}")
    return medians
