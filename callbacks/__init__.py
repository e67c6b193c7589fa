"""Callbacks that attach to any LightningModule (HessianSpectrum, HaltingTime, image logging)."""

from .hessian import HessianSpectrum

__all__ = ["HessianSpectrum"]
