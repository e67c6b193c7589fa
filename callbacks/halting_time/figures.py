"""The halting-time paper's figure: tau histograms per ensemble over the N(0, 1) and standardised Gumbel
densities, and QQ plots against both laws (matplotlib only; imported when a figure is drawn)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from iclr17.functional.halting import GumbelSide, standardized_gumbel

BIN_WIDTH = 0.36  # the authors' duration_plot.py (leventsagun/decision-time-universality)


def halting_figure(
    panels: Mapping[str, Mapping[str, np.ndarray]], title: str = "", gumbel_side: GumbelSide = "right"
) -> plt.Figure:
    """One row per panel (e.g. per eps), each: histogram of every ensemble's tau (bin width 0.36) with the
    N(0, 1) and standardised Gumbel densities, then QQ plots of each ensemble's tau against N(0, 1) and
    against the Gumbel."""
    laws = {"N(0, 1)": stats.norm(), "Gumbel": standardized_gumbel(gumbel_side)}
    fig, axes = plt.subplots(len(panels), 3, figsize=(13, 3.6 * len(panels)), squeeze=False)
    grid = np.linspace(-4, 6, 400)
    for row, (label, taus) in zip(axes, panels.items(), strict=True):
        low = min(t.min() for t in taus.values())
        high = max(t.max() for t in taus.values())
        bins = np.arange(np.floor(low / BIN_WIDTH) * BIN_WIDTH, high + BIN_WIDTH, BIN_WIDTH)
        for name, tau in taus.items():
            row[0].hist(tau, bins=bins, density=True, histtype="step", linewidth=1.4, label=f"{name} ({len(tau)})")
        for (law_name, law), style in zip(laws.items(), ("k--", "k-"), strict=True):
            row[0].plot(grid, law.pdf(grid), style, linewidth=1, label=law_name)
        span = (min(-4.0, low - 0.5), max(6.0, high + 0.5))  # heavy right tails (small eps) stay in view
        row[0].set(xlim=span, xlabel="tau", ylabel="density", title=f"{title} {label}".strip())
        row[0].legend(fontsize=7)
        for ax, (law_name, law) in zip(row[1:], laws.items(), strict=True):
            for name, tau in taus.items():
                probabilities = (np.arange(1, len(tau) + 1) - 0.5) / len(tau)
                ax.plot(law.ppf(probabilities), np.sort(tau), ".", markersize=2, label=name)
            ax.plot(span, span, "k:", linewidth=1)
            ax.set(xlim=(-4, 6), ylim=span, xlabel=f"{law_name} quantile", ylabel="tau quantile")
            ax.set_title(f"QQ against {law_name}")
    fig.tight_layout()
    return fig
