"""Halting-time reference systems (Sagun, Trogdon, LeCun): the p-spin spherical spin glass, conjugate gradient
on Wishart systems and vmapped MLP ensembles, each K runs in one tensor program; ``study`` runs the ensembles
and writes the statistics and figures."""

from .spin_glass import SpinGlass, SpinGlassDataModule

__all__ = ["SpinGlass", "SpinGlassDataModule"]
