"""Using a trained model as its user does: gdtorch-predict and the Python call on photos."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from gdtorch.data import image_files, load_image
from gdtorch.lightning import CatClassifier

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SIZE = 16


def _labels(paths: list[Path]) -> torch.Tensor:
    return torch.tensor([float(path.parent.name == "cat") for path in paths])


def _predict(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "predict.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_checkpoint_alone_is_the_classifier_the_run_tested(trained):
    model = CatClassifier.load_from_checkpoint(trained.checkpoint)
    assert not model.training and model.image_size == IMAGE_SIZE
    paths = image_files(trained.root / "test")
    assert len(paths) == 30
    probabilities = model.predict_images(paths)
    labels = _labels(paths)
    accuracy = ((probabilities > 0.5).float() == labels).float().mean().item()
    assert 0.5 < trained.metrics["test/acc"] < 1  # a model that learned, not a constant
    assert accuracy == trained.metrics["test/acc"]  # the same photos, the same answers
    auroc = binary_auroc(probabilities, labels.long()).item()
    assert auroc == pytest.approx(trained.metrics["test/auroc"], abs=1e-6)
    # the training split's statistics travel in the checkpoint
    assert torch.equal(model.input_mean, trained.data.mean)
    assert torch.equal(model.input_std, trained.data.std)
    assert len(trained.data.test_set) == 30  # all of test/


@pytest.mark.slow
def test_predict_prints_each_image_and_its_csv_gives_the_runs_test_accuracy(trained, tmp_path):
    result = _predict(
        str(trained.checkpoint), str(trained.root / "test"), "--csv", "p.csv", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(lines) == 30 and all(label in ("cat", "not-cat") for *_, label in lines)
    with open(tmp_path / "p.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["path"] for row in rows] == [path for path, _, _ in lines]
    paths = [Path(row["path"]) for row in rows]
    correct = [
        (row["label"] == "cat") == (path.parent.name == "cat")
        for row, path in zip(rows, paths, strict=True)
    ]
    # the same count of right answers, as the run's float32 accuracy holds it
    assert torch.tensor(sum(correct) / len(correct)).item() == trained.metrics["test/acc"]
    model = CatClassifier.load_from_checkpoint(trained.checkpoint)
    expected = model.predict_images(paths).tolist()
    assert [float(row["p_cat"]) for row in rows] == expected  # the CSV keeps every digit
    assert [float(p) for _, p, _ in lines] == pytest.approx(expected, abs=5e-5)


@pytest.mark.slow
def test_a_bad_file_is_named_on_one_line_and_the_others_still_run(trained, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    good = image_files(trained.root / "test" / "cat")[:2]
    result = _predict(
        str(trained.checkpoint),
        str(good[0]),
        "broken.png",
        "missing.jpg",
        str(good[1]),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(p) for p in good]
    errors = result.stderr.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith("gdtorch-predict: error: broken.png: cannot read image broken.png")
    assert errors[1] == "gdtorch-predict: error: missing.jpg: no such file or folder"


@pytest.mark.slow
def test_an_unusable_checkpoint_is_one_line(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    result = _predict("nothing.ckpt", "x.png", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "gdtorch-predict: error: CheckpointError: checkpoint not found: nothing.ckpt (give the "
        "path of a .ckpt file, e.g. outputs/<date>/<time>/checkpoints/last.ckpt)"
    )


def test_the_same_photo_gives_the_same_probability_in_prediction_and_in_the_data(trained):
    model = CatClassifier.load_from_checkpoint(trained.checkpoint)
    path = image_files(trained.root / "test")[0]
    decoded = load_image(path, IMAGE_SIZE).float().div(255)
    normalised = (decoded - model.input_mean.view(-1, 1, 1)) / model.input_std.view(-1, 1, 1)
    with torch.no_grad():
        expected = model.cat_probability(model(normalised[None])).flatten()
    assert torch.equal(model.predict_images([path]), expected)
