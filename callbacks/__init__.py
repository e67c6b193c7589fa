"""Callbacks that attach to any LightningModule (HessianSpectrum, HaltingTime, BatchNormStatistics, image logging).

They measure a module through its side-effect-free ``loss(batch)`` (or a ``loss_fn(module, batch)`` given to them)
and share one helper module, ``measurement.py``: that contract, a measurement mode that restores train flags and
the RNG, reductions through ``trainer.strategy``, their own logging step, and media sent to the attached loggers.
"""

from .batchnorm_statistics import BatchNormStatistics
from .halting_time import HaltingTime
from .hessian import HessianSpectrum
from .image_grids import ImageGrids

__all__ = ["HessianSpectrum", "HaltingTime", "BatchNormStatistics", "ImageGrids"]
