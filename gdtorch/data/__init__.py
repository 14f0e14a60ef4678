"""Cat/not-cat data: built-in procedural images, CIFAR-10 and photo folders, and their loaders.

``CatDataModule`` serves any of the three sources for batch, stochastic or mini-batch gradient
descent (the tutorial's section 6), from tensors in memory through ``TensorBatchLoader``.
"""

from gdtorch.data.base import CatImageDataset
from gdtorch.data.cifar import CIFAR10Cats
from gdtorch.data.datamodule import MODES, SOURCES, CatDataModule
from gdtorch.data.folder import ImageFolderCats, image_files, load_image
from gdtorch.data.loader import TensorBatchLoader, Updates, first_update
from gdtorch.data.synthetic import SyntheticCats

__all__ = [
    "MODES",
    "SOURCES",
    "CIFAR10Cats",
    "CatDataModule",
    "CatImageDataset",
    "ImageFolderCats",
    "SyntheticCats",
    "TensorBatchLoader",
    "Updates",
    "first_update",
    "image_files",
    "load_image",
]
