"""CIFAR10Cats on a small fake CIFAR-10 written in the real on-disk format."""

from __future__ import annotations

import pickle
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10

from gdtorch.data import CIFAR10Cats

CAT = 3  # CIFAR-10's class index of "cat"


def as_images(rows: np.ndarray) -> torch.Tensor:
    """CIFAR-10 rows (N, 3072: all red, then green, then blue, row-major) as (N, 3, 32, 32)."""
    return torch.from_numpy(rows.reshape(-1, 3, 32, 32).astype(np.float32) / 255)


@pytest.mark.parametrize("train", [True, False])
def test_images_and_cat_labels(fake_cifar, train: bool) -> None:
    data = CIFAR10Cats(fake_cifar.root, train=train)
    rows, labels = (
        (fake_cifar.train_data, fake_cifar.train_labels)
        if train
        else (fake_cifar.test_data, fake_cifar.test_labels)
    )
    assert data.images.shape == (len(labels), 3, 32, 32)
    assert data.images.dtype == torch.float32 and data.targets.dtype == torch.float32
    assert data.images.is_contiguous()
    torch.testing.assert_close(data.images, as_images(rows), rtol=0, atol=0)
    torch.testing.assert_close(data.targets, torch.from_numpy((labels == CAT).astype(np.float32)))
    assert data.targets.sum() == len(labels) // 10


def test_resize(fake_cifar) -> None:
    data = CIFAR10Cats(fake_cifar.root, image_size=16)
    assert data.images.shape == (200, 3, 16, 16)
    assert data.images.min() >= 0 and data.images.max() <= 1
    # torchvision's antialiased bilinear resize is made to match PIL's.
    for i in (0, 57, 199):
        hwc = fake_cifar.train_data[i].reshape(3, 32, 32).transpose(1, 2, 0)
        pil = Image.fromarray(hwc).resize((16, 16), Image.Resampling.BILINEAR)
        reference = torch.from_numpy(np.asarray(pil).astype(np.float32) / 255).permute(2, 0, 1)
        torch.testing.assert_close(data.images[i], reference, atol=1.5 / 255, rtol=0)


def test_balance_keeps_every_cat_and_as_many_others(fake_cifar) -> None:
    full = CIFAR10Cats(fake_cifar.root)
    balanced = CIFAR10Cats(fake_cifar.root, balance=True, seed=1)
    n_cats = int(full.targets.sum())
    assert int(balanced.targets.sum()) == n_cats
    assert int((balanced.targets == 0).sum()) == n_cats
    cats = full.images[full.targets == 1]
    torch.testing.assert_close(balanced.images[balanced.targets == 1], cats, rtol=0, atol=0)
    # Every kept non-cat is one of the originals.
    others = full.images[full.targets == 0].flatten(1)
    kept = balanced.images[balanced.targets == 0].flatten(1)
    assert (kept[:, None] == others[None]).all(dim=-1).any(dim=1).all()


def test_balance_is_deterministic_per_seed(fake_cifar) -> None:
    a = CIFAR10Cats(fake_cifar.root, balance=True, seed=1)
    b = CIFAR10Cats(fake_cifar.root, balance=True, seed=1)
    c = CIFAR10Cats(fake_cifar.root, balance=True, seed=2)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_present_files_are_not_downloaded_again(fake_cifar) -> None:
    # download=True with every file present must not touch the network (there is none here).
    assert len(CIFAR10Cats(fake_cifar.root, download=True)) == 200


def test_missing_root_names_the_path_and_the_fix(tmp_path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        CIFAR10Cats(root)
    message = str(error.value)
    assert str(root / "cifar-10-batches-py") in message
    assert "does not exist" in message
    assert "data.download=true" in message and "data_batch_1" in message


def test_missing_file_is_named(fake_cifar) -> None:
    (fake_cifar.root / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks data_batch_4\. Download it"):
        CIFAR10Cats(fake_cifar.root, train=False)


def test_corrupt_batch_is_a_value_error(fake_cifar) -> None:
    path = fake_cifar.root / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"cannot read CIFAR-10 from .*cifar-10-batches-py"):
        CIFAR10Cats(fake_cifar.root)


def test_meta_without_cat_is_a_value_error(fake_cifar) -> None:
    meta = fake_cifar.root / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=2))
    with pytest.raises(ValueError, match="lists no 'cat' class"):
        CIFAR10Cats(fake_cifar.root)


def no_network(request, *args, **kwargs):
    raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))


class DroppedConnection:
    """A response that sends the first bytes of the archive, then loses the connection."""

    length = 170_498_071

    def __init__(self, request, *args, **kwargs) -> None:
        self.url = request.full_url
        self.sent = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def read(self, size: int = -1) -> bytes:
        if self.sent:
            raise ConnectionResetError(104, "Connection reset by peer")
        self.sent = True
        return b"\x1f\x8b\x08" + bytes(1000)


@pytest.mark.parametrize("urlopen", [no_network, DroppedConnection])
def test_a_failed_download_is_a_connection_error_and_leaves_nothing_behind(
    tmp_path, monkeypatch, urlopen
) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    root = tmp_path / "new" / "cifar"
    with pytest.raises(ConnectionError) as error:
        CIFAR10Cats(root, download=True)
    message = str(error.value)
    assert CIFAR10.url in message and str(root) in message
    assert "cifar-10-python.tar.gz" in message and "data.download=false" in message
    assert list(tmp_path.iterdir()) == []  # the folders the download made are gone
    # Into a folder that was there: it stays, with what it held, and only that.
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("mine")
    with pytest.raises(ConnectionError):
        CIFAR10Cats(root, download=True)
    assert [p.name for p in root.iterdir()] == ["notes.txt"]
