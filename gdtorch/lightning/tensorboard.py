"""``TensorBoardExtras``: what the tutorial asks you to watch while gradient descent runs."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter


def tensorboard_writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The ``SummaryWriter`` of the trainer's TensorBoard logger, if it has one."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class TensorBoardExtras(L.Callback):
    """Logs the health of gradient descent, layer by layer, to TensorBoard.

    * every ``every_n_steps`` optimizer steps, for each weight matrix ``W⁽ˡ⁾``: the gradient
      norm ``‖∇W‖`` (``grad_norm/<name>``) and the update-to-weight ratio ``η‖∇W‖/‖W‖``
      (``update_ratio/<name>``; around 1e-3 is healthy, far above means η is too large);
    * each training epoch: histograms of every parameter and its gradient (at the last update);
    * each validation epoch: a grid of validation images captioned with the predicted cat
      probability ``P(cat)`` and the true label.

    Args:
        every_n_steps: how often to log gradient norms and update ratios.
        num_images: how many validation images to show.
    """

    def __init__(self, every_n_steps: int = 10, num_images: int = 16) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        self.every_n_steps = every_n_steps
        self.num_images = num_images
        self._samples: tuple[Tensor, Tensor, Tensor] | None = None

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if trainer.is_last_batch:
            self._log_histograms(trainer, pl_module)
        if trainer.global_step % self.every_n_steps:
            return
        lrs = {
            id(p): float(group["lr"]) for group in optimizer.param_groups for p in group["params"]
        }
        for name, param in pl_module.named_parameters():
            if param.grad is None or param.dim() < 2 or id(param) not in lrs:
                continue
            grad_norm = param.grad.detach().norm()
            ratio = lrs[id(param)] * grad_norm / param.detach().norm().clamp_min(1e-12)
            pl_module.log(f"grad_norm/{name}", grad_norm, on_step=True, on_epoch=False)
            pl_module.log(f"update_ratio/{name}", ratio, on_step=True, on_epoch=False)

    @staticmethod
    def _log_histograms(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Weights and gradients at the epoch's last update (gradients are cleared after it)."""
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        for name, param in pl_module.named_parameters():
            writer.add_histogram(f"weights/{name}", param.detach().cpu(), trainer.current_epoch)
            if param.grad is not None:
                writer.add_histogram(f"grads/{name}", param.grad.cpu(), trainer.current_epoch)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx == 0 and self.num_images and isinstance(outputs, Tensor):
            images, targets = batch
            n = self.num_images
            self._samples = (images[:n].cpu(), targets[:n].cpu(), outputs[:n].float().cpu())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None or self._samples is None or trainer.sanity_checking:
            return
        figure = prediction_grid(*self._samples)
        writer.add_figure("val/predictions", figure, trainer.global_step)
        self._samples = None


def prediction_grid(images: Tensor, targets: Tensor, probabilities: Tensor) -> Figure:
    """A matplotlib grid of images, each titled ``P(cat)=…`` and coloured by correctness."""
    n = len(images)
    columns = min(8, max(n, 1))
    rows = max(1, -(-n // columns))
    figure = Figure(figsize=(1.6 * columns, 1.8 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, target, probability in zip(
        axes.flat, images, targets, probabilities, strict=False
    ):
        low, high = image.min(), image.max()
        shown = ((image - low) / (high - low).clamp_min(1e-12)).permute(1, 2, 0).numpy()
        correct = (probability >= 0.5) == (target >= 0.5)
        ax.imshow(shown)
        label = "cat" if target >= 0.5 else "not cat"
        ax.set_title(
            f"P(cat)={probability:.2f}\n{label}", fontsize=7, color="green" if correct else "red"
        )
    figure.tight_layout()
    return figure
