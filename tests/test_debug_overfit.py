"""``debug=overfit``: the same few batches every epoch, until the training loss is near zero."""

from __future__ import annotations

import time
from typing import ClassVar

import lightning as L
import torch

from gdtorch.train import run
from tests.cases import compose_train


class OverfitHistory(L.Callback):
    """Records each epoch's training images and mean loss (instantiated from the config by name)."""

    images: ClassVar[list[list[torch.Tensor]]] = []
    losses: ClassVar[list[float]] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.images.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.images[-1].append(batch[0].cpu())

    def on_train_epoch_end(self, trainer, pl_module):
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


def test_overfit_trains_on_the_same_batches_until_the_loss_is_near_zero(tmp_path):
    history = f"+callbacks.history._target_={__name__}.OverfitHistory"
    small = ["data.n_val=64", "data.n_test=64"]  # leaves the training run as it is, but faster
    cfg = compose_train(tmp_path, "debug=overfit", *small, "~logger", history)
    OverfitHistory.images.clear()
    OverfitHistory.losses.clear()
    start = time.perf_counter()
    run(cfg)
    elapsed = time.perf_counter() - start
    epochs = [torch.cat(batches) for batches in OverfitHistory.images]
    losses = OverfitHistory.losses
    print(f"overfit: {len(losses)} epochs, final training loss {losses[-1]:.4g}, {elapsed:.1f} s")
    assert len(epochs) == cfg.trainer.max_epochs
    assert len(epochs[0]) == cfg.trainer.overfit_batches * cfg.data.batch_size
    assert all(torch.equal(images, epochs[0]) for images in epochs)  # the same, in the same order
    assert losses[-1] < 0.05
