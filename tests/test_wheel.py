"""The installed wheel is an app: gdtorch-train, -eval and -predict work from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from tests.cases import TINY

ROOT = Path(__file__).resolve().parent.parent
QUIET = [o for o in TINY if "enable_" in o]


@dataclass
class Installed:
    site: Path  # the wheel's files, installed with pip --target
    env: dict[str, str]  # the environment that runs them first
    cwd: Path  # a directory outside the repository

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.site / "bin" / command), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", ROOT]
    subprocess.run(build, check=True, timeout=600)
    (wheel,) = (tmp / "dist").glob("gdtorch-*.whl")
    install = [*pip, "install", "--no-deps", "-q", "--target", tmp / "site", wheel]
    subprocess.run(install, check=True, timeout=600)
    (tmp / "elsewhere").mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp / "site")}
    return Installed(tmp / "site", env, tmp / "elsewhere")


@pytest.mark.slow
def test_the_wheel_holds_the_configs_and_is_what_runs(installed):
    code = "import gdtorch.config as c, gdtorch; print(gdtorch.__file__); print(c.CONFIG_DIR)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=installed.cwd,
        env=installed.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    package, config_dir = (Path(line) for line in result.stdout.splitlines())
    assert package.is_relative_to(installed.site)  # not the repository's checkout
    assert config_dir == installed.site / "gdtorch" / "conf" and not config_dir.is_symlink()
    shipped = {p.relative_to(config_dir) for p in config_dir.rglob("*.yaml")}
    source = {p.relative_to(ROOT / "conf") for p in (ROOT / "conf").rglob("*.yaml")}
    assert shipped == source


@pytest.mark.slow
def test_train_eval_and_predict_run_from_outside_the_repository(installed):
    train = installed.run("gdtorch-train", *TINY, "hydra.run.dir=run")
    assert train.returncode == 0, train.stderr
    checkpoint = installed.cwd / "run" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    assert "test accuracy:" in train.stdout + train.stderr

    evaluate = installed.run("gdtorch-eval", *QUIET, f"ckpt_path={checkpoint}", "data.n_test=16")
    assert evaluate.returncode == 0, evaluate.stderr
    assert "test/acc: " in evaluate.stdout + evaluate.stderr

    Image.new("RGB", (30, 20), (200, 40, 40)).save(installed.cwd / "photo.jpg")
    predict = installed.run("gdtorch-predict", str(checkpoint), "photo.jpg", "--csv", "p.csv")
    assert predict.returncode == 0, predict.stderr
    path, probability, label = predict.stdout.strip().split("\t")
    assert path == "photo.jpg" and 0 <= float(probability) <= 1
    assert label == ("cat" if float(probability) > 0.5 else "not-cat")
    assert (installed.cwd / "p.csv").read_text().splitlines()[0] == "path,p_cat,label"
