"""iclr17: PyTorch Lightning reimplementations of the five ICLR 2017 papers co-authored by Yann LeCun.

Everything public is importable from here::

    from iclr17 import Classifier, MNISTFC, MNISTDataModule
"""

from iclr17.callbacks import *  # noqa: F403
from iclr17.callbacks import __all__ as _callbacks
from iclr17.datamodules import *  # noqa: F403
from iclr17.datamodules import __all__ as _datamodules
from iclr17.modules import *  # noqa: F403
from iclr17.modules import __all__ as _modules
from iclr17.wandb_logger import OfflineFirstWandbLogger

__version__ = "0.1.0"
__all__ = [*_modules, *_datamodules, *_callbacks, "OfflineFirstWandbLogger"]
