"""One LightningDataModule per dataset, and the data plumbing they share (``storage``)."""

from .babi import BabiDataModule
from .cbt import CBTDataModule
from .cifar10 import CIFAR10DataModule
from .gaussian_mixture import GaussianMixtureDataModule
from .images import CelebADataModule, ImageFolderDataModule, LSUNDataModule
from .language_model import CharTextDataModule, PTBDataModule
from .mnist import MNISTDataModule
from .semi_supervised_mnist import SemiSupervisedMNISTDataModule
from .spin_glass import SpinGlassDataModule
from .world_model import WorldModelDataModule

__all__ = [
    "CelebADataModule",
    "LSUNDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "SemiSupervisedMNISTDataModule",
    "GaussianMixtureDataModule",
    "BabiDataModule",
    "WorldModelDataModule",
    "CBTDataModule",
    "CIFAR10DataModule",
    "PTBDataModule",
    "CharTextDataModule",
    "SpinGlassDataModule",
]
