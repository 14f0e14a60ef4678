"""Kill and resume: checkpoints are whole, load as data (weights_only), and resuming is exact.

How a checkpoint reaches the disk. ``ModelCheckpoint`` → ``Trainer.save_checkpoint`` →
``Strategy.save_checkpoint`` → ``CheckpointIO.save_checkpoint``. Lightning's default,
``TorchCheckpointIO``, calls ``lightning.fabric.utilities.cloud_io._atomic_save``: it
``torch.save``-s into a ``BytesIO`` and writes the bytes inside an ``fsspec`` transaction. For a
local path, ``fsspec.implementations.local.LocalFileOpener`` stages the bytes in
``tempfile.mkstemp()`` — in ``$TMPDIR``, not beside the target — and ``commit`` moves it with
``shutil.move``: an atomic ``os.rename`` only when ``$TMPDIR`` is on the checkpoint folder's
file system, otherwise a copy onto the target (truncate, then write), which a kill leaves
half-written; and nothing is ``fsync``-ed. ``gdtorch.train.run`` therefore gives the trainer
:class:`gdtorch.lightning.AtomicCheckpointIO`: temporary file beside the target, ``fsync``,
``os.replace``, ``fsync`` of the folder; and a ``weights_only=True`` load.

Resuming. ``Trainer.fit(ckpt_path=...)`` → ``Strategy.load_checkpoint(path, weights_only)`` →
``CheckpointIO.load_checkpoint``. Lightning 2.6 passes ``weights_only=None`` through to
``torch.load`` (``lightning.fabric.utilities.cloud_io._load``), which means ``True`` on torch
>= 2.6 unless ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set, and ``False`` on older torch;
Lightning before 2.6 passes ``False``. ``AtomicCheckpointIO`` loads with ``True`` always.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import torch
from fsspec.core import url_to_fs

from gdtorch.lightning import AtomicCheckpointIO, CheckpointError
from gdtorch.train import run
from tests.cases import compose_train
from tests.reliability.helpers import (
    TINY,
    TRAIN_SCRIPT,
    all_finite,
    load_checkpoint,
    python,
    sha256,
    subprocess_env,
)


def test_lightnings_own_save_stages_the_file_in_tmpdir_not_beside_the_target(tmp_path):
    """Why gdtorch brings its own CheckpointIO (see the module docstring)."""
    fs, path = url_to_fs(str(tmp_path / "last.ckpt"))
    with fs.transaction, fs.open(path, "wb") as file:
        staged = Path(file.temp)
        file.write(b"data")
    tmpdir = Path(tempfile.gettempdir())
    assert staged.parent in {tmpdir, tmpdir.resolve()}
    assert staged.parent != tmp_path  # a rename from there is a copy across file systems


def _checkpoint(value: float) -> dict:
    return {"state_dict": {"w": torch.full((256,), value)}, "epoch": int(value)}


def test_atomic_save_writes_a_whole_loadable_file_with_normal_permissions(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "sub" / "last.ckpt"
    io.save_checkpoint(_checkpoint(1.0), target)
    io.save_checkpoint(_checkpoint(2.0), target)  # replaces
    assert io.load_checkpoint(target)["state_dict"]["w"].eq(2.0).all()
    assert os.listdir(target.parent) == ["last.ckpt"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("crash_in", ["write", "fsync", "replace"])
def test_a_save_killed_midway_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch, crash_in):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint(_checkpoint(1.0), target)
    io.teardown()  # the write runs on a background thread: wait for it
    before = sha256(target)

    real_fdopen = os.fdopen

    class HalfWritten:
        def __init__(self, *args, **kwargs):
            self.file = real_fdopen(*args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            self.file.write(bytes(data)[: len(data) // 2])
            self.file.flush()
            raise KeyboardInterrupt  # the process dies here

        def __getattr__(self, name):
            return getattr(self.file, name)

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    if crash_in == "write":
        monkeypatch.setattr(os, "fdopen", HalfWritten)
    else:
        monkeypatch.setattr(os, crash_in, die)
    with pytest.raises(KeyboardInterrupt):  # raised in the writer thread, re-raised here
        io.save_checkpoint(_checkpoint(2.0), target)
        io.teardown()
    monkeypatch.undo()

    assert sha256(target) == before
    assert io.load_checkpoint(target)["state_dict"]["w"].eq(1.0).all()
    assert os.listdir(tmp_path) == ["last.ckpt"]


class NotData:
    """Any class: unpickling it means importing and running code named by the file."""


def test_loading_refuses_anything_but_data_unless_told_otherwise(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "extra": NotData()}, path)
    io = AtomicCheckpointIO()
    with pytest.raises(CheckpointError, match="never unpickled") as refused:
        io.load_checkpoint(path)
    assert isinstance(refused.value.__cause__, pickle.UnpicklingError)
    assert "weights_only=False" not in str(refused.value)  # no advice to run the file's code
    assert isinstance(io.load_checkpoint(path, weights_only=False)["extra"], NotData)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        io.load_checkpoint(tmp_path / "missing.ckpt")


def test_run_saves_atomically_and_resumes_with_weights_only_loading(tmp_path, monkeypatch):
    saved, loads = [], []
    real_save, real_load = AtomicCheckpointIO.save_checkpoint, torch.load

    def spy_save(self, checkpoint, path, storage_options=None):
        saved.append(Path(path).name)
        return real_save(self, checkpoint, path, storage_options)

    def spy_load(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", spy_save)
    overrides = [*TINY, "data.mode=batch", "callbacks.early_stopping=null"]
    run(compose_train(tmp_path, *overrides, "trainer.max_epochs=2"))
    assert "last.ckpt" in saved
    folder = tmp_path / "checkpoints"
    for path in folder.glob("*.ckpt"):  # every checkpoint is plain data
        checkpoint = load_checkpoint(path)
        assert all_finite(checkpoint["state_dict"])
        assert isinstance(checkpoint["hyper_parameters"]["config"], dict)

    # Even where torch's default is switched to full unpickling, resuming stays weights-only.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setattr(torch, "load", spy_load)
    resumed = compose_train(
        tmp_path / "resumed", *overrides, "trainer.max_epochs=3", f"ckpt_path={folder}/last.ckpt"
    )
    run(resumed)
    assert loads and all(weights_only is True for weights_only in loads), loads
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")["epoch"] == 2


# A run long enough to be killed mid-training (about 0.2 s per epoch of 64 one-example steps),
# deterministic on the CPU, with momentum so that the optimizer state must be restored too.
MAX_EPOCHS = 12
KILLABLE = [
    *TINY,
    "trainer.deterministic=true",
    f"trainer.max_epochs={MAX_EPOCHS}",
    "data.mode=stochastic",
    "optimizer=momentum",
    "optimizer.lr=0.005",
    "callbacks.early_stopping=null",
]


def _train(run_dir: Path, *extra: str) -> subprocess.Popen:
    log = (run_dir.parent / f"{run_dir.name}.log").open("w")
    command = [python(), str(TRAIN_SCRIPT), f"hydra.run.dir={run_dir}", *KILLABLE, *extra]
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(), cwd=run_dir.parent
    )


def _wait(process: subprocess.Popen, run_dir: Path, timeout: float = 120) -> None:
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    log = (run_dir.parent / f"{run_dir.name}.log").read_text()
    assert code == 0, log[-3000:]


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_same_weights_as_an_uninterrupted_run(tmp_path):
    uninterrupted_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    uninterrupted = _train(uninterrupted_dir)
    killed = _train(killed_dir)
    last = killed_dir / "checkpoints" / "last.ckpt"
    try:
        deadline = time.monotonic() + 120
        while not last.exists():  # the first checkpoint: the end of epoch 0
            assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=30) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            killed.kill()

    # Whatever the kill interrupted, last.ckpt is a whole checkpoint of a finished epoch.
    assert not list(last.parent.glob("*.tmp"))  # (only an orphan temporary file may remain)
    at_kill = load_checkpoint(last)
    assert at_kill["epoch"] < MAX_EPOCHS - 1, "the kill came too late to interrupt training"

    resumed = _train(killed_dir, f"ckpt_path={last}")
    _wait(resumed, killed_dir)
    _wait(uninterrupted, uninterrupted_dir)

    expected = load_checkpoint(uninterrupted_dir / "checkpoints" / "last.ckpt")
    actual = load_checkpoint(last)
    assert actual["epoch"] == expected["epoch"] == MAX_EPOCHS - 1
    assert actual["global_step"] == expected["global_step"]
    assert actual["state_dict"].keys() == expected["state_dict"].keys()
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(actual["state_dict"][name], tensor), name
    expected_buffers = expected["optimizer_states"][0]["state"]
    actual_buffers = actual["optimizer_states"][0]["state"]
    assert expected_buffers.keys() == actual_buffers.keys() and expected_buffers
    for key, state in expected_buffers.items():
        assert torch.equal(actual_buffers[key]["momentum_buffer"], state["momentum_buffer"])
