"""One LightningDataModule per dataset, and the data plumbing they share (``storage``)."""

from .babi import BabiDataModule
from .cbt import CBTDataModule
from .gaussian_mixture import GaussianMixtureDataModule
from .mnist import MNISTDataModule
from .world_model import WorldModelDataModule

__all__ = ["MNISTDataModule", "GaussianMixtureDataModule", "BabiDataModule", "WorldModelDataModule", "CBTDataModule"]
