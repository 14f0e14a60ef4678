"""SyntheticCats: shapes, labels, determinism and argument checks."""

from __future__ import annotations

import hashlib

import pytest
import torch

from gdtorch.data import SyntheticCats
from gdtorch.data.synthetic import _CHUNK


@pytest.mark.parametrize("image_size", [16, 32, 64])
def test_shape_dtype_and_range(image_size: int) -> None:
    data = SyntheticCats(12, image_size=image_size, seed=3)
    assert data.images.shape == (12, 3, image_size, image_size)
    assert data.images.dtype == torch.float32
    assert data.targets.shape == (12,)
    assert data.targets.dtype == torch.float32
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert set(data.targets.tolist()) <= {0.0, 1.0}
    image, target = data[5]
    assert torch.equal(image, data.images[5]) and torch.equal(target, data.targets[5])
    assert len(data) == 12


@pytest.mark.parametrize(("n", "cats"), [(1, 1), (2, 1), (101, 51), (200, 100)])
def test_labels_are_balanced(n: int, cats: int) -> None:
    targets = SyntheticCats(n, image_size=16).targets
    assert int(targets.sum()) == cats
    assert int((targets == 0).sum()) == n - cats


def test_labels_are_shuffled() -> None:
    targets = SyntheticCats(200, image_size=16).targets
    assert not torch.equal(targets, targets.sort().values)
    assert not torch.equal(targets, targets.sort(descending=True).values)


def test_same_seed_same_tensors_other_seed_other_tensors() -> None:
    a = SyntheticCats(20, image_size=32, seed=7)
    b = SyntheticCats(20, image_size=32, seed=7)
    c = SyntheticCats(20, image_size=32, seed=8)
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.images, c.images)


def test_images_do_not_depend_on_thread_count() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = SyntheticCats(_CHUNK + 5, image_size=32, seed=1).images
        torch.set_num_threads(2)
        two = SyntheticCats(_CHUNK + 5, image_size=32, seed=1).images
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_every_image_is_distinct_across_chunks() -> None:
    images = SyntheticCats(2 * _CHUNK + 3, image_size=16, seed=2).images.flatten(1)
    distance = torch.cdist(images.double(), images.double())
    distance.fill_diagonal_(float("inf"))
    assert distance.min() > 0.5  # no chunk repeats another; images are far apart


def test_images_have_content_beyond_noise() -> None:
    images = SyntheticCats(64, image_size=32, seed=4).images
    # Shapes and colours: each image spans much of the value range, and colour channels differ.
    assert (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3))).min() > 0.3
    assert (images[:, 0] - images[:, 1]).abs().mean() > 0.05


def test_cats_and_not_cats_differ_on_average() -> None:
    # The class-average images differ where the classes draw different parts (ears, nose).
    data = SyntheticCats(400, image_size=32, seed=5)
    cats = data.images[data.targets == 1].mean(dim=0)
    others = data.images[data.targets == 0].mean(dim=0)
    assert (cats - others).abs().max() > 0.05


# Golden fingerprint: the generator promises the same images for a seed on every machine.
# Changing how images are drawn changes it on purpose: update it then, and say so.
GOLDEN_SHA256 = "dd0cdcffaf7510f6bf19be8b7b5749d169e17a85bf7be9aa15aa81b140684e0a"


def test_images_match_the_golden_fingerprint() -> None:
    data = SyntheticCats(8, image_size=32, seed=0)
    digest = hashlib.sha256(data.images.numpy().tobytes() + data.targets.numpy().tobytes())
    assert digest.hexdigest() == GOLDEN_SHA256


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n": 0}, "n"),
        ({"n": -3}, "n"),
        ({"n": 2.5}, "n"),
        ({"n": 4, "image_size": 8}, "image_size"),
        ({"n": 4, "image_size": 32.0}, "image_size"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} must be"):
        SyntheticCats(**kwargs)
