"""README.md is a test: every train command and every Python snippet in it runs as written.

Train commands (``bash scripts/train.sh …``, ``gdtorch-train …``) run in a fresh folder, as a
user in their own folder would, with tiny sizes appended (a key the command sets itself is left
as written). A command that needs what this machine may lack — CIFAR-10 files and a network, a
GPU — must then end with the clear one-line error the README documents for it. ``bash
scripts/test.sh`` lines are not run: they are this suite. Python snippets run, each in its own
interpreter.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests import test_cli, test_train, test_wheel
from tests.cases import TINY, write_photos
from tests.experiments import test_studies
from tests.reliability import test_ddp, test_resume

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
_spec = importlib.util.spec_from_file_location("learning_table", ROOT / "scripts/learning_table.py")
learning_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(learning_table)

TRAIN_COMMANDS = learning_table.readme_train_commands(README)
PYTHON_SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
USE_COMMANDS = [
    line
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL)
    for line in block.splitlines()
    if re.match(r"(gdtorch-(predict|eval)|python scripts/(predict|eval)\.py) ", line)
]
RUN_DIR = "outputs/…"  # the README's trained run, in the use commands and snippets


def _online() -> bool:
    try:
        socket.create_connection(("www.cs.toronto.edu", 443), timeout=3).close()
    except OSError:
        return False
    return True


def _expected_error(command: str) -> str | None:
    """The README's documented error for a command this machine cannot run, else ``None``."""
    devices = re.search(r"trainer\.devices=(\d+)", command)
    wanted = int(devices.group(1)) if devices else 1
    if "trainer.accelerator=gpu" in command and torch.cuda.device_count() < wanted:
        return "gdtorch-train: error: MisconfigurationException"
    if "data=cifar10" in command and not _online():
        return "gdtorch-train: error: ConnectionError: cannot download CIFAR-10"
    return None


def _with_tiny_sizes(command: str) -> str:
    words = shlex.split(command, comments=True)
    keys = {w.split("=")[0].lstrip("+~") for w in words if "=" in w}
    extra = [o for o in TINY if o.split("=")[0].lstrip("+") not in keys]
    if words[:2] == ["bash", "scripts/train.sh"]:
        words[1] = str(ROOT / "scripts" / "train.sh")
    return shlex.join(words + extra)


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_readme_has_train_commands_and_snippets():
    assert len(TRAIN_COMMANDS) >= 8 and len(PYTHON_SNIPPETS) >= 4
    assert {line.split()[0] for line in USE_COMMANDS} >= {"gdtorch-predict", "gdtorch-eval"}


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> Path:
    """A user's folder after a tiny default run, with the photos the README's examples name."""
    folder = tmp_path_factory.mktemp("user")
    first = _run(_with_tiny_sizes("bash scripts/train.sh"), folder)
    assert first.returncode == 0, first.stderr[-3000:]
    (checkpoint,) = folder.glob("outputs/*/*/checkpoints/last.ckpt")
    (folder / "run_dir.txt").write_text(str(checkpoint.parent.parent.relative_to(folder)))
    write_photos(folder / "photos", {"cat": 70, "other": 70}, seed=0)
    Image.new("RGB", (40, 30), (200, 60, 40)).save(folder / "my_cat.jpg")
    Image.new("RGB", (30, 40), (40, 60, 200)).save(folder / "my_car.png")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("command", USE_COMMANDS)
def test_every_use_command_in_the_readme_runs_as_written(command, user_folder):
    command = command.replace(RUN_DIR, (user_folder / "run_dir.txt").read_text())
    command = command.replace("python scripts/", f"python {ROOT}/scripts/")  # from the repo
    if "eval" in command.split()[0] or "eval.py" in command:
        command = _with_tiny_sizes(command)  # quiet, and sizes the photo folder holds
    result = _run(command, user_folder)
    assert result.returncode == 0, result.stderr[-3000:]
    if "predict" in command:
        lines = [line.split("\t") for line in result.stdout.splitlines()]
        named = [w for w in shlex.split(command) if w.endswith((".jpg", ".png"))]
        assert {path for path, _, _ in lines} >= set(named) and all(len(x) == 3 for x in lines)
    else:
        assert re.search(r"^test/acc: [0-9.]+$", result.stdout + result.stderr, re.MULTILINE)


@pytest.mark.slow
@pytest.mark.parametrize("command", TRAIN_COMMANDS)
def test_every_train_command_in_the_readme_runs_as_written(command, tmp_path):
    if "ckpt_path=outputs/…/" in command:  # resume the run an earlier command made
        first = _run(_with_tiny_sizes("bash scripts/train.sh"), tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]
        (checkpoint,) = tmp_path.glob("outputs/*/*/checkpoints/last.ckpt")
        run_dir = checkpoint.parent.parent.relative_to(tmp_path)
        command = command.replace("outputs/…", str(run_dir))
    result = _run(_with_tiny_sizes(command), tmp_path)
    expected = _expected_error(command)
    if expected is None:
        assert result.returncode == 0, result.stderr[-3000:]
        assert "test accuracy:" in result.stdout
    else:
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert lines[-2].startswith(expected), result.stderr[-3000:]
        assert lines[-1] == "(set HYDRA_FULL_ERROR=1 for the full traceback)"
        assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("snippet", PYTHON_SNIPPETS, ids=lambda s: s.splitlines()[0][:40])
def test_every_python_snippet_in_the_readme_runs(snippet, tmp_path, request):
    # a snippet that uses a trained run runs in the user's folder that has one
    cwd = tmp_path
    if RUN_DIR in snippet:
        cwd = request.getfixturevalue("user_folder")
        snippet = snippet.replace(RUN_DIR, (cwd / "run_dir.txt").read_text())
    result = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_every_relative_link_in_the_readme_is_inside_the_repository():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in target:
            path = (ROOT / target).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), target
    assert "../" not in README


def test_the_tests_the_readme_calls_slow_are_marked_slow():
    """What ``-m "not slow"`` leaves out, as the README's Quick start lists it."""
    slow = [
        test_every_train_command_in_the_readme_runs_as_written,
        test_train.test_the_shipped_defaults_learn_in_every_mode,
        test_ddp.test_trainer_ddp_config_trains_on_two_processes_like_one,
        test_ddp.test_weights_and_momentum_after_n_steps_equal_one_process,
        test_resume.test_a_run_killed_with_sigkill_resumes_to_the_same_weights_as_an_uninterrupted_run,
        test_cli.test_resuming_as_the_readme_says_continues_the_same_run,
        test_every_python_snippet_in_the_readme_runs,
        test_wheel.test_train_eval_and_predict_run_from_outside_the_repository,
        test_studies.test_gd_modes,
    ]
    for test in slow:
        assert "slow" in {mark.name for mark in test.pytestmark}, test.__name__


def test_the_readme_has_its_learning_table():
    assert "LEARNING_TABLE" not in README  # the placeholder it replaced
    rows = [line for line in README.splitlines() if line.startswith("| `bash scripts/train.sh")]
    assert len(rows) >= 7
