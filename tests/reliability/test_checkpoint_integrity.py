"""Issue 16 item 8: a corrupted checkpoint is an error naming the file, never a silent load.

Every checkpoint gdtorch writes carries a SHA-256 checksum of its entries (``AtomicCheckpointIO``),
and every gdtorch load verifies it: resuming (``run(cfg)`` with ``ckpt_path=``, Lightning's
``CheckpointIO``), ``training_checkpoint_progress``, ``CatClassifier.load_from_checkpoint``,
``gdtorch-eval`` and ``gdtorch-predict``. ``torch.load`` itself checks nothing of the kind: the
zip records torch writes are read without their CRC, so flipped bytes in the tensor data load
as other weights (the issue: rc 0 and weights of −6753). A file that is no checkpoint at all —
empty, truncated, random bytes, JSON, a plain tensor — is a ``CheckpointError`` naming it too,
never a bare ``EOFError`` or ``KeyError``.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from gdtorch.lightning import (
    AtomicCheckpointIO,
    CatClassifier,
    CheckpointError,
    training_checkpoint_progress,
)
from gdtorch.lightning.checkpoint_io import CHECKSUM_KEY, checkpoint_checksum
from gdtorch.train import build, run
from tests.cases import compose_train
from tests.reliability.helpers import ROOT, TINY, python, subprocess_env

RUN = [*TINY, "trainer.max_epochs=2", "callbacks.early_stopping=null", "data.mode=minibatch"]
LOADERS = {
    "io": lambda path: AtomicCheckpointIO().load_checkpoint(path),
    "classifier": CatClassifier.load_from_checkpoint,
    "progress": training_checkpoint_progress,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The ``last.ckpt`` of a two-epoch run, written by ``run(cfg)``."""
    folder = tmp_path_factory.mktemp("trained")
    run(compose_train(folder, *RUN))
    return folder / "checkpoints" / "last.ckpt"


@pytest.fixture
def checkpoint(trained, tmp_path) -> Path:
    """A copy of the run's ``last.ckpt``, to damage."""
    return Path(shutil.copy(trained, tmp_path / "last.ckpt"))


def tensor_records(path: Path) -> list[tuple[int, int]]:
    """``(offset, size)`` in the file of each tensor data record (``<archive>/data/<key>``)."""
    data = path.read_bytes()
    regions = []
    for info in zipfile.ZipFile(path).infolist():
        parts = info.filename.split("/")
        if len(parts) == 3 and parts[1] == "data" and info.file_size:
            start = info.header_offset  # the local header: 30 bytes, the name, the extra field
            name_length = int.from_bytes(data[start + 26 : start + 28], "little")
            extra_length = int.from_bytes(data[start + 28 : start + 30], "little")
            regions.append((start + 30 + name_length + extra_length, info.file_size))
    return regions


def flip_bytes(path: Path, offsets: list[int], seed: int) -> None:
    """XORs the byte at each offset with a random non-zero value."""
    rng = random.Random(seed)
    data = bytearray(path.read_bytes())
    for offset in offsets:
        data[offset] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(data))


def flip_in_tensor_data(path: Path, seed: int, count: int = 20) -> None:
    """Flips ``count`` bytes at random offsets inside the tensor data records of ``path``."""
    rng = random.Random(seed)
    regions = tensor_records(path)
    weights = [size for _, size in regions]
    offsets = []
    for _ in range(count):
        start, size = rng.choices(regions, weights=weights)[0]
        offsets.append(start + rng.randrange(size))
    flip_bytes(path, offsets, seed)


def test_every_checkpoint_a_run_writes_carries_a_checksum_that_verifies(trained):
    for path in trained.parent.glob("*.ckpt"):
        raw = torch.load(path, map_location="cpu", weights_only=True)
        assert raw[CHECKSUM_KEY]["algorithm"] == "sha256"
        assert "state_dict" in raw[CHECKSUM_KEY]["entries"]
        stored = raw.pop(CHECKSUM_KEY)
        assert checkpoint_checksum(raw) == stored
        loaded = AtomicCheckpointIO().load_checkpoint(path)
        assert CHECKSUM_KEY not in loaded and loaded.keys() == raw.keys()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("loader", LOADERS)
def test_twenty_flipped_bytes_in_the_weights_are_an_error_naming_the_file(checkpoint, loader, seed):
    original = torch.load(checkpoint, map_location="cpu", weights_only=True)
    flip_in_tensor_data(checkpoint, seed)
    # torch reads the damaged file without complaint, and other weights come out.
    damaged = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert any(
        not torch.equal(damaged["state_dict"][name], tensor)
        for name, tensor in original["state_dict"].items()
    ) or any(
        not torch.equal(a["momentum_buffer"], b["momentum_buffer"])
        for a, b in zip(
            damaged["optimizer_states"][0]["state"].values(),
            original["optimizer_states"][0]["state"].values(),
            strict=True,
        )
    )
    with pytest.raises(CheckpointError, match="is corrupted") as refused:
        LOADERS[loader](checkpoint)
    assert str(checkpoint) in str(refused.value)
    assert "do not match the checksum written with them" in str(refused.value)


@pytest.mark.parametrize("seed", range(40))
def test_twenty_flipped_bytes_anywhere_never_load_other_values(checkpoint, seed):
    """Anywhere in the file — zip headers, the pickle, the data, the padding — 20 flipped bytes
    give a CheckpointError naming the file, or (in padding torch never reads) the same
    checkpoint."""
    original = AtomicCheckpointIO().load_checkpoint(checkpoint)
    size = checkpoint.stat().st_size
    flip_bytes(checkpoint, random.Random(seed).sample(range(size), 20), seed)
    try:
        loaded = AtomicCheckpointIO().load_checkpoint(checkpoint)
    except CheckpointError as err:
        assert str(checkpoint) in str(err)
    else:
        assert checkpoint_checksum(loaded) == checkpoint_checksum(original)


def test_a_changed_entry_is_named_and_a_damaged_or_missing_entry_is_corrupted(checkpoint):
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    cases = {
        "epoch": ({**raw, "epoch": raw["epoch"] + 1}, "its entry 'epoch' do not match"),
        "lost": ({k: v for k, v in raw.items() if k != "loops"}, "entries loops were added or"),
        "added": ({**raw, "extra": 1}, "entries extra were added or lost"),
        "damaged": ({**raw, CHECKSUM_KEY: "abc"}, "its checksum entry is damaged"),
    }
    for case, (changed, message) in cases.items():
        path = checkpoint.with_name(f"{case}.ckpt")
        torch.save(changed, path)
        with pytest.raises(CheckpointError, match=message) as refused:
            AtomicCheckpointIO().load_checkpoint(path)
        assert f"{path} is corrupted" in str(refused.value)


def test_a_checkpoint_without_a_checksum_loads_with_a_warning(checkpoint, caplog):
    """Written by plain Lightning or an older gdtorch: it cannot be verified, and says so."""
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    del raw[CHECKSUM_KEY]
    torch.save(raw, checkpoint)
    with caplog.at_level(logging.WARNING, logger="gdtorch.lightning.checkpoint_io"):
        model = CatClassifier.load_from_checkpoint(checkpoint)
    assert f"{checkpoint} has no gdtorch checksum" in caplog.text
    for name, tensor in raw["state_dict"].items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_a_remote_save_carries_the_checksum_too(trained):
    raw = torch.load(trained, map_location="cpu", weights_only=True)
    del raw[CHECKSUM_KEY]
    io = AtomicCheckpointIO()
    io.save_checkpoint(raw, "memory://gdtorch-test/last.ckpt")  # Lightning's fsspec save
    loaded = io.load_checkpoint("memory://gdtorch-test/last.ckpt")
    assert checkpoint_checksum(loaded) == checkpoint_checksum(raw)


def _not_checkpoints(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """Files that are not checkpoints, and the reason each one's error gives."""
    data = good.read_bytes()
    files = {
        "empty": (b"", "the file is empty (0 bytes)"),
        "truncated": (data[: len(data) // 2], "it is truncated or corrupted"),
        "random": (random.Random(0).randbytes(4096), "it is not a PyTorch checkpoint"),
        "json": (json.dumps({"state_dict": {}}).encode(), "it is not a PyTorch checkpoint"),
        "text": (b"not a checkpoint\n", "it is not a PyTorch checkpoint"),
    }
    made = {}
    for name, (content, reason) in files.items():
        path = folder / f"{name}.ckpt"
        path.write_bytes(content)
        made[name] = (path, reason)
    path = folder / "tensor.ckpt"
    torch.save(torch.ones(3), path)
    made["tensor"] = (path, "it holds a Tensor, not the dict of a Lightning checkpoint")
    return made


@pytest.mark.parametrize("loader", LOADERS)
def test_a_file_that_is_no_checkpoint_is_a_clear_error_naming_it(checkpoint, tmp_path, loader):
    for name, (path, reason) in _not_checkpoints(tmp_path, checkpoint).items():
        with pytest.raises(CheckpointError) as refused:
            LOADERS[loader](path)
        message = str(refused.value)
        assert message.startswith(f"cannot read checkpoint {path}: {reason}"), (name, message)


def test_resuming_from_a_corrupted_checkpoint_trains_nothing(checkpoint, tmp_path):
    flip_in_tensor_data(checkpoint, seed=0)
    resumed = tmp_path / "resumed"
    cfg = compose_train(resumed, *RUN, "trainer.max_epochs=3", f"ckpt_path={checkpoint}")
    with pytest.raises(CheckpointError, match=f"{checkpoint} is corrupted"):
        run(cfg)
    assert not list(resumed.rglob("*.ckpt"))


def test_lightnings_own_resume_verifies_the_checksum_too(checkpoint, tmp_path):
    """Past gdtorch's checks before training, Lightning's ``fit(ckpt_path=…)`` reads the file
    through the trainer's ``AtomicCheckpointIO``, which verifies it again."""
    flip_in_tensor_data(checkpoint, seed=1)
    trainer, model, datamodule = build(compose_train(tmp_path / "resumed", *RUN))
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    with pytest.raises(CheckpointError, match=f"{checkpoint} is corrupted"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(checkpoint))
    assert trainer.global_step == 0


def _command(name: str, checkpoint: Path, tmp_path: Path) -> list[str]:
    script = str(ROOT / "scripts" / f"{name}.py")
    if name == "predict":
        image = tmp_path / "photo.png"
        Image.new("RGB", (20, 20), (200, 100, 50)).save(image)
        return [python(), script, str(checkpoint), str(image)]
    if name == "eval":
        return [python(), script, f"ckpt_path={checkpoint}", "trainer=cpu", "~logger"]
    return [python(), script, f"ckpt_path={checkpoint}", *RUN, "trainer.max_epochs=3"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["eval", "predict", "train"])
def test_every_command_refuses_a_corrupted_checkpoint_in_one_line(checkpoint, tmp_path, name):
    flip_in_tensor_data(checkpoint, seed=2)
    result = subprocess.run(
        _command(name, checkpoint, tmp_path),
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert errors == [
        f"gdtorch-{name}: error: CheckpointError: {checkpoint} is corrupted: its weights do not "
        f"match the checksum written with them. The file changed after it was written (a bad "
        f"disk, copy or download): use another checkpoint (e.g. the best one beside last.ckpt) "
        f"or copy it again."
    ], result.stderr[-3000:]
