"""gdtorch-eval as its user runs it: a saved checkpoint tested on any data, without training."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gdtorch.data import image_files
from gdtorch.lightning import CatClassifier
from gdtorch.train import run
from tests.cases import TINY, compose_train

ROOT = Path(__file__).resolve().parent.parent
QUIET = ["+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false"]


def _eval(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "eval.py"), *QUIET, *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _printed(output: str, name: str) -> float:
    """The value ``eval`` printed for metric ``name``."""
    (value,) = re.findall(rf"^{re.escape(name)}: ([0-9.]+)$", output, flags=re.MULTILINE)
    return float(value)


@pytest.mark.slow
def test_eval_tests_a_checkpoint_on_the_data_it_names(trained, tmp_path):
    result = _eval(
        f"ckpt_path={trained.checkpoint}", "data=folder", f"data.root={trained.root}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    # all of test/ again, prepared as in training: the run's own test accuracy, to the digit
    assert _printed(output, "test/acc") == round(trained.metrics["test/acc"], 4)
    assert _printed(output, "test/auroc") == round(trained.metrics["test/auroc"], 4)
    runs = list((tmp_path / "outputs" / "eval").glob("*/*"))
    assert len(runs) == 1 and (runs[0] / "gdtorch-eval.log").is_file()
    assert list((runs[0] / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_a_model_trained_on_synthetic_cats_is_tested_on_photos(trained, tmp_path):
    cfg = compose_train(tmp_path / "synthetic", *TINY)
    run(cfg)
    checkpoint = tmp_path / "synthetic" / "checkpoints" / "last.ckpt"
    result = _eval(
        f"ckpt_path={checkpoint}", "data=folder", f"data.root={trained.root}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    # the photos are made at the checkpoint's size and with its statistics, as predict does
    model = CatClassifier.load_from_checkpoint(checkpoint)
    paths = image_files(trained.root / "test")
    labels = torch.tensor([float(p.parent.name == "cat") for p in paths])
    accuracy = ((model.predict_images(paths) > 0.5).float() == labels).float().mean().item()
    assert _printed(result.stdout + result.stderr, "test/acc") == round(accuracy, 4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["ckpt_path=missing.ckpt"], "gdtorch-eval: error: CheckpointError: checkpoint not found"),
        ([], "gdtorch-eval: error: ValueError: gdtorch-eval needs ckpt_path=<a .ckpt file"),
    ],
)
@pytest.mark.slow
def test_eval_errors_are_one_line(tmp_path, overrides, message):
    result = _eval(*overrides, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
