"""Callbacks that attach to any LightningModule (HessianSpectrum, HaltingTime, image logging)."""

from .halting_time import HaltingTime
from .hessian import HessianSpectrum
from .image_grids import ImageGrids

__all__ = ["HessianSpectrum", "HaltingTime", "ImageGrids"]
