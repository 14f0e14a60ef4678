"""Fixtures that write small datasets in real on-disk formats into a temporary folder."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


@dataclass
class FakeCIFAR:
    root: Path
    train_data: np.ndarray  # (N, 3072) uint8, rows in CIFAR-10's channel-major order
    train_labels: np.ndarray  # (N,) int
    test_data: np.ndarray
    test_labels: np.ndarray


def _write_batch(path: Path, data: np.ndarray, labels: np.ndarray, name: str) -> None:
    """One CIFAR-10 python batch: a pickled dict of ``data`` (N, 3072) uint8 and ``labels``.

    The official files are Python 2 pickles whose ``str`` keys torchvision reads back as ``str``
    (``encoding="latin1"``); protocol 2 with ``str`` keys reads back identically.
    """
    entry = {
        "batch_label": name,
        "labels": [int(v) for v in labels],
        "data": data,
        "filenames": [f"{name}_{i}.png" for i in range(len(labels))],
    }
    path.write_bytes(pickle.dumps(entry, protocol=2))


def write_fake_cifar(root: Path, per_batch: int = 40, n_test: int = 50, seed: int = 0) -> FakeCIFAR:
    """Write ``root/cifar-10-batches-py`` with random images: 5 training batches and a test batch.

    Labels cycle through the ten classes (shuffled), so one image in ten is a cat.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    n_train = 5 * per_batch
    train_data = rng.integers(0, 256, size=(n_train, 3072), dtype=np.uint8)
    train_labels = rng.permutation(np.arange(n_train) % 10)
    test_data = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    test_labels = rng.permutation(np.arange(n_test) % 10)
    for b in range(5):
        rows = slice(b * per_batch, (b + 1) * per_batch)
        name = f"data_batch_{b + 1}"
        _write_batch(folder / name, train_data[rows], train_labels[rows], name)
    _write_batch(folder / "test_batch", test_data, test_labels, "test_batch")
    meta = {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return FakeCIFAR(root, train_data, train_labels, test_data, test_labels)


@pytest.fixture
def fake_cifar(tmp_path: Path) -> FakeCIFAR:
    return write_fake_cifar(tmp_path / "cifar")


# Solid colours, so that decoded pixels can be checked exactly (PNG) or closely (JPEG).
CAT_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
DOG_COLOURS = [(255, 255, 0), (0, 255, 255), (255, 0, 255), (128, 128, 128)]


@dataclass
class PhotoFolder:
    root: Path
    cat_colours: list[tuple[int, int, int]]  # of cat/a.png, cat/b.PNG, cat/nested/c.png
    dog_colours: list[tuple[int, int, int]]  # of dog/d0.jpg, d1.jpg, d2.jpg, grey.png


@pytest.fixture
def photo_folder(tmp_path: Path) -> PhotoFolder:
    """``photos/cat`` (3 PNGs, one in a nested folder) and ``photos/dog`` (3 JPEGs + 1 PNG).

    Sizes differ and are not square; a text file and hidden files are there to be skipped.
    """
    root = tmp_path / "photos"
    (root / "cat" / "nested").mkdir(parents=True)
    (root / "dog").mkdir()
    Image.new("RGB", (40, 30), CAT_COLOURS[0]).save(root / "cat" / "a.png")
    Image.new("RGB", (20, 20), CAT_COLOURS[1]).save(root / "cat" / "b.PNG")
    Image.new("RGB", (25, 50), CAT_COLOURS[2]).save(root / "cat" / "nested" / "c.png")
    for i, colour in enumerate(DOG_COLOURS[:3]):
        Image.new("RGB", (30 + i, 24), colour).save(root / "dog" / f"d{i}.jpg", quality=95)
    Image.new("L", (16, 16), DOG_COLOURS[3][0]).save(root / "dog" / "grey.png")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".hidden.jpg").write_bytes(b"ignored")
    (root / ".cache").mkdir()
    return PhotoFolder(root, CAT_COLOURS, DOG_COLOURS)
