"""Issue 16 item 1: no gdtorch load path runs code from a checkpoint.

A checkpoint whose pickle calls ``os.system("touch <tmp>/owned")`` is refused — never unpickled
— by every load path: the Python API (``CatClassifier.load_from_checkpoint``,
``AtomicCheckpointIO``, ``training_checkpoint_progress``), ``scripts/eval.py ckpt_path=…``,
``scripts/predict.py CKPT img.png`` and ``scripts/train.py ckpt_path=…`` (resume); from a local
path and from an ``http://`` URL; and with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which torch
honours only where ``weights_only`` is not passed (gdtorch always passes it). The refusal is a
clear one-line error naming the file, exit status 1, and nothing in it — nor in the errors it is
raised from — advises loading the file with ``weights_only=False``.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import threading
import traceback
from pathlib import Path

import pytest
import torch
from PIL import Image

from gdtorch.cli import user_message
from gdtorch.lightning import (
    AtomicCheckpointIO,
    CatClassifier,
    CheckpointError,
    training_checkpoint_progress,
)
from tests import cases
from tests.reliability.helpers import ROOT, TINY, python, subprocess_env

# torch's own advice, in any of its spellings: loading in full, or allowing the file's globals.
UNSAFE_ADVICE = re.compile(r"weights_only`?\W{0,3}(=|set to)\W{0,3}`?False|safe_globals", re.I)


class RunsCode:
    """Unpickling this runs ``os.system(command)``: the attack of the issue."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def classifier_checkpoint(folder: Path) -> dict:
    """The entries of a gdtorch-train checkpoint of the 16×16 default network (untrained)."""
    model = CatClassifier(
        input_shape=(3, 16, 16), config=cases.compose_train(folder / "run", *cases.TINY)
    )
    return {
        "epoch": 0,
        "global_step": 1,
        "loops": {},
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
    }


@pytest.fixture
def owned(tmp_path) -> Path:
    """The file the malicious checkpoint's code creates: it must never exist."""
    return tmp_path / "owned"


@pytest.fixture
def malicious(tmp_path, owned) -> Path:
    """A checkpoint that is a classifier checkpoint in every other way; its first entry runs
    ``touch <tmp>/owned`` when unpickled."""
    path = tmp_path / "malicious.ckpt"
    torch.save({"x": RunsCode(f"touch {owned}"), **classifier_checkpoint(tmp_path)}, path)
    return path


@pytest.fixture(params=["default-env", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1"])
def force_env(request, monkeypatch) -> dict[str, str]:
    """The environment variables of the case: none, or torch's switch to full unpickling."""
    extra = {} if request.param == "default-env" else {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    return extra


@pytest.fixture
def served(tmp_path):
    """``tmp_path`` served over HTTP on 127.0.0.1; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def assert_refused_safely(err: BaseException, path: str | Path, owned: Path) -> None:
    """A clear CheckpointError naming ``path``; no advice to unpickle anywhere in the chain."""
    assert isinstance(err, CheckpointError)
    assert str(path) in str(err)
    assert "never unpickled because unpickling can run code" in str(err)
    assert "posix.system" in str(err)  # what the file asked to import
    full = "".join(traceback.format_exception(err))
    assert not UNSAFE_ADVICE.search(full), full
    assert not UNSAFE_ADVICE.search(user_message(err))
    assert not owned.exists()


def test_the_payload_runs_code_when_a_file_is_unpickled_in_full(malicious, tmp_path):
    """The test's attack is real: plain unpickling runs it."""
    proof = tmp_path / "proof"
    path = tmp_path / "proof.ckpt"
    torch.save({"x": RunsCode(f"touch {proof}")}, path)
    torch.load(path, weights_only=False)
    assert proof.exists()


def test_the_python_api_refuses_the_file_without_running_it(malicious, owned, force_env):
    for load in (
        CatClassifier.load_from_checkpoint,
        AtomicCheckpointIO().load_checkpoint,
        training_checkpoint_progress,
    ):
        with pytest.raises(CheckpointError) as refused:
            load(malicious)
        assert_refused_safely(refused.value, malicious, owned)


def test_every_torch_load_of_the_python_api_passes_weights_only_true(
    malicious, tmp_path, monkeypatch
):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    good = tmp_path / "good.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint(classifier_checkpoint(tmp_path), good)
    io.teardown()
    calls, real_load = [], torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    CatClassifier.load_from_checkpoint(good)
    training_checkpoint_progress(good)
    with pytest.raises(CheckpointError):
        CatClassifier.load_from_checkpoint(malicious)
    assert calls == [True, True, True]


@pytest.mark.slow
def test_an_http_url_is_read_as_data_only(malicious, owned, served, force_env, tmp_path):
    url = f"{served}/{malicious.name}"
    with pytest.raises(CheckpointError) as refused:
        CatClassifier.load_from_checkpoint(url)
    assert_refused_safely(refused.value, url, owned)
    # ... while a good checkpoint loads from a URL, verified against its checksum.
    io = AtomicCheckpointIO()
    io.save_checkpoint(classifier_checkpoint(tmp_path), tmp_path / "good.ckpt")
    io.teardown()
    model = CatClassifier.load_from_checkpoint(f"{served}/good.ckpt")
    assert model.image_size == 16
    with pytest.raises(CheckpointError, match=f"checkpoint not found: {served}/missing.ckpt"):
        CatClassifier.load_from_checkpoint(f"{served}/missing.ckpt")


@pytest.mark.parametrize(
    "url", ["nosuchprotocol://bucket/last.ckpt", "s3://bucket/last.ckpt"], ids=["unknown", "s3"]
)
def test_a_url_no_file_system_can_open_is_a_clear_error(url):
    try:  # s3fs may be installed: then there is no bucket to reach, which is an error too
        CatClassifier.load_from_checkpoint(url)
    except CheckpointError as err:
        assert url in str(err)
    else:
        pytest.fail(f"{url} loaded")


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (20, 20), (200, 100, 50)).save(path)
    return path


def _command(name: str, checkpoint: str, tmp_path: Path) -> list[str]:
    script = str(ROOT / "scripts" / f"{name}.py")
    if name == "predict":
        return [python(), script, checkpoint, str(_image(tmp_path))]
    if name == "eval":
        return [python(), script, f"ckpt_path={checkpoint}", "trainer=cpu", "~logger"]
    return [python(), script, f"ckpt_path={checkpoint}", *TINY, "trainer.max_epochs=3"]


def run_command(name: str, checkpoint: str, tmp_path: Path, env: dict[str, str]):
    """``python scripts/<name>.py …`` from ``tmp_path``, as a user in that folder would."""
    return subprocess.run(
        _command(name, checkpoint, tmp_path),
        cwd=tmp_path,
        env={**subprocess_env(), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_refusal(result, name: str, checkpoint: str, owned: Path) -> None:
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert not UNSAFE_ADVICE.search(result.stderr + result.stdout), result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith(f"gdtorch-{name}: error: CheckpointError: cannot read checkpoint")
    assert checkpoint in errors[0] and "never unpickled" in errors[0]
    assert not owned.exists()


FORCED = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="default-env", marks=pytest.mark.slow),  # FORCED is the harder case
        pytest.param(FORCED, id="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1"),
    ],
)
@pytest.mark.slow
@pytest.mark.parametrize("name", ["eval", "predict", "train"])
def test_every_command_refuses_the_file_in_one_line(malicious, owned, tmp_path, env, name):
    result = run_command(name, str(malicious), tmp_path, env)
    assert_one_line_refusal(result, name, str(malicious), owned)
    assert not list(tmp_path.rglob("*/checkpoints/*.ckpt"))  # nothing trained


@pytest.mark.slow
def test_a_command_refuses_a_url_too(malicious, owned, served, tmp_path):
    url = f"{served}/{malicious.name}"
    assert_one_line_refusal(run_command("predict", url, tmp_path, FORCED), "predict", url, owned)


@pytest.mark.slow
def test_the_full_traceback_gives_no_advice_to_unpickle_either(malicious, owned, tmp_path):
    result = run_command("train", str(malicious), tmp_path, {**FORCED, "HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1 and "CheckpointError" in result.stderr
    assert not UNSAFE_ADVICE.search(result.stderr), result.stderr[-3000:]
    assert not owned.exists()
