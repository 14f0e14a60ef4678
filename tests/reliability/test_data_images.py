"""``load_image`` decodes every Pillow mode to the right 0-255 scale, and refuses huge images.

Issue 16, item 7: 16-bit PNGs loaded almost white (Pillow's ``convert("RGB")`` clips 16-bit
levels at 255: 98.4 % of the pixels of a real 16-bit photo came out 1.0), and a 10000 × 10000
PNG of a few kilobytes decoded in full (+760 MB). ``load_image`` is the one photo decoder of
training, evaluation and prediction.

Each mode is checked on an image of known pixels, written at the output size (so the resize
is the identity), against the expected levels computed here with numpy from the pixels
written, never with Pillow's conversions.
"""

from __future__ import annotations

import colorsys
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import gdtorch.data.folder as folder
from gdtorch.data import ImageFolderCats, load_image

S = 8  # side of the test images, and of the output: no resampling
RNG = np.random.default_rng(0)


def levels_16(values: np.ndarray) -> np.ndarray:
    """16-bit levels on the 0-255 scale: round(v · 255 / 65535)."""
    return np.floor(values.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)


def on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight-alpha ``colour`` (..., C) composited on white, 0-255 levels."""
    a = alpha.astype(np.float64)[..., None] / 255
    return colour.astype(np.float64) * a + 255 * (1 - a)


def decoded(path: Path) -> np.ndarray:
    """``load_image`` at the image's own size, as ``(S, S, 3)`` float levels."""
    return load_image(path, S).permute(1, 2, 0).numpy().astype(np.float64)


def grey(levels: np.ndarray) -> np.ndarray:
    return np.repeat(levels.astype(np.float64)[..., None], 3, axis=-1)


def chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(path: Path, colour_type: int, bit_depth: int, pixels: np.ndarray, *chunks) -> Path:
    """A PNG written byte by byte (for the 16-bit kinds Pillow cannot write), big-endian rows."""

    height, width = pixels.shape[:2]
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    rows = pixels.astype(">u2" if bit_depth == 16 else "u1").reshape(height, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    body = [chunk(b"IHDR", header), *(chunk(k, d) for k, d in chunks)]
    body += [chunk(b"IDAT", zlib.compress(raw)), chunk(b"IEND", b"")]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(body))
    return path


# --------------------------------------------------------------------------- the issue's case


def test_a_16_bit_png_of_32768_loads_as_mid_grey_not_white(tmp_path):
    path = tmp_path / "half.png"
    Image.fromarray(np.full((S, S), 32768, np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"
    assert (load_image(path, S) == 128).all()  # 32768 / 65535 · 255 = 127.5: not 255


def test_a_16_bit_photo_keeps_its_levels(tmp_path):
    values = RNG.integers(0, 65536, (S, S), dtype=np.uint16)
    values[0, :4] = [0, 257, 32768, 65535]  # black, level 1, mid grey, white
    path = tmp_path / "photo.png"
    Image.fromarray(values).save(path)
    got = decoded(path)
    np.testing.assert_array_equal(got, grey(levels_16(values)))
    assert got[0, :4, 0].tolist() == [0, 1, 128, 255]
    assert (got == 255).mean() < 0.05  # the issue: 98.4 % white


# --------------------------------------------------------------------------- every mode


def write_mode(kind: str, path: Path) -> tuple[Path, np.ndarray, float]:
    """Write a ``kind`` image of known pixels; return it, the expected levels and a tolerance."""
    if kind in ("I;16 png", "I;16B tiff", "I;16 tiff"):
        values = RNG.integers(0, 65536, (S, S), dtype=np.uint16)
        if kind == "I;16 png":
            Image.fromarray(values).save(path.with_suffix(".png"))
        else:
            mode = "I;16B" if kind.startswith("I;16B") else "I;16"
            dtype = ">u2" if mode == "I;16B" else "<u2"
            Image.frombytes(mode, (S, S), values.astype(dtype).tobytes()).save(
                path.with_suffix(".tiff")
            )
        return path.with_suffix(".png" if "png" in kind else ".tiff"), grey(levels_16(values)), 0
    if kind == "I 16-bit pgm":  # Pillow reads 16-bit PGMs as "I"
        values = RNG.integers(0, 65536, (S, S), dtype=np.uint16)
        header = f"P5\n{S} {S}\n65535\n".encode()
        path.with_suffix(".pgm").write_bytes(header + values.astype(">u2").tobytes())
        return path.with_suffix(".pgm"), grey(levels_16(values)), 0
    if kind == "I 32-bit tiff within 16 bits":
        values = RNG.integers(0, 65536, (S, S)).astype(np.int32)
        Image.fromarray(values).save(path.with_suffix(".tiff"))
        return path.with_suffix(".tiff"), grey(levels_16(values)), 0
    if kind == "F tiff":
        values = RNG.random((S, S), dtype=np.float32)
        values[0, :3] = [0.0, 0.5, 1.0]
        Image.fromarray(values).save(path.with_suffix(".tiff"))
        return path.with_suffix(".tiff"), grey(np.rint(values.astype(np.float64) * 255)), 0
    if kind == "16-bit RGB png":  # Pillow decodes 48-bit PNGs to 8 bits itself (high byte)
        values = RNG.integers(0, 65536, (S, S, 3), dtype=np.uint16)
        return png(path.with_suffix(".png"), 2, 16, values), levels_16(values), 1
    if kind == "16-bit RGBA png":
        values = RNG.integers(0, 65536, (S, S, 4), dtype=np.uint16)
        expected = on_white(levels_16(values[..., :3]), levels_16(values[..., 3]))
        return png(path.with_suffix(".png"), 6, 16, values), expected, 2
    if kind == "16-bit grey png with a transparent level":
        values = RNG.integers(0, 65536, (S, S), dtype=np.uint16)
        values[::2, ::2] = 4000
        path = png(path.with_suffix(".png"), 0, 16, values, (b"tRNS", struct.pack(">H", 4000)))
        assert Image.open(path).mode == "I;16"
        expected = np.where(values == 4000, 255, levels_16(values)).astype(np.uint8)
        return path, grey(expected), 0
    if kind == "RGBA png":
        values = RNG.integers(0, 256, (S, S, 4), dtype=np.uint8)
        values[0, 0, 3], values[0, 1, 3] = 0, 255  # fully transparent, opaque
        Image.fromarray(values, "RGBA").save(path.with_suffix(".png"))
        return path.with_suffix(".png"), on_white(values[..., :3], values[..., 3]), 1
    if kind == "LA png":
        values = RNG.integers(0, 256, (S, S, 2), dtype=np.uint8)
        Image.fromarray(values, "LA").save(path.with_suffix(".png"))
        return path.with_suffix(".png"), grey(on_white(values[..., :1], values[..., 1])[..., 0]), 1
    if kind in ("P png", "P png with a transparent entry"):
        palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
        index = RNG.integers(0, 256, (S, S), dtype=np.uint8)
        index[0, 0] = 7
        image = Image.fromarray(index, "P")
        image.putpalette(palette.flatten().tolist())
        expected = palette[index].astype(np.float64)
        if kind.endswith("entry"):
            image.save(path.with_suffix(".png"), transparency=7)
            expected[index == 7] = 255
        else:
            image.save(path.with_suffix(".png"))
        return path.with_suffix(".png"), expected, 0
    if kind == "RGB png with a transparent colour":
        values = RNG.integers(0, 256, (S, S, 3), dtype=np.uint8)
        values[1, 1] = (5, 6, 7)
        Image.fromarray(values).save(path.with_suffix(".png"), transparency=(5, 6, 7))
        expected = values.astype(np.float64)
        expected[(values == (5, 6, 7)).all(axis=-1)] = 255
        return path.with_suffix(".png"), expected, 0
    if kind == "L png":
        values = RNG.integers(0, 256, (S, S), dtype=np.uint8)
        Image.fromarray(values).save(path.with_suffix(".png"))
        return path.with_suffix(".png"), grey(values), 0
    if kind == "1 png":
        values = RNG.random((S, S)) < 0.5
        Image.fromarray(values).save(path.with_suffix(".png"))
        return path.with_suffix(".png"), grey(values * 255), 0
    if kind == "CMYK tiff":  # R = 255 (1 − C)(1 − K), the usual naive conversion
        values = RNG.integers(0, 256, (S, S, 4), dtype=np.uint8)
        Image.fromarray(values, "CMYK").save(path.with_suffix(".tiff"))
        ink = values.astype(np.float64) / 255
        expected = 255 * (1 - ink[..., :3]) * (1 - ink[..., 3:])
        return path.with_suffix(".tiff"), expected, 1
    if kind == "RGB png":
        values = RNG.integers(0, 256, (S, S, 3), dtype=np.uint8)
        Image.fromarray(values).save(path.with_suffix(".png"))
        return path.with_suffix(".png"), values.astype(np.float64), 0
    raise AssertionError(kind)


FILE_KINDS = [
    "I;16 png",
    "I;16 tiff",
    "I;16B tiff",
    "I 16-bit pgm",
    "I 32-bit tiff within 16 bits",
    "F tiff",
    "16-bit RGB png",
    "16-bit RGBA png",
    "16-bit grey png with a transparent level",
    "RGBA png",
    "LA png",
    "P png",
    "P png with a transparent entry",
    "RGB png with a transparent colour",
    "L png",
    "1 png",
    "CMYK tiff",
    "RGB png",
]


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_every_file_mode_decodes_to_the_expected_levels(kind, tmp_path):
    path, expected, tolerance = write_mode(kind, tmp_path / "image")
    got = decoded(path)
    assert got.shape == (S, S, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance + 1e-9, err_msg=kind)


# Modes no common file format writes, but Pillow has: checked on images made in memory, as if
# a plugin had decoded them (Image.open returns them).
def in_memory(mode: str) -> tuple[Image.Image, np.ndarray, float]:
    if mode == "PA":
        palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
        index = RNG.integers(0, 256, (S, S), dtype=np.uint8)
        alpha = RNG.integers(0, 256, (S, S), dtype=np.uint8)
        image = Image.merge("PA", [Image.fromarray(index, "P"), Image.fromarray(alpha, "L")])
        image.putpalette(palette.flatten().tolist())
        return image, on_white(palette[index], alpha), 1
    if mode in ("RGBa", "La"):  # premultiplied: colour · alpha / 255 is stored
        alpha = RNG.integers(1, 256, (S, S), dtype=np.uint8)
        colour = RNG.integers(0, 256, (S, S, 3 if mode == "RGBa" else 1), dtype=np.uint8)
        stored = np.rint(colour * (alpha[..., None] / 255)).astype(np.uint8)
        bands = [Image.fromarray(b) for b in np.moveaxis(stored, -1, 0)]
        image = Image.merge(mode, [*bands, Image.fromarray(alpha)])
        expected = stored + 255 * (1 - alpha[..., None] / 255)  # premultiplied over white
        return image, np.broadcast_to(expected, (S, S, 3)), 2
    if mode == "RGBX":
        values = RNG.integers(0, 256, (S, S, 4), dtype=np.uint8)
        return Image.fromarray(values, "RGBX"), values[..., :3].astype(np.float64), 0
    if mode == "HSV":
        values = RNG.integers(0, 256, (S, S, 3), dtype=np.uint8)
        rgb = [colorsys.hsv_to_rgb(*(v / 255)) for v in values.reshape(-1, 3)]
        return Image.fromarray(values, "HSV"), np.array(rgb).reshape(S, S, 3) * 255, 1.5
    if mode == "YCbCr":  # JPEG's (ITU-R BT.601, full range)
        values = RNG.integers(0, 256, (S, S, 3), dtype=np.uint8).astype(np.float64)
        y, cb, cr = values[..., 0], values[..., 1] - 128, values[..., 2] - 128
        rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -1)
        return Image.fromarray(values.astype(np.uint8), "YCbCr"), rgb.clip(0, 255), 1.5
    if mode == "LAB":  # white and black, the two ends of L*
        values = np.zeros((S, S, 3), np.uint8)  # a* = b* = 0 (signed bytes): neutral
        values[: S // 2, :, 0] = 255
        expected = np.zeros((S, S, 3))
        expected[: S // 2] = 255
        return Image.fromarray(values, "LAB"), expected, 2
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["PA", "RGBa", "La", "RGBX", "HSV", "YCbCr", "LAB"])
def test_every_other_pillow_mode_decodes_to_the_expected_levels(mode, tmp_path, monkeypatch):
    image, expected, tolerance = in_memory(mode)
    assert image.mode == mode
    monkeypatch.setattr(folder.Image, "open", lambda path: image)
    got = decoded(tmp_path / f"{mode}.img")
    np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance + 1e-9, err_msg=mode)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.full((S, S), 70000, np.int32), r"32-bit integer pixels from 70000 to 70000; .*16-bit"),
        (np.full((S, S), -1, np.int32), r"32-bit integer pixels from -1 to -1"),
        (np.full((S, S), 2.0, np.float32), r"32-bit float pixels from 2\.0 to 2\.0; .*\[0, 1\]"),
        (np.full((S, S), np.nan, np.float32), r"32-bit float pixels from nan to nan"),
    ],
    ids=["int beyond 16 bits", "negative int", "float beyond 1", "float NaN"],
)
def test_pixels_of_unknown_range_are_refused_naming_the_file(values, message, tmp_path):
    path = tmp_path / "scan.tiff"
    Image.fromarray(values).save(path)
    with pytest.raises(ValueError, match=rf"^image {path} has {message}"):
        load_image(path, S)


# --------------------------------------------------------------------------- decompression bombs


def huge_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says ``width × height`` (1-bit grey) over an IDAT of one row only."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)

    row = zlib.compress(b"\0" + bytes((width + 7) // 8))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if the pixels of an image larger than 1000 × 1000 are decoded."""
    load = ImageFile.ImageFile.load

    def checked_load(self):
        if self.size[0] * self.size[1] > 1000 * 1000:
            raise AssertionError(f"the {self.size} pixels of {self.filename} were decoded")
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", checked_load)


@pytest.mark.parametrize(
    ("width", "height"),
    [(8000, 8000), (20000, 20000)],
    ids=["above gdtorch's limit", "above Pillow's too"],
)
def test_an_image_above_the_pixel_limit_is_refused_before_decoding(
    width, height, tmp_path, no_decoding
):
    path = huge_png(tmp_path / "bomb.png", width, height)
    assert path.stat().st_size < 200
    with pytest.raises(ValueError) as error:
        load_image(path, 64)
    message = str(error.value)
    assert message.startswith(f"image {path} is ")
    if width == 8000:
        assert "8000 × 8000 = 64,000,000 pixels, more than gdtorch decodes (50,000,000" in message
    else:  # Pillow refuses in Image.open already: its numbers, and gdtorch's limit
        assert "400000000 pixels" in message and "own limit is 50,000,000 pixels" in message
    assert "GDTORCH_MAX_IMAGE_PIXELS=<pixels>" in message
    assert "gdtorch.data.folder.MAX_IMAGE_PIXELS" in message


def test_the_limit_is_the_documented_constant_and_can_be_raised(tmp_path, monkeypatch):
    assert folder.MAX_IMAGE_PIXELS == 50_000_000
    path = tmp_path / "small.png"
    Image.new("RGB", (11, 10), (10, 20, 30)).save(path)
    monkeypatch.setattr(folder, "MAX_IMAGE_PIXELS", 109)
    with pytest.raises(ValueError, match=r"is 11 × 10 = 110 pixels, more than gdtorch decodes"):
        load_image(path, 4)
    monkeypatch.setenv("GDTORCH_MAX_IMAGE_PIXELS", "110")  # the variable wins over the constant
    assert load_image(path, 4)[:, 0, 0].tolist() == [10, 20, 30]
    monkeypatch.setenv("GDTORCH_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match=r"GDTORCH_MAX_IMAGE_PIXELS must be a positive whole"):
        load_image(path, 4)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow: > 89.5M
def test_a_photo_folder_holding_the_issues_bomb_names_the_file(tmp_path, no_decoding):
    (tmp_path / "cat").mkdir()
    (tmp_path / "other").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "cat" / "fine.png")
    bomb = huge_png(tmp_path / "other" / "bomb.png", 10000, 10000)
    with pytest.raises(ValueError, match=rf"image {bomb} is 10000 × 10000 = 100,000,000 pixels"):
        ImageFolderCats(tmp_path, image_size=8)
