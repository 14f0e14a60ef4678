"""``debug=overfit``: the same few batches every epoch, until the training loss is near zero."""

from __future__ import annotations

import time
from typing import ClassVar

import lightning as L
import pytest
import torch

from gdtorch.data import Updates
from gdtorch.train import run
from tests.cases import compose_train


class OverfitHistory(L.Callback):
    """Records each epoch's training images and mean loss (instantiated from the config by name)."""

    images: ClassVar[list[list[torch.Tensor]]] = []
    losses: ClassVar[list[float]] = []
    updates: ClassVar[list[int]] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.images.append([])
        self.updates.append(trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        updates = batch if isinstance(batch, Updates) else [batch]  # the images of each update
        self.images[-1].extend(images.cpu() for images, _ in updates)

    def on_train_epoch_end(self, trainer, pl_module):
        self.losses.append(float(trainer.callback_metrics["train/loss"]))
        self.updates[-1] = trainer.global_step - self.updates[-1]  # the epoch's updates


@pytest.mark.slow
def test_overfit_trains_on_the_same_batches_until_the_loss_is_near_zero(tmp_path):
    history = f"+callbacks.history._target_={__name__}.OverfitHistory"
    small = ["data.n_val=64", "data.n_test=64"]  # leaves the training run as it is, but faster
    cfg = compose_train(tmp_path, "debug=overfit", *small, "~logger", history)
    OverfitHistory.images.clear()
    OverfitHistory.losses.clear()
    OverfitHistory.updates.clear()
    start = time.perf_counter()
    run(cfg)
    elapsed = time.perf_counter() - start
    epochs = [torch.cat(batches) for batches in OverfitHistory.images]
    losses = OverfitHistory.losses
    print(f"overfit: {len(losses)} epochs, final training loss {losses[-1]:.4g}, {elapsed:.1f} s")
    assert len(epochs) == cfg.trainer.max_epochs
    # Lightning's overfit_batches counts its batches, each of data.updates_per_batch updates.
    per_batch = cfg.data.batch_size * cfg.data.updates_per_batch
    assert len(epochs[0]) == cfg.trainer.overfit_batches * per_batch
    updates = cfg.trainer.overfit_batches * cfg.data.updates_per_batch
    assert OverfitHistory.updates == [updates] * cfg.trainer.max_epochs
    assert all(torch.equal(images, epochs[0]) for images in epochs)  # the same, in the same order
    assert losses[-1] < 0.05
