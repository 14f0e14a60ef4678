"""Shared by the reliability tests: a tiny run's Hydra overrides, composing, reading checkpoints."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import ClassVar

import lightning.pytorch as L
import torch

ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"

# A run that takes seconds on one CPU core: 16×16 images, no logger, no progress bar.
TINY = [
    "trainer=cpu",
    "data.n_train=64",
    "data.n_val=16",
    "data.n_test=16",
    "data.image_size=16",
    "~logger",
    "callbacks.tensorboard_extras=null",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]


def subprocess_env() -> dict[str, str]:
    """The environment for a training subprocess: one thread, the repository importable."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    return env


def python() -> str:
    return sys.executable


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_checkpoint(path: Path) -> dict:
    """A checkpoint read as data only: ``torch.load(..., weights_only=True)``."""
    return torch.load(path, map_location="cpu", weights_only=True)


def all_finite(state_dict: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(t).all() for t in state_dict.values() if t.is_floating_point())


class LastCheckpointHashes(L.Callback):
    """Records ``sha256(last.ckpt)`` at the start of every training epoch (``{epoch: hash}``).

    ``ModelCheckpoint`` writes ``last.ckpt`` at the end of an epoch (``AtomicCheckpointIO`` on a
    background thread, waited for here); the hash taken when the next epoch starts is the file as
    it was left by the epoch that wrote it.

    Args:
        dirpath: the checkpoint folder.
    """

    recorded: ClassVar[dict[str, dict[int, str]]] = {}  # dirpath → {epoch: hash}

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        LastCheckpointHashes.recorded[str(self.dirpath)] = {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # AtomicCheckpointIO writes on a background thread: wait for the file of the last epoch.
        wait = getattr(trainer.strategy.checkpoint_io, "_wait", None)
        if wait is not None:
            wait()
        last = self.dirpath / "last.ckpt"
        if last.exists():
            LastCheckpointHashes.recorded[str(self.dirpath)][trainer.current_epoch] = sha256(last)
