"""Splits that leave too little to train, validate or test are refused before training.

Issue 16, item 2: a photo folder of 50 cats and 80 others with every ``data.*`` default
(``n_val=50``, ``n_test=50``, balancing on) left 0 training images, and the run trained nothing,
reported a test accuracy and exited 0; ``n_val``/``n_test`` that took all the data gave NaN
normalisation statistics. What a split must hold (``CatDataModule``'s docstring):

- every split at least one example, and the training split at least one cat and one non-cat:
  otherwise a ``ValueError`` from ``setup``, before any training step, naming the sizes asked
  for, the examples there are (before and after balancing) and the settings to change;
- a validation or test split of one class only is allowed, with a warning (AUROC needs both);
- a channel that hardly varies over the training images (std < 1/255) is centred but not
  scaled, with a warning, instead of dividing other images by ~1e-7.
"""

from __future__ import annotations

import pickle
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from gdtorch.data import CatDataModule
from gdtorch.lightning import CatClassifier
from gdtorch.train import run
from tests.cases import compose_train, write_photos
from tests.data.conftest import write_fake_cifar
from tests.reliability.helpers import ROOT, TRAIN_SCRIPT, python, subprocess_env

# The issue's run: conf/data/folder.yaml as it is (n_train all the rest, n_val 50, n_test 50,
# balance on for a flat folder), on the CPU, quiet.
QUIET = [
    "trainer=cpu",
    "~logger",
    "callbacks.tensorboard_extras=null",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]
ISSUE_MESSAGE = [
    "asked for n_test=50, n_val=50, n_train=None (the rest)",
    "balanced (data.balance) from 130 examples (50 cats, 80 non-cats)",
    "has only 100 examples (50 cats, 50 non-cats), which leaves no example for n_train",
    "lower data.n_test and data.n_val to add up to less than 100",
    "or set data.balance=false to split all 130 images",
]


@pytest.fixture
def issue_photos(tmp_path: Path) -> Path:
    """The issue's folder: ``photos/cat`` (50 images) and ``photos/other`` (80)."""
    root = tmp_path / "photos"
    write_photos(root, {"cat": 50, "other": 80}, seed=0)
    return root


def test_the_issues_photo_folder_is_refused_before_training(issue_photos, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a training step ran")

    monkeypatch.setattr(CatClassifier, "training_step", no_training)
    cfg = compose_train(tmp_path / "run", *QUIET, "data=folder", f"data.root={issue_photos}")
    with pytest.raises(ValueError) as error:
        run(cfg)
    for text in ISSUE_MESSAGE:
        assert text in str(error.value), str(error.value)
    assert not list((tmp_path / "run").rglob("*.ckpt"))


@pytest.mark.slow
def test_the_cli_exits_1_with_the_one_line_message(issue_photos, tmp_path):
    result = subprocess.run(
        [
            python(),
            str(TRAIN_SCRIPT),
            "data=folder",
            f"data.root={issue_photos}",
            "+trainer.enable_progress_bar=false",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [s for s in result.stderr.splitlines() if s.startswith("gdtorch-train: error:")]
    assert line.startswith("gdtorch-train: error: ValueError: asked for n_test=50"), line
    for text in ISSUE_MESSAGE:
        assert text in line, line
    assert "test accuracy" not in result.stdout + result.stderr


# --------------------------------------------------------------------------- every source


def fake_cifar(root: Path, cats: bool = True) -> Path:
    """A small CIFAR-10 copy (200 training images, 20 cats; 50 test images, 5 cats), or one
    whose cats are all relabelled as deer."""
    write_fake_cifar(root, per_batch=40, n_test=50)
    if not cats:
        for path in (root / "cifar-10-batches-py").glob("*_batch*"):
            entry = pickle.loads(path.read_bytes())
            entry["labels"] = [4 if label == 3 else label for label in entry["labels"]]
            path.write_bytes(pickle.dumps(entry, protocol=2))
    return root


def flat_folder(root: Path) -> Path:
    """``root/cat`` (6 photos) and ``root/other`` (9)."""
    write_photos(root, {"cat": 6, "other": 9}, seed=3)
    return root


def fixed_folder(root: Path, train: dict[str, int], test: dict[str, int]) -> Path:
    write_photos(root / "train", train, seed=4)
    write_photos(root / "test", test, seed=5)
    return root


CASES = {
    # a flat photo folder: 6 cats + 9 others, balanced to 6 + 6 unless balance is off
    "folder: n_val + n_test take everything": (
        lambda tmp: flat_folder(tmp / "p"),
        {"source": "folder", "n_train": None, "n_val": 10, "n_test": 5, "balance": False},
        r"asked for n_test=5, n_val=10, n_train=None \(the rest\) but photo folder \S+ has only "
        r"15 examples \(6 cats, 9 non-cats\), which leaves no example for n_train: lower "
        r"data\.n_test and data\.n_val to add up to less than 15\.$",
    ),
    "folder: the sizes add up to more than there is": (
        lambda tmp: flat_folder(tmp / "p"),
        {"source": "folder", "n_train": 4, "n_val": 5, "n_test": 5},
        r"n_test=5, n_val=5, n_train=4 but photo folder \S+, balanced \(data\.balance\) from 15 "
        r"examples \(6 cats, 9 non-cats\), has only 12 examples \(6 cats, 6 non-cats\): lower "
        r"data\.n_test, data\.n_val and data\.n_train to add up to at most 12, or set "
        r"data\.balance=false to split all 15 images\.$",
    ),
    "folder: a training split of one image": (
        lambda tmp: flat_folder(tmp / "p"),
        {"source": "folder", "n_train": None, "n_val": 7, "n_test": 4},
        r"the training split holds 1 example \((1 cat, 0 non-cats|0 cats, 1 non-cat)\): a "
        r"classifier needs cats and non-cats to learn from\. Lower data\.n_val or data\.n_test "
        r"to leave more for training, or set data\.balance=true if one class is rare\.$",
    ),
    "fixed folder: n_val takes all of train/": (
        lambda tmp: fixed_folder(tmp / "p", {"cat": 3, "other": 4}, {"cat": 2, "other": 2}),
        {"source": "folder", "n_train": None, "n_val": 7},
        r"n_val=7, n_train=None \(the rest\) but photo folder \S+train has only 7 examples "
        r"\(3 cats, 4 non-cats\), which leaves no example for n_train: lower data\.n_val",
    ),
    "fixed folder: a training draw of one class": (
        lambda tmp: fixed_folder(tmp / "p", {"cat": 1, "other": 6}, {"cat": 2, "other": 2}),
        {"source": "folder", "n_train": 1, "n_val": 2},
        r"the training split holds 1 example \(\d cats?, \d non-cats?\): .* Raise data\.n_train "
        r"\(now 1\): the random draw took one class, or set data\.balance=true",
    ),
    "fixed folder: an empty test/": (
        lambda tmp: fixed_folder(tmp / "p", {"cat": 3, "other": 3}, {"cat": 1, "other": 1}),
        {"source": "folder", "n_train": None, "n_val": 2, "empty_test": True},
        r"class folder \S+test/cat holds no images",
    ),
    "synthetic: one training image": (
        lambda tmp: None,
        {"source": "synthetic", "n_train": 1, "n_val": 2, "n_test": 2},
        r"the training split holds 1 example \(1 cat, 0 non-cats\): .* raise data\.n_train to 2",
    ),
    "cifar10: n_val takes the balanced training set": (
        lambda tmp: fake_cifar(tmp / "c"),
        {"source": "cifar10", "n_train": None, "n_val": 40, "n_test": 10},
        r"n_val=40, n_train=None \(the rest\) but CIFAR-10's training set in \S+ \(balanced by "
        r"data\.balance: every cat and as many non-cats\) has only 40 examples \(20 cats, 20 "
        r"non-cats\), which leaves no example for n_train: lower data\.n_val to add up to less "
        r"than 40, or set data\.balance=false",
    ),
    "cifar10: n_test beyond the test set": (
        lambda tmp: fake_cifar(tmp / "c"),
        {"source": "cifar10", "n_train": 20, "n_val": 10, "n_test": 11, "balance": True},
        r"asked for n_test=11 but CIFAR-10's test set in \S+ \(balanced .*\) has only 10 "
        r"examples \(5 cats, 5 non-cats\): lower data\.n_test to add up to at most 10",
    ),
    "cifar10: balancing data without cats": (
        lambda tmp: fake_cifar(tmp / "c", cats=False),
        {"source": "cifar10", "n_train": 20, "n_val": 10, "n_test": 10},
        r"cannot balance 200 examples of which 0 are cats and 200 non-cats: .* turn balancing "
        r"off \(balance=False, data\.balance=false\)",
    ),
    "cifar10: no cats, unbalanced": (
        lambda tmp: fake_cifar(tmp / "c", cats=False),
        {"source": "cifar10", "n_train": 20, "n_val": 10, "n_test": 10, "balance": False},
        r"the training split holds 20 examples \(0 cats, 20 non-cats\)",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_every_source_refuses_a_split_left_with_too_little(case, tmp_path):
    make, kwargs, message = CASES[case]
    root, kwargs = make(tmp_path), dict(kwargs)
    if kwargs.pop("empty_test", False):
        for folder in (root / "test").iterdir():
            shutil.rmtree(folder)
            folder.mkdir()
    dm = CatDataModule(root=root, image_size=16, **kwargs)  # sizes are checked in setup
    with pytest.raises(ValueError, match=message):
        dm.setup()


def test_the_smallest_accepted_splits_give_finite_statistics_and_warn_of_one_class():
    dm = CatDataModule(n_train=2, n_val=1, n_test=1, image_size=16)  # SyntheticCats
    with pytest.warns(UserWarning) as warned:
        dm.setup()
    messages = [str(w.message) for w in warned]
    for split, stage in (("validation", "val"), ("test", "test")):
        (line,) = [m for m in messages if m.startswith(f"the {split} split holds")]
        assert f"1 example (1 cat, 0 non-cats): {stage}/auroc needs both classes" in line
        assert f"raise data.n_{stage} (now 1)" in line
    assert sorted(dm.train_set.targets.tolist()) == [0.0, 1.0]
    assert torch.isfinite(dm.mean).all() and torch.isfinite(dm.std).all()
    assert (dm.std > 0.01).all()


def test_a_channel_constant_in_training_is_centred_not_blown_up(tmp_path):
    # Training: red cats and yellow others, so red is 1.0 everywhere (std 0). The test images
    # are darker: dividing by std clamped at float32's eps would put them near -4e6.
    root = tmp_path / "photos"
    for part, colours in (
        ("train", {"cat": (255, 0, 0), "other": (255, 255, 0)}),
        ("test", {"cat": (128, 0, 0), "other": (128, 128, 0)}),
    ):
        for name, colour in colours.items():
            (root / part / name).mkdir(parents=True)
            for k in range(3):
                Image.new("RGB", (8, 8), colour).save(root / part / name / f"{k}.png")
    dm = CatDataModule(source="folder", root=root, n_train=None, n_val=2, image_size=8)
    with pytest.warns(UserWarning, match=r"hardly vary in channel R \(std 0\).*not scaled"):
        dm.setup()
    assert dm.std[0] == 1 and dm.mean[0] == 1
    images, _ = next(iter(dm.test_dataloader()))
    assert images.abs().max() < 10
    torch.testing.assert_close(images[:, 0], torch.full_like(images[:, 0], 128 / 255 - 1))


def test_the_message_names_every_setting_it_proposes_as_a_real_config_key(tmp_path):
    # Each data.<key> an error proposes is a key of conf/data/folder.yaml and cifar10.yaml.
    names = set()
    for case in CASES.values():
        names |= set(re.findall(r"data\\\.(\w+)", case[2]))
    for name in ISSUE_MESSAGE:
        names |= set(re.findall(r"data\.(\w+)", name))
    for group in ("folder", "cifar10"):
        data = compose_train(tmp_path, f"data={group}", "data.root=x").data
        assert names <= set(data), names - set(data)
