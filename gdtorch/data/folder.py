"""``ImageFolderCats``: a folder of photos, one sub-folder per class, as cat versus the rest."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.datasets.folder import IMG_EXTENSIONS

from gdtorch.data.base import CatImageDataset

__all__ = ["MAX_IMAGE_PIXELS", "ImageFolderCats", "image_files", "load_image", "max_image_pixels"]

# Pixels (width × height) above which load_image refuses an image, from its header, before
# decoding it. Pillow's own guard only warns from 89.5 million pixels and refuses from 179
# million, and a PNG of a few kilobytes can hold 10000 × 10000 pixels (+760 MB decoded as RGB).
# 50 million keeps camera photos up to 48-megapixel phones (8064 × 6048 = 48.8 million); at the
# limit a decode takes about 200 MB (8-bit RGB) to 300 MB (16-bit greyscale) at its peak.
MAX_IMAGE_PIXELS = 50_000_000
# The environment variable that overrides MAX_IMAGE_PIXELS, for the command-line apps.
MAX_IMAGE_PIXELS_ENV = "GDTORCH_MAX_IMAGE_PIXELS"
_PIXELS_FIX = (
    f"shrink the image or remove it, or raise the limit with the environment variable "
    f"{MAX_IMAGE_PIXELS_ENV}=<pixels> (in Python: gdtorch.data.folder.MAX_IMAGE_PIXELS = "
    f"<pixels>) if the memory is there."
)
_WHITE_16 = 65535  # white of a 16-bit image
# 16-bit level v -> round(v * 255 / 65535) = floor((v * 255 + 32767) / 65535), exact in integers
_LEVELS_16 = ((np.arange(_WHITE_16 + 1) * 255 + _WHITE_16 // 2) // _WHITE_16).astype(np.uint8)
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # greyscale read as 0..65535
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageFolderCats(CatImageDataset):
    """Photos from ``root/<class>/**/<image>``: label 1.0 for ``positive_class``, 0.0 otherwise.

    The layout is that of ``torchvision.datasets.ImageFolder``: one sub-folder per class,
    images found recursively inside it by extension (``.jpg``, ``.jpeg``, ``.png``, ``.ppm``,
    ``.bmp``, ``.pgm``, ``.tif``, ``.tiff``, ``.webp``, any case); hidden entries and other
    files are skipped. Every image is decoded once by :func:`load_image` (any Pillow mode to
    8-bit RGB; an image of more than :data:`MAX_IMAGE_PIXELS` pixels is refused), centre-cropped
    to a square and resized to ``image_size`` (bilinear), and all of them are kept as tensors.

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
            image cannot be decoded or is refused by :func:`load_image`.
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
    convert to 8-bit RGB (see below), centre-crop to a square and resize to ``image_size``
    (bilinear). Divide by 255 for ``[0, 1]``.

    Every mode Pillow decodes comes out on the same 0-255 scale, black to white:

    - 16-bit greyscale (``"I;16"``, ``"I;16B"``, ``"I;16L"``, ``"I;16N"``, and ``"I"``, which
      Pillow gives 16-bit PGMs and, in older versions, 16-bit PNGs): 0-65535 scaled to 0-255
      (``round(v * 255 / 65535)``). An ``"I"`` image with values outside 0-65535 (a 32-bit
      integer TIFF) has no known white level and is refused;
    - 32-bit float greyscale (``"F"``): 0.0-1.0 scaled to 0-255; values outside ``[0, 1]``
      (or NaN) are refused, as their scale is unknown;
    - transparency (an alpha band: ``"RGBA"``, ``"LA"``, ``"PA"``, premultiplied ``"RGBa"``,
      ``"La"``; or a transparent colour or palette entry in ``"P"``, ``"L"``, ``"RGB"``,
      16-bit greyscale): composited on white, as a browser or viewer shows the picture on a
      white page (and as Hugging Face's ``convert_to_rgb`` does), so the colour stored under
      a fully transparent pixel, which nobody sees, never reaches the model;
    - everything else (``"1"``, ``"L"``, ``"P"``, ``"CMYK"``, ``"YCbCr"``, ``"LAB"``,
      ``"HSV"``, ``"RGBX"``, ``"RGB"``; 16-bit RGB PNGs, which Pillow decodes to 8 bits):
      Pillow's conversion to RGB.

    Before decoding, the image's size is read from its header and an image of more than
    :data:`MAX_IMAGE_PIXELS` pixels is refused (a small file may decode to gigabytes).

    Args:
        path: the image file.
        image_size: side of the square output, in pixels.

    Raises:
        ValueError: ``path`` cannot be decoded as an image, has more pixels than the limit, or
            has 32-bit integer or float pixels outside the ranges above; the message names it.
    """
    limit = max_image_pixels()
    try:
        with Image.open(path) as image:
            _check_pixels(path, image.size, limit)
            decoded = _rgb_or_grey(image, path)
            square = ImageOps.fit(decoded, (image_size, image_size), Image.Resampling.BILINEAR)
            square = square.convert("RGB")  # greyscale: resized once, then three equal channels
    except _RefusedImage:
        raise
    except Image.DecompressionBombError as err:  # above Pillow's own limit, raised in open()
        raise _RefusedImage(
            f"image {path} is refused by Pillow's decompression-bomb guard ({err}); gdtorch's "
            f"own limit is {limit:,} pixels: {_PIXELS_FIX} Beyond Pillow's limit, raise "
            f"PIL.Image.MAX_IMAGE_PIXELS as well."
        ) from err
    except (OSError, ValueError) as err:
        raise ValueError(
            f"cannot read image {path} ({type(err).__name__}: {err}): replace the file with a "
            f"valid image or remove it."
        ) from err
    return torch.from_numpy(np.asarray(square).copy()).permute(2, 0, 1)


class _RefusedImage(ValueError):
    """An image load_image decodes but refuses (too large, pixels of unknown range)."""


def max_image_pixels() -> int:
    """The pixel limit of :func:`load_image`: ``$GDTORCH_MAX_IMAGE_PIXELS``, else the constant.

    Raises:
        ValueError: the environment variable is set but not a positive integer.
    """
    value = os.environ.get(MAX_IMAGE_PIXELS_ENV)
    if value is None:
        return MAX_IMAGE_PIXELS
    try:
        limit = int(value.replace("_", ""))
    except ValueError:
        limit = 0
    if limit <= 0:
        raise ValueError(
            f"{MAX_IMAGE_PIXELS_ENV} must be a positive whole number of pixels (the largest "
            f"image, width × height, that gdtorch decodes), got {value!r}: unset it for the "
            f"default {MAX_IMAGE_PIXELS:,}."
        )
    return limit


def _check_pixels(path: str | Path, size: tuple[int, int], limit: int) -> None:
    """Refuse, before decoding, an image whose header gives more than ``limit`` pixels."""
    width, height = size
    if width * height > limit:
        raise _RefusedImage(
            f"image {path} is {width} × {height} = {width * height:,} pixels, more than "
            f"gdtorch decodes ({limit:,}, about {limit * 3 // 2**20:,} MB as RGB): {_PIXELS_FIX}"
        )


def _rgb_or_grey(image: Image.Image, path: str | Path) -> Image.Image:
    """``image`` as 8-bit ``"RGB"`` or ``"L"`` on the 0-255 scale, transparency on white.

    Greyscale stays one band until after the resize (three equal bands resize to the same).
    """
    transparent = image.mode in _ALPHA or "transparency" in image.info
    if image.mode in _SIXTEEN_BIT or image.mode == "F":
        levels = Image.fromarray(_grey_levels(image, path))
        if not transparent:
            return levels
        opaque = np.asarray(image) != image.info["transparency"]
        image = Image.merge("LA", [levels, Image.fromarray(opaque.astype(np.uint8) * 255)])
    elif image.mode == "La":  # premultiplied; Pillow converts it to nothing else
        grey, alpha = image.split()
        image = Image.merge("RGBa", [grey, grey, grey, alpha])
    if transparent:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    if image.mode in ("L", "RGB"):
        return image
    return image.convert("L" if image.mode == "1" else "RGB")


def _grey_levels(image: Image.Image, path: str | Path) -> np.ndarray:
    """The pixels of a 16-bit integer or 32-bit float greyscale image as ``uint8`` 0-255 levels.

    Raises:
        _RefusedImage: ``"I"`` values outside 0-65535, or ``"F"`` values outside [0, 1].
    """
    pixels = np.asarray(image)
    if image.mode == "F":
        low, high = float(np.min(pixels)), float(np.max(pixels))
        if not (0.0 <= low and high <= 1.0):  # NaN fails both
            raise _RefusedImage(
                f"image {path} has 32-bit float pixels from {low} to {high}; gdtorch reads float "
                f"images as 0.0 (black) to 1.0 (white): rescale it to [0, 1], or save it as an "
                f"8- or 16-bit image."
            )
        return np.rint(pixels * np.float32(255)).astype(np.uint8)
    low, high = int(np.min(pixels)), int(np.max(pixels))
    if low < 0 or high > _WHITE_16:
        raise _RefusedImage(
            f"image {path} has 32-bit integer pixels from {low} to {high}; gdtorch reads "
            f"integer greyscale images as 16-bit, 0 (black) to {_WHITE_16} (white): save it as "
            f"an 8- or 16-bit image."
        )
    return _LEVELS_16[pixels]
