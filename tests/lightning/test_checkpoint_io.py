"""AtomicCheckpointIO's background writes: serialised at the save, on disk at the next call."""

from __future__ import annotations

import shutil
import threading

import pytest
import torch

from gdtorch.lightning import AtomicCheckpointIO
from gdtorch.lightning import checkpoint_io as module


def _checkpoint(value: float) -> dict:
    return {"state_dict": {"w": torch.full((64,), value)}, "epoch": int(value)}


def _writer_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("gdtorch-ckpt")}


@pytest.fixture
def held(monkeypatch):
    """Holds every background write until ``held.set()``: the write in flight, made visible."""
    gate = threading.Event()
    real_write = module.atomic_write

    def held_write(target, data):
        assert gate.wait(timeout=30), "the test never released the write"
        real_write(target, data)

    monkeypatch.setattr(module, "atomic_write", held_write)
    yield gate
    gate.set()


def test_after_save_and_teardown_the_file_loads_and_the_writer_thread_is_gone(tmp_path):
    before = _writer_threads()
    io = AtomicCheckpointIO()
    targets = [tmp_path / "epoch0.ckpt", tmp_path / "sub" / "last.ckpt"]
    for value, target in enumerate(targets):
        io.save_checkpoint(_checkpoint(float(value)), target)
    started = _writer_threads() - before
    assert len(started) == 1  # one writer, one write at a time
    io.teardown()
    for value, target in enumerate(targets):  # read by torch itself, not through the IO
        loaded = torch.load(target, weights_only=True)
        assert torch.equal(loaded["state_dict"]["w"], torch.full((64,), float(value)))
    assert not any(thread.is_alive() for thread in started)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["epoch0.ckpt", "last.ckpt", "sub"]


def test_the_checkpoint_is_what_it_held_when_saved_not_when_written(tmp_path, held):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    checkpoint = _checkpoint(1.0)
    io.save_checkpoint(checkpoint, target)
    checkpoint["state_dict"]["w"].fill_(99.0)  # the next update, in place, before the write
    checkpoint["epoch"] = 99
    assert not target.exists()  # still in flight
    held.set()
    loaded = io.load_checkpoint(target)  # waits for the write
    assert loaded["epoch"] == 1 and loaded["state_dict"]["w"].eq(1.0).all()
    io.teardown()


@pytest.mark.parametrize("next_call", ["save", "load", "remove", "teardown"])
def test_a_failed_background_write_is_raised_by_the_next_call(tmp_path, held, next_call):
    io = AtomicCheckpointIO()
    folder = tmp_path / "checkpoints"
    io.save_checkpoint(_checkpoint(1.0), folder / "last.ckpt")
    shutil.rmtree(folder)  # removed while the write waits: it cannot create its temporary file
    held.set()
    calls = {
        "save": lambda: io.save_checkpoint(_checkpoint(2.0), tmp_path / "other.ckpt"),
        "load": lambda: io.load_checkpoint(tmp_path / "other.ckpt"),
        "remove": lambda: io.remove_checkpoint(tmp_path / "other.ckpt"),
        "teardown": io.teardown,
    }
    with pytest.raises(FileNotFoundError, match="checkpoints"):
        calls[next_call]()
    assert not (tmp_path / "other.ckpt").exists()  # a save that raised wrote nothing
    # Raised once: the IO goes on working.
    io.save_checkpoint(_checkpoint(3.0), tmp_path / "after.ckpt")
    io.teardown()
    assert torch.load(tmp_path / "after.ckpt", weights_only=True)["epoch"] == 3


def test_a_failed_write_is_raised_by_teardown_which_still_stops_the_writer(tmp_path, held):
    before = _writer_threads()
    io = AtomicCheckpointIO()
    folder = tmp_path / "checkpoints"
    io.save_checkpoint(_checkpoint(1.0), folder / "last.ckpt")
    started = _writer_threads() - before
    shutil.rmtree(folder)
    held.set()
    with pytest.raises(FileNotFoundError):
        io.teardown()
    assert started and not any(thread.is_alive() for thread in started)
    io.teardown()  # nothing left to raise
