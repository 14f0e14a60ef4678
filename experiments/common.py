"""Helpers shared by the study scripts in ``experiments/*/run.py``.

Each script puts this folder on ``sys.path`` before importing it, since a script run as
``python experiments/<study>/run.py`` only sees its own folder.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch
from matplotlib.figure import Figure

from gdtorch.data import CatDataModule, TensorBatchLoader

EVAL_BATCH = 1024


def machine() -> str:
    """The CPU model, its core count and the torch threads used."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        model = names[0] if names else model
    threads = torch.get_num_threads()
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} thread(s)"


def save(figure: Figure, path: Path) -> None:
    """Write ``figure`` as a PNG at 100 dpi and say where."""
    figure.savefig(path, dpi=100)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)", flush=True)


def train_eval_loader(data: CatDataModule) -> TensorBatchLoader:
    """The whole training split in fixed order, normalised like the training batches."""
    train = data.train_set
    return TensorBatchLoader(
        train.images, train.targets, EVAL_BATCH, normalize=(data.mean, data.std)
    )


def datamodule(mode: str, args: argparse.Namespace) -> CatDataModule:
    """The ``SyntheticCats`` splits served for ``mode``; the same ``seed`` gives the same data."""
    data = CatDataModule(
        mode=mode,
        batch_size=args.batch_size,
        image_size=args.image_size,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
    )
    data.setup()
    return data
