"""EBGAN (Zhao, Mathieu, LeCun, ICLR 2017): the module, its networks, math and metrics."""

from .metrics import MnistFeatures, MNISTScore
from .module import EBGAN
from .nets import (
    ConvDiscriminator,
    DCGANGenerator,
    MnistDiscriminator,
    MnistGenerator,
    MnistScoreNet,
    NoiseGenerator128,
)

__all__ = [
    "EBGAN",
    "MNISTScore",
    "MnistFeatures",
    "MnistGenerator",
    "MnistDiscriminator",
    "DCGANGenerator",
    "ConvDiscriminator",
    "NoiseGenerator128",
    "MnistScoreNet",
]
