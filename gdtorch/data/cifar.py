"""``CIFAR10Cats``: CIFAR-10 as cat (class ``"cat"``, index 3) versus the nine other classes."""

from __future__ import annotations

import contextlib
import http.client
import pickle
import shutil
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import torch
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import download_and_extract_archive

from gdtorch.data.base import CatImageDataset, balanced_indices, resize_images

__all__ = ["CIFAR10Cats"]

# What a download without a (working) network raises: urllib wraps DNS and connection failures
# in URLError; a connection lost mid-transfer surfaces as ConnectionError, TimeoutError or
# http.client's IncompleteRead.
_NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException)


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


_FILES = [n for n, _ in _CIFAR10Files.train_list + _CIFAR10Files.test_list]
_FILES.append(_CIFAR10Files.meta["filename"])


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
        ConnectionError: ``download`` is ``True`` and the download failed (see :meth:`download`).
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
        root = Path(root).expanduser()
        folder = root / _CIFAR10Files.base_folder
        if download:
            self.download(root)
        _require_files(folder)
        try:
            files = _CIFAR10Files(str(root), train=train)
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

    @staticmethod
    def download(root: str | Path) -> None:
        """Download the python version of CIFAR-10 into ``root`` and extract it, unless it is there.

        The archive's md5 is checked. A failed download removes what it created (the archive,
        the extracted folder, or ``root`` and the parents it had to make), never what was there.

        Args:
            root: folder that will hold ``cifar-10-python.tar.gz`` and ``cifar-10-batches-py``.

        Raises:
            ConnectionError: the archive could not be fetched (no network, a lost connection, an
                HTTP error); the message names the URL and how to download it by hand.
        """
        root = Path(root).expanduser()
        folder = root / _CIFAR10Files.base_folder
        if _problem(folder) is None:
            return
        with _removed_on_failure(root, [root / CIFAR10.filename, folder]):
            try:
                download_and_extract_archive(
                    CIFAR10.url, str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5
                )
            except _NETWORK_ERRORS as err:
                raise ConnectionError(
                    f"cannot download CIFAR-10 from {CIFAR10.url} into {root} "
                    f"({type(err).__name__}: {err}). Rerun with a network connection, or download "
                    f"{CIFAR10.url} by hand, extract it into {root} (tar -xzf "
                    f"{CIFAR10.filename} -C {root}, which makes {folder}) and run with "
                    f"download=False (data.download=false)."
                ) from err


def _problem(folder: Path) -> str | None:
    """Why ``folder`` is no CIFAR-10 copy (``"does not exist"``, ``"lacks …"``), or ``None``."""
    if not folder.is_dir():
        return "does not exist"
    missing = [n for n in _FILES if not (folder / n).is_file()]
    return f"lacks {', '.join(missing)}" if missing else None


def _require_files(folder: Path) -> None:
    """Raise ``FileNotFoundError``, naming the fix, unless every CIFAR-10 file is in ``folder``."""
    problem = _problem(folder)
    if problem is not None:
        raise FileNotFoundError(
            f"CIFAR-10 not found: {folder} {problem}. Download it with download=True "
            f"(data.download=true in the Hydra config), or put the python version of CIFAR-10 "
            f"there: {folder}/{{{','.join(_FILES)}}}."
        )


@contextlib.contextmanager
def _removed_on_failure(root: Path, paths: list[Path]) -> Iterator[None]:
    """Undo a failed download into ``root``: on an exception, remove what it made, and re-raise.

    That is ``root`` and the parents it lacked if it did not exist, else those of ``paths`` that
    did not exist: never anything that was there before.
    """
    if root.exists():
        new = [path for path in paths if not path.exists()]
    else:
        top = root
        while not top.parent.exists():
            top = top.parent
        new = [top]
    try:
        yield
    except BaseException:
        for path in new:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise
