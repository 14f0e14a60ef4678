"""Train CatClassifier + CatDataModule + gdtorch's MLP and GradientDescent on 1 or 2 CPU processes.

``python tests/reliability/ddp_worker.py OUT_DIR --devices 2 --mode batch --steps 4`` runs
Lightning's ``Trainer(strategy="ddp", accelerator="cpu", devices=2)`` (gloo); Lightning relaunches
this same script for rank 1. Every rank writes ``OUT_DIR/rank<r>.pt``: its parameters, its
momentum buffers and a fingerprint of every example of every training batch it saw.
``train(...)`` is the same run in the calling process (``devices=1``), the test's reference.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import lightning.pytorch as L
import torch

from gdtorch import nn as gnn
from gdtorch.data import CatDataModule
from gdtorch.lightning import CatClassifier, NonFiniteLossGuard
from gdtorch.optim import GradientDescent

IMAGE_SIZE = 16
N_TRAIN = 32


class SeenBatches(L.Callback):
    """Records, for each training batch this process sees, one fingerprint per example."""

    def __init__(self) -> None:
        self.batches: list[list[float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        images, _ = batch
        self.batches.append(images.double().flatten(1).sum(1).tolist())


def train(out_dir: Path | None, devices: int, mode: str, steps: int, batch_size: int) -> dict:
    """Fit for ``steps`` optimizer steps; return (and with ``out_dir`` save) this rank's state."""
    L.seed_everything(0, verbose=False)
    datamodule = CatDataModule(
        mode=mode,
        batch_size=batch_size,
        image_size=IMAGE_SIZE,
        n_train=N_TRAIN,
        n_val=8,
        n_test=8,
        seed=0,
    )
    model = CatClassifier(
        net=gnn.MLP([3 * IMAGE_SIZE**2, 8, 1], activation="tanh"),
        loss=gnn.BCEWithLogitsLoss(),
        optimizer=functools.partial(GradientDescent, lr=0.05, momentum=0.9),
        input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
    )
    seen = SeenBatches()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_steps=steps,
        max_epochs=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[seen, NonFiniteLossGuard()],
    )
    trainer.fit(model, datamodule=datamodule)
    optimizer = trainer.optimizers[0]
    state = {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "global_step": trainer.global_step,
        "batches": seen.batches,
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "momentum": {
            n: optimizer.state[p]["momentum_buffer"].clone() for n, p in model.named_parameters()
        },
    }
    if out_dir is not None:
        torch.save(state, Path(out_dir) / f"rank{trainer.global_rank}.pt")
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--mode", default="batch")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train(args.out_dir, args.devices, args.mode, args.steps, args.batch_size)


if __name__ == "__main__":
    main()
