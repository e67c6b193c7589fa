"""The Ladder Network (Rasmus et al., arXiv:1507.02672): the network and its semi-supervised LightningModule."""

from .module import Ladder
from .nets import LadderNetwork

__all__ = ["Ladder", "LadderNetwork"]
