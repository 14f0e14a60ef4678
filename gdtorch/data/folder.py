"""``ImageFolderCats``: a folder of photos, one sub-folder per class, as cat versus the rest."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.datasets.folder import IMG_EXTENSIONS

from gdtorch.data.base import CatImageDataset

__all__ = ["ImageFolderCats", "image_files", "load_image"]


class ImageFolderCats(CatImageDataset):
    """Photos from ``root/<class>/**/<image>``: label 1.0 for ``positive_class``, 0.0 otherwise.

    The layout is that of ``torchvision.datasets.ImageFolder``: one sub-folder per class,
    images found recursively inside it by extension (``.jpg``, ``.jpeg``, ``.png``, ``.ppm``,
    ``.bmp``, ``.pgm``, ``.tif``, ``.tiff``, ``.webp``, any case); hidden entries and other
    files are skipped. Every image is decoded once, converted to RGB, centre-cropped to a
    square and resized to ``image_size`` (bilinear), and all of them are kept as tensors.

    Args:
        root: the folder of class sub-folders.
        positive_class: the sub-folder whose images are cats.
        image_size: side of the square images, in pixels.
        num_workers: threads that decode images in parallel; 0 decodes in the calling thread.

    Attributes:
        paths: the image files, in the order of ``images`` and ``targets``.
        class_folders: the class sub-folder names, sorted.

    Raises:
        FileNotFoundError: ``root`` or ``root/positive_class`` does not exist.
        ValueError: there is no class besides the positive one, a class has no images, or an
            image cannot be decoded.
    """

    def __init__(
        self,
        root: str | Path,
        positive_class: str = "cat",
        image_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        root = Path(root).expanduser()
        layout = f"one sub-folder of images per class, e.g. {root}/{positive_class}/*.jpg"
        if not root.is_dir():
            raise FileNotFoundError(
                f"photo folder {root} does not exist: create it with {layout} and "
                f"{root}/other/*.jpg, or point root (data.root) at such a folder."
            )
        self.class_folders = sorted(
            p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if positive_class not in self.class_folders:
            raise FileNotFoundError(
                f"positive class folder {root / positive_class} does not exist (class folders "
                f"found: {self.class_folders}). Create it, or set positive_class "
                f"(data.positive_class) to one of the folders found."
            )
        if len(self.class_folders) < 2:
            raise ValueError(
                f"{root} holds only the positive class {positive_class!r}: add at least one "
                f"sub-folder of non-cat images beside it, e.g. {root}/other/*.jpg."
            )
        self.paths: list[Path] = []
        labels: list[float] = []
        for name in self.class_folders:
            files = image_files(root / name)
            if not files:
                raise ValueError(
                    f"class folder {root / name} holds no images (extensions: "
                    f"{', '.join(IMG_EXTENSIONS)}): add images to it or remove it."
                )
            self.paths += files
            labels += [float(name == positive_class)] * len(files)

        def load(path: Path) -> torch.Tensor:
            return load_image(path, image_size)

        if num_workers > 0:
            with ThreadPoolExecutor(max_workers=num_workers) as pool:
                decoded = list(pool.map(load, self.paths))
        else:
            decoded = [load(path) for path in self.paths]
        images = torch.stack(decoded).float().div_(255)
        super().__init__(images, torch.tensor(labels))


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, by extension, skipping hidden entries), sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMG_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def load_image(path: str | Path, image_size: int) -> torch.Tensor:
    """Decode ``path`` to a ``uint8`` ``(3, image_size, image_size)`` tensor.

    The one preprocessing of a photo, for training, evaluation and prediction alike: decode,
    convert to RGB, centre-crop to a square and resize to ``image_size`` (bilinear). Divide by
    255 for ``[0, 1]``.

    Raises:
        ValueError: ``path`` cannot be decoded as an image; the message names it.
    """
    try:
        with Image.open(path) as image:
            square = ImageOps.fit(
                image.convert("RGB"), (image_size, image_size), Image.Resampling.BILINEAR
            )
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(
            f"cannot read image {path} ({type(err).__name__}: {err}): replace the file with a "
            f"valid image or remove it."
        ) from err
    return torch.from_numpy(np.asarray(square).copy()).permute(2, 0, 1)
