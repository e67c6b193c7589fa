"""Callbacks that attach to any LightningModule (HessianSpectrum, HaltingTime, image logging)."""

__all__: list[str] = []
