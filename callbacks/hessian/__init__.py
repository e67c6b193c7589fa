"""HessianSpectrum: the "Singularity of the Hessian" measurements for any model (Sagun, Bottou, LeCun)."""

from .callback import HessianSpectrum

__all__ = ["HessianSpectrum"]
