"""Entropy-SGD (Chaudhari et al., ICLR 2017): the optimizer and its Lightning training."""

from .optim import EntropySGD
from .training import EntropyClassifier, EntropyLanguageModel, EntropySGDTraining, split_minibatches

__all__ = ["EntropySGD", "EntropyClassifier", "EntropyLanguageModel", "EntropySGDTraining", "split_minibatches"]
