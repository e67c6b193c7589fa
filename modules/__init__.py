"""LightningModules (one per paper, plus the shared Classifier) and the networks they train."""

from .classifier import Classifier
from .ebgan import (
    EBGAN,
    ConvDiscriminator,
    DCGANGenerator,
    EBGANLadder,
    MNISTDiscriminator,
    MNISTGenerator,
    NoiseGenerator128,
)
from .entnet import EntNet, EntNetCBT
from .entropy_sgd import EntropyClassifier, EntropyLanguageModel, EntropySGD, EntropySGDTraining
from .ladder import Ladder
from .language_model import LanguageModel
from .nets import MLP, MNISTFC, AllCNN, LeNet
from .spin_glass import SpinGlass

__all__ = [
    "Classifier",
    "EBGAN",
    "MNISTGenerator",
    "MNISTDiscriminator",
    "DCGANGenerator",
    "ConvDiscriminator",
    "NoiseGenerator128",
    "EBGANLadder",
    "Ladder",
    "EntNet",
    "EntNetCBT",
    "EntropySGD",
    "EntropyClassifier",
    "EntropyLanguageModel",
    "EntropySGDTraining",
    "SpinGlass",
    "LanguageModel",
    "MLP",
    "MNISTFC",
    "LeNet",
    "AllCNN",
]
