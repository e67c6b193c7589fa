"""Recurrent Entity Networks (Henaff, Weston, Szlam, Bordes, LeCun; ICLR 2017)."""

from .cbt import EntNetCBT
from .module import EntNet

__all__ = ["EntNet", "EntNetCBT"]
