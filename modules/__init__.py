"""LightningModules (one per paper, plus the shared Classifier) and the networks they train."""

from .classifier import Classifier
from .nets import MLP, AllCNN, LeNet, MnistFC

__all__ = ["Classifier", "MLP", "MnistFC", "LeNet", "AllCNN"]
