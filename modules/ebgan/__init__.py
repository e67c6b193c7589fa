"""EBGAN (Zhao, Mathieu, LeCun, ICLR 2017): the module, its networks, math and metrics."""

from .ladder import EBGANLadder
from .metrics import MNISTFeatures, MNISTScore
from .module import EBGAN
from .nets import (
    ConvDiscriminator,
    DCGANGenerator,
    MNISTDiscriminator,
    MNISTGenerator,
    MNISTScoreNet,
    NoiseGenerator128,
)

__all__ = [
    "EBGAN",
    "EBGANLadder",
    "MNISTScore",
    "MNISTFeatures",
    "MNISTGenerator",
    "MNISTDiscriminator",
    "DCGANGenerator",
    "ConvDiscriminator",
    "NoiseGenerator128",
    "MNISTScoreNet",
]
