"""CatDataModule on a photo folder with fixed ``train/`` and ``test/`` sub-folders."""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from PIL import Image

import gdtorch.train
from gdtorch.data import CatDataModule, load_image
from gdtorch.train import run
from tests.cases import TINY, compose_train

IMAGE_SIZE = 8
# Images per class folder: unbalanced in train/ (5 cats, 9 others) and in test/ (2 cats, 5 others).
TRAIN = {"cat": 5, "dog": 7, "fox": 2}
TEST = {"cat": 2, "dog": 5}


@dataclass
class FixedSplit:
    root: Path
    train: dict[bytes, float]  # the decoded pixels of each image of train/, and its label
    test: dict[bytes, float]


def write_part(folder: Path, counts: dict[str, int], first: int) -> None:
    """``folder/<class>/<k>.png`` solid-colour PNGs, each colour unique, sizes not square."""
    for name, n in counts.items():
        (folder / name).mkdir(parents=True)
        for k in range(first, first + n):
            colour = (k * 37 % 256, k * 91 % 256, k * 53 % 256)
            Image.new("RGB", (12 + k % 5, 10 + k % 3), colour).save(folder / name / f"{k}.png")
        first += n


def decoded(folder: Path) -> dict[bytes, float]:
    """Every PNG under ``folder``, decoded by ``load_image``, with its label (1.0 under cat/)."""
    images = {}
    for path in folder.rglob("*.png"):
        image = load_image(path, IMAGE_SIZE).float().div(255)
        images[image.numpy().tobytes()] = float(path.parent.name == "cat")
    return images


@pytest.fixture
def fixed_split(tmp_path: Path) -> FixedSplit:
    """``photos/train/{cat,dog,fox}`` (14 images) and ``photos/test/{cat,dog}`` (7 images)."""
    root = tmp_path / "photos"
    write_part(root / "train", TRAIN, first=0)
    write_part(root / "test", TEST, first=sum(TRAIN.values()))
    (root / ".cache").mkdir()  # hidden: not a third part
    split = FixedSplit(root, decoded(root / "train"), decoded(root / "test"))
    assert len(split.train) == 14 and len(split.test) == 7  # every colour distinct
    return split


def ready(root: Path, **kwargs) -> CatDataModule:
    sizes = {"n_train": None, "n_val": 4, "n_test": 3, "image_size": IMAGE_SIZE}
    dm = CatDataModule(source="folder", root=root, **{**sizes, **kwargs})
    dm.setup()
    return dm


def labelled(images: torch.Tensor, targets: torch.Tensor) -> list[tuple[bytes, float]]:
    """``(pixels, label)`` of each image, in order."""
    return [(x.numpy().tobytes(), y) for x, y in zip(images, targets.tolist(), strict=True)]


def test_the_test_split_is_all_of_test(fixed_split) -> None:
    dm = ready(fixed_split.root, n_test=3)  # n_test does not apply
    test = labelled(dm.test_set.images, dm.test_set.targets)
    assert len(test) == 7
    assert dict(test) == fixed_split.test  # the same pixels and labels, each image once


def test_validation_and_training_are_disjoint_draws_from_train(fixed_split) -> None:
    dm = ready(fixed_split.root, n_val=4, n_train=6)
    val = labelled(dm.val_set.images, dm.val_set.targets)
    train = labelled(dm.train_set.images, dm.train_set.targets)
    assert (len(val), len(train)) == (4, 6)
    assert set(val) <= fixed_split.train.items() and set(train) <= fixed_split.train.items()
    assert len(set(val) | set(train)) == 10  # disjoint, no image twice
    rest = ready(fixed_split.root, n_val=4, n_train=None)  # None: all the rest of train/
    everything = labelled(rest.val_set.images, rest.val_set.targets)
    everything += labelled(rest.train_set.images, rest.train_set.targets)
    assert len(rest.train_set) == 10 and dict(everything) == fixed_split.train


def test_the_split_is_reproducible_per_seed(fixed_split) -> None:
    a, b, c = (ready(fixed_split.root, seed=seed) for seed in (3, 3, 4))
    for name in ("train_set", "val_set", "test_set"):
        assert torch.equal(getattr(a, name).images, getattr(b, name).images)
        assert torch.equal(getattr(a, name).targets, getattr(b, name).targets)
    assert not torch.equal(a.val_set.images, c.val_set.images)
    assert torch.equal(a.test_set.images, c.test_set.images)  # the given test set, whatever seed


def test_balancing_is_off_by_default_and_never_touches_test(fixed_split) -> None:
    default = ready(fixed_split.root)
    pool = torch.cat([default.train_set.targets, default.val_set.targets])
    assert (int(pool.sum()), int((pool == 0).sum())) == (5, 9)  # every image of train/
    balanced = ready(fixed_split.root, balance=True)
    pool = torch.cat([balanced.train_set.targets, balanced.val_set.targets])
    assert (int(pool.sum()), int((pool == 0).sum())) == (5, 5)  # all cats, 5 of the 9 others
    assert (len(balanced.val_set), len(balanced.train_set)) == (4, 6)
    for dm in (default, balanced):
        assert dict(labelled(dm.test_set.images, dm.test_set.targets)) == fixed_split.test


def test_the_split_sizes_are_logged_with_n_test_ignored(fixed_split, caplog) -> None:
    caplog.set_level(logging.INFO)
    ready(fixed_split.root, n_val=4, n_train=6)
    (line,) = [r.getMessage() for r in caplog.records if "fixed split" in r.getMessage()]
    assert "all 7 images of" in line and "data.n_test is ignored" in line
    assert "validation 4 and training 6 images" in line


@pytest.mark.filterwarnings(r"ignore:the (validation|test) split holds")  # tiny draws
def test_a_flat_folder_still_splits_at_random_and_balances(photo_folder) -> None:
    # photo_folder: 3 cats and 4 dogs directly under root; balanced to 3 + 3. (Four are left
    # for training, so that it always holds both classes, as it must.)
    splits = [ready(photo_folder.root, n_val=1, n_test=1, seed=seed) for seed in range(4)]
    for dm in splits:
        assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (4, 1, 1)
        targets = torch.cat([dm.train_set.targets, dm.val_set.targets, dm.test_set.targets])
        assert int(targets.sum()) == 3
    tests = {frozenset(labelled(dm.test_set.images, dm.test_set.targets)) for dm in splits}
    assert len(tests) > 1  # the test split depends on the seed: drawn at random


@pytest.mark.parametrize("present", ["train", "test"])
def test_only_one_of_train_and_test_is_refused(fixed_split, present: str) -> None:
    missing = {"train": "test", "test": "train"}[present]
    shutil.rmtree(fixed_split.root / missing)
    dm = CatDataModule(source="folder", root=fixed_split.root, image_size=IMAGE_SIZE)
    message = (
        rf"photo folder {re.escape(str(fixed_split.root))} \(data\.root\) holds "
        rf"{re.escape(str(fixed_split.root / present))} but no "
        rf"{re.escape(str(fixed_split.root / missing))}: expected either a fixed split"
    )
    with pytest.raises(ValueError, match=message):
        dm.setup()


def test_other_folders_beside_train_and_test_are_refused(fixed_split) -> None:
    write_part(fixed_split.root / "val", {"cat": 1, "dog": 1}, first=100)
    dm = CatDataModule(source="folder", root=fixed_split.root, image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match=r"holds train/ and test/ but also \['val'\].*Move"):
        dm.setup()


def test_each_part_is_checked_as_a_photo_folder(fixed_split) -> None:
    shutil.rmtree(fixed_split.root / "test" / "cat")
    dm = CatDataModule(source="folder", root=fixed_split.root, image_size=IMAGE_SIZE)
    cat = re.escape(str(fixed_split.root / "test" / "cat"))
    with pytest.raises(FileNotFoundError, match=rf"positive class folder {cat} does not exist"):
        dm.setup()
    (fixed_split.root / "test" / "cat").mkdir()  # now there, but empty
    dm = CatDataModule(source="folder", root=fixed_split.root, image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match=rf"class folder {cat} holds no images"):
        dm.setup()


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        (
            {"n_val": 14},
            r"n_val=14, n_train=None \(the rest\) but photo folder \S+train has only 14 "
            r"examples \(5 cats, 9 non-cats\), which leaves no example for n_train: lower "
            r"data\.n_val to add up to less than 14\.",
        ),
        (
            {"n_val": 15},
            r"n_val=15, n_train=None \(the rest\) but photo folder \S+train has only 14 .*: lower "
            r"data\.n_val to add up to at most 14\.",
        ),
        ({"n_val": 10, "n_train": 5}, r"n_val=10, n_train=5 but photo folder \S+train has only 14"),
        (
            {"n_val": 1, "balance": True, "n_train": 10},
            r"train, balanced \(data\.balance\) from 14 examples \(5 cats, 9 non-cats\), has "
            r"only 10 examples \(5 cats, 5 non-cats\): lower data\.n_val and data\.n_train to "
            r"add up to at most 10, or set data\.balance=false to split all 14 images\.",
        ),
    ],
)
def test_sizes_train_cannot_fill_are_refused_before_training(
    fixed_split, sizes: dict, message: str
) -> None:
    sizes = {"n_train": None, "image_size": IMAGE_SIZE, **sizes}
    dm = CatDataModule(source="folder", root=fixed_split.root, **sizes)
    with pytest.raises(ValueError, match=message):
        dm.setup()


def test_a_flat_split_leaving_no_training_example_is_refused(photo_folder) -> None:
    dm = CatDataModule(source="folder", root=photo_folder.root, n_train=None, n_val=2, n_test=4)
    with pytest.raises(ValueError, match=r"6 examples .*leaves no example for n_train"):
        dm.setup()


def test_balance_must_be_true_false_or_none() -> None:
    with pytest.raises(ValueError, match=r"balance \(data\.balance\) must be true, false or null"):
        CatDataModule(source="folder", root="x", balance="yes")


class SeenInTest(L.Callback):
    """Collects the probabilities ``CatClassifier.test_step`` returns, one per test image."""

    def __init__(self) -> None:
        self.probabilities: list[torch.Tensor] = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.probabilities.append(outputs.detach().cpu())


def test_a_training_run_tests_on_exactly_the_images_of_test(fixed_split, tmp_path, monkeypatch):
    kept: dict = {}
    seen = SeenInTest()
    build = gdtorch.train.build

    def build_and_watch(cfg):
        trainer, model, datamodule = build(cfg)
        trainer.callbacks.append(seen)
        kept.update(model=model, datamodule=datamodule)
        return trainer, model, datamodule

    monkeypatch.setattr(gdtorch.train, "build", build_and_watch)
    cfg = compose_train(
        tmp_path / "run",
        *TINY,
        "data=folder",
        f"data.root={fixed_split.root}",
        "data.n_train=null",
        "data.n_val=4",
        f"data.image_size={IMAGE_SIZE}",
        "trainer.max_epochs=1",
        "~logger",
    )
    metrics = run(cfg)
    # The test stage saw each of test/'s 7 images once (TINY's data.n_test=32 does not apply).
    probabilities = torch.cat(seen.probabilities)
    assert probabilities.shape == (7,)
    # Independently: the trained (best) model on the files of test/, decoded by load_image and
    # normalised with the training statistics, gives the same probabilities and accuracy.
    model, dm = kept["model"], kept["datamodule"]
    paths = sorted((fixed_split.root / "test").rglob("*.png"))
    images = torch.stack([load_image(p, IMAGE_SIZE) for p in paths]).float().div(255)
    labels = torch.tensor([float(p.parent.name == "cat") for p in paths])
    mean, std = (s.cpu().view(1, 3, 1, 1) for s in (dm.mean, dm.std))
    model.eval()
    with torch.no_grad():
        device = next(model.parameters()).device
        output = model((images - mean).div(std).to(device)).cpu()
        expected = model.cat_probability(output).flatten()
    torch.testing.assert_close(probabilities.sort().values, expected.sort().values)
    accuracy = ((expected > 0.5).float() == labels).float().mean().item()
    assert metrics["test/acc"] == pytest.approx(accuracy, abs=1e-6)
    assert len(dm.train_set) == 10 and len(dm.val_set) == 4
