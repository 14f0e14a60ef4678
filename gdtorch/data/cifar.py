"""``CIFAR10Cats``: CIFAR-10 as cat (class ``"cat"``, index 3) versus the nine other classes."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import ClassVar

import torch
from torchvision.datasets import CIFAR10

from gdtorch.data.base import CatImageDataset, balanced_indices, resize_images

__all__ = ["CIFAR10Cats"]


class _CIFAR10Files(CIFAR10):
    """torchvision's CIFAR-10 reader, checking that its files exist rather than their md5.

    torchvision compares every file with the md5 of the official release, so only a
    byte-identical copy loads. Without the md5s (``check_integrity(path, None)`` only tests
    that the file exists) a copy in the same format also loads — a re-pickled or cut-down set,
    such as the small fake the tests write — while a corrupt file still fails when it is
    unpickled. A download still checks the md5 of the archive.
    """

    train_list: ClassVar[list[list[str | None]]] = [[n, None] for n, _ in CIFAR10.train_list]
    test_list: ClassVar[list[list[str | None]]] = [[n, None] for n, _ in CIFAR10.test_list]
    meta: ClassVar[dict[str, str | None]] = {**CIFAR10.meta, "md5": None}


class CIFAR10Cats(CatImageDataset):
    """CIFAR-10 relabelled cat (1.0) versus not cat (0.0), held in memory as tensors.

    Reads the python version of CIFAR-10 from ``root/cifar-10-batches-py`` (``data_batch_1`` to
    ``data_batch_5``, ``test_batch``, ``batches.meta``), as ``torchvision.datasets.CIFAR10``
    does, and downloads it there first only when ``download=True``.

    Args:
        root: folder that holds (or will hold) ``cifar-10-batches-py``.
        train: the 50,000 training images if ``True``, else the 10,000 test images.
        image_size: resize the 32×32 images to this side; ``None`` keeps 32.
        balance: keep every cat and as many other images, drawn by ``seed`` (5,000 + 5,000 of
            the training set), instead of the natural 1 cat in 10.
        seed: seed of the balancing draw.
        download: download and extract CIFAR-10 (about 170 MB) into ``root`` if it is missing.

    Raises:
        FileNotFoundError: a file is missing and ``download`` is ``False``.
        ValueError: a file cannot be read as a CIFAR-10 batch, or there is no ``"cat"`` class.
    """

    def __init__(
        self,
        root: str | Path,
        train: bool = True,
        image_size: int | None = None,
        balance: bool = False,
        seed: int = 0,
        download: bool = False,
    ) -> None:
        folder = Path(root).expanduser() / _CIFAR10Files.base_folder
        if not download:
            _require_files(folder)
        try:
            files = _CIFAR10Files(str(Path(root).expanduser()), train=train, download=download)
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as err:
            raise ValueError(
                f"cannot read CIFAR-10 from {folder} ({type(err).__name__}: {err}). Delete the "
                f"folder and download it again with download=True (data.download=true)."
            ) from err
        if "cat" not in files.class_to_idx:
            raise ValueError(
                f"{folder / _CIFAR10Files.meta['filename']} lists no 'cat' class "
                f"(classes: {files.classes}); it is not CIFAR-10."
            )
        images = torch.from_numpy(files.data).permute(0, 3, 1, 2).contiguous()
        targets = (torch.tensor(files.targets) == files.class_to_idx["cat"]).float()
        if balance:
            keep = balanced_indices(targets, torch.Generator().manual_seed(seed))
            images, targets = images[keep], targets[keep]
        images = images.float().div_(255)
        if image_size is not None:
            images = resize_images(images, image_size)
        super().__init__(images, targets)
        self.train = train


def _require_files(folder: Path) -> None:
    """Raise ``FileNotFoundError``, naming the fix, unless every CIFAR-10 file is in ``folder``."""
    names = [n for n, _ in _CIFAR10Files.train_list + _CIFAR10Files.test_list]
    names.append(_CIFAR10Files.meta["filename"])
    if not folder.is_dir():
        problem = "does not exist"
    else:
        missing = [n for n in names if not (folder / n).is_file()]
        if not missing:
            return
        problem = f"lacks {', '.join(missing)}"
    raise FileNotFoundError(
        f"CIFAR-10 not found: {folder} {problem}. Download it with download=True "
        f"(data.download=true in the Hydra config), or put the python version of CIFAR-10 "
        f"there: {folder}/{{{','.join(names)}}}."
    )
