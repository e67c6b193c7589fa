"""HaltingTime: halting times and their universal fluctuations (Sagun, Trogdon, LeCun) for any run."""

from .callback import HaltingTime

__all__ = ["HaltingTime"]
