"""AtomicCheckpointIO's background writes: serialised at the save, in order, errors raised later."""

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


class Gate:
    """Holds every background write until ``release()``; ``wait_written()`` until one is done."""

    def __init__(self) -> None:
        self.open, self.written = threading.Event(), threading.Event()

    def release(self) -> None:
        self.open.set()

    def wait_written(self) -> None:
        assert self.written.wait(timeout=30), "the write never finished"


@pytest.fixture
def held(monkeypatch):
    """A :class:`Gate` on the writes: the write in flight, made visible."""
    gate = Gate()
    real_write = module.atomic_write

    def held_write(target, data):
        assert gate.open.wait(timeout=30), "the test never released the write"
        try:
            real_write(target, data)
        finally:
            gate.written.set()

    monkeypatch.setattr(module, "atomic_write", held_write)
    yield gate
    gate.release()


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
    held.release()
    loaded = io.load_checkpoint(target)  # waits for the write
    assert loaded["epoch"] == 1 and loaded["state_dict"]["w"].eq(1.0).all()
    io.teardown()


def test_a_removal_is_queued_after_the_write_before_it(tmp_path, held):
    io = AtomicCheckpointIO()
    first, second = tmp_path / "epoch0.ckpt", tmp_path / "epoch1.ckpt"
    io.save_checkpoint(_checkpoint(0.0), first)
    io.remove_checkpoint(first)  # returns at once: the write is still held
    io.save_checkpoint(_checkpoint(1.0), second)
    assert not first.exists() and not second.exists()
    held.release()
    io.teardown()
    assert not first.exists()  # written, then removed: in the order asked for
    assert torch.load(second, weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("next_call", ["save", "load", "remove", "teardown"])
def test_a_failed_background_write_is_raised_by_the_next_call(tmp_path, held, next_call):
    io = AtomicCheckpointIO()
    folder = tmp_path / "checkpoints"
    io.save_checkpoint(_checkpoint(1.0), folder / "last.ckpt")
    shutil.rmtree(folder)  # removed while the write waits: it cannot create its temporary file
    held.release()
    held.wait_written()  # failed by now
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
    held.release()  # teardown waits for the write, however far it got
    with pytest.raises(FileNotFoundError):
        io.teardown()
    assert started and not any(thread.is_alive() for thread in started)
    io.teardown()  # nothing left to raise


def test_a_failure_is_raised_once_every_queued_write_is_done(tmp_path, held):
    io = AtomicCheckpointIO()
    folder = tmp_path / "checkpoints"
    io.save_checkpoint(_checkpoint(1.0), folder / "epoch1.ckpt")
    io.save_checkpoint(_checkpoint(2.0), tmp_path / "last.ckpt")  # queued behind it
    shutil.rmtree(folder)
    held.release()
    with pytest.raises(FileNotFoundError, match="checkpoints"):  # the first write's error
        io.load_checkpoint(tmp_path / "last.ckpt")
    # ... raised after the write queued behind it, which is on disk, whole.
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 2
    assert io.load_checkpoint(tmp_path / "last.ckpt")["epoch"] == 2  # raised once
    io.teardown()


def _every_kind_of_tensor() -> dict:
    base = torch.arange(12.0).reshape(3, 4)
    return {
        "state_dict": {
            "float32": base,
            "view": base.t()[1:],  # non-contiguous, sharing the storage of "float32"
            "bfloat16": base.to(torch.bfloat16),
            "float64": base.double(),
            "bool": base > 5,
            "int64": torch.arange(5),
            "scalar": torch.tensor(3.5),
            "empty": torch.empty(0, 3),
            "complex": torch.complex(base[0], -base[1]),
            "sparse": base.to_sparse(),
        },
        "optimizer_states": [{"state": {0: {"momentum_buffer": torch.ones(4)}}, "lr": 0.1}],
        "epoch": 1,
        "nothing": None,
    }


def test_every_kind_of_tensor_survives_the_checksum_round_trip(tmp_path):
    io = AtomicCheckpointIO()
    checkpoint = _every_kind_of_tensor()
    io.save_checkpoint(checkpoint, tmp_path / "kinds.ckpt")
    assert module.CHECKSUM_KEY not in checkpoint  # the caller's dict is left as it was
    loaded = io.load_checkpoint(tmp_path / "kinds.ckpt")  # verified, and the entry removed
    io.teardown()
    assert module.CHECKSUM_KEY not in loaded
    assert module.checkpoint_checksum(loaded) == module.checkpoint_checksum(checkpoint)
    for name, tensor in checkpoint["state_dict"].items():
        assert torch.equal(loaded["state_dict"][name].to_dense(), tensor.to_dense()), name


def test_the_checksum_sees_every_value_dtype_shape_and_place():
    checksum = module.checkpoint_checksum
    before = checksum(_every_kind_of_tensor())
    changes = {
        "one element": lambda c: c["state_dict"]["float32"].__setitem__((0, 0), -1.0),
        "dtype": lambda c: c["state_dict"].__setitem__("int64", torch.arange(5).int()),
        "shape": lambda c: c["state_dict"].__setitem__("int64", torch.arange(5).view(5, 1)),
        "a plain value": lambda c: c.__setitem__("epoch", 2),
        "a float": lambda c: c["optimizer_states"][0].__setitem__("lr", 0.1000001),
        "a key": lambda c: c["state_dict"].__setitem__("renamed", c["state_dict"].pop("bool")),
        "a buffer": lambda c: c["optimizer_states"][0]["state"][0]["momentum_buffer"].add_(1),
    }
    for change, apply in changes.items():
        checkpoint = _every_kind_of_tensor()
        apply(checkpoint)
        after = checksum(checkpoint)
        assert after["entries"] != before["entries"], change
    assert checksum(_every_kind_of_tensor()) == before  # and nothing else moves it
