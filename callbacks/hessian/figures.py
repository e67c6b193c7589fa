"""The paper's pictures of a Hessian spectrum: ordered eigenvalues and a log-count histogram (exact and Lanczos
records), or the log-density curve (SLQ records)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed
import matplotlib.pyplot as plt
import numpy as np


def spectrum_figure(record: dict[str, Any]) -> plt.Figure:
    """One figure for one record of ``HessianSpectrum.history``."""
    title = f"{record['when']} (step {record['step']}, {record['method']}, {record['n_params']} parameters)"
    if record["density"] is not None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        grid, density = record["density"]["grid"].numpy(), record["density"]["density"].numpy()
        ax.semilogy(grid, np.maximum(density, 1e-12))
        ax.set(xlabel="eigenvalue", ylabel="density (log)", title=title)
    else:
        values = np.sort(record["eigenvalues"].numpy())[::-1]
        fig, (ordered, histogram) = plt.subplots(1, 2, figsize=(10, 3.5))
        ordered.plot(np.arange(1, len(values) + 1), values, ".", markersize=3)
        ordered.set(xlabel="order", ylabel="eigenvalue", title=title)
        histogram.hist(values, bins=min(100, max(10, len(values) // 5)), log=True)
        histogram.set(xlabel="eigenvalue", ylabel="count (log)")
    fig.tight_layout()
    return fig
