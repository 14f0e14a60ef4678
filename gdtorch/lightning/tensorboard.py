"""``TensorBoardExtras``: what the tutorial asks you to watch while gradient descent runs."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from matplotlib.figure import Figure
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

Samples = tuple[Tensor, Tensor, Tensor]


def tensorboard_writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The ``SummaryWriter`` of the trainer's TensorBoard logger, if it has one."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def logging_step(trainer: L.Trainer) -> int:
    """The step Lightning stamps on what ``self.log`` logs now (``train/loss``, ``val/*``).

    It counts the updates before the running batch: batch ``k`` of the run logs its
    ``train/loss`` at step ``k``, and a validation that follows update ``k`` logs at step ``k``
    too. Lightning keeps it in a private counter; it equals ``trainer.global_step`` before an
    update and ``global_step − 1`` in the validation after it.
    """
    return trainer.fit_loop.epoch_loop._batches_that_stepped


class TensorBoardExtras(L.Callback):
    """Logs the health of gradient descent, layer by layer, to TensorBoard.

    * every ``every_n_steps`` optimizer steps, for each weight matrix ``W⁽ˡ⁾``: the gradient
      norm ``‖∇W‖`` (``grad_norm/<name>``) and the update-to-weight ratio ``η‖∇W‖/‖W‖``
      (``update_ratio/<name>``; around 1e-3 is healthy, far above means η is too large), at the
      step ``train/loss`` of the same batch is logged at, whatever ``log_every_n_steps`` is;
    * at the first epoch, then whenever ``every_n_epochs`` epochs have passed, and at the last
      epoch: histograms of every parameter and its gradient at the epoch's last update
      (``weights/<name>``, ``grads/<name>``, at that update's step), and a grid of validation
      images captioned with the predicted cat probability ``P(cat)`` and the true label
      (``val/predictions``, at the step of that validation's ``val/loss``).

    The last epoch is known only when training ends (early stopping decides late), so an epoch
    not yet due keeps its histograms' tensors and images, on their device, until the next epoch
    replaces them or training ends. A tensor holding NaN, ±inf or a value beyond ±1e20 (outside
    TensorBoard's histogram buckets) gets no histogram; ``grad_norm/*`` and
    :class:`~gdtorch.lightning.NonFiniteLossGuard` report those.

    Args:
        every_n_steps: how often to log gradient norms and update ratios, in optimizer steps.
        every_n_epochs: how many epochs apart the histograms and the prediction grid are
            written. ``None`` writes about ten over the run: every ``⌈max_epochs / 10⌉`` epochs
            (every epoch when the trainer has no ``max_epochs``).
        num_images: how many validation images to show.
    """

    def __init__(
        self, every_n_steps: int = 10, every_n_epochs: int | None = None, num_images: int = 16
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1 or None, got {every_n_epochs}")
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        self.every_n_steps = every_n_steps
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self._samples: Samples | None = None
        self._written: dict[str, int] = {}  # kind → the epoch it was last written at
        self._pending_histograms: tuple[int, dict[str, Tensor]] | None = None
        self._pending_grid: tuple[int, Samples] | None = None

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        step = logging_step(trainer)
        if trainer.is_last_batch and _writer(trainer) is not None:
            self._snapshot(trainer, pl_module, step)
        if step % self.every_n_steps or not trainer.loggers or not trainer.is_global_zero:
            return
        lrs = {
            id(p): float(group["lr"]) for group in optimizer.param_groups for p in group["params"]
        }
        names, grad_norms, ratios = [], [], []
        for name, param in pl_module.named_parameters():
            if param.grad is None or param.dim() < 2 or id(param) not in lrs:
                continue
            grad_norm = param.grad.detach().norm()
            names.append(name)
            grad_norms.append(grad_norm)
            ratios.append(lrs[id(param)] * grad_norm / param.detach().norm().clamp_min(1e-12))
        if not names:
            return
        n = len(names)
        values = torch.stack(grad_norms + ratios).tolist()  # one device sync
        metrics = {}
        for name, grad_norm, ratio in zip(names, values[:n], values[n:], strict=True):
            metrics[f"grad_norm/{name}"] = grad_norm
            metrics[f"update_ratio/{name}"] = ratio
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def _snapshot(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        """Weights and gradients at the epoch's last update (gradients are cleared after it)."""
        tensors = {}
        for name, param in pl_module.named_parameters():
            tensors[f"weights/{name}"] = param.detach()
            if param.grad is not None:
                tensors[f"grads/{name}"] = param.grad.detach()
        if self._due(trainer, "histograms"):
            self._write_histograms(trainer, step, tensors)
        else:  # the update about to run changes them in place
            kept = {tag: tensor.clone() for tag, tensor in tensors.items()}
            self._pending_histograms = (step, kept)

    def _write_histograms(self, trainer: L.Trainer, step: int, tensors: dict[str, Tensor]) -> None:
        writer = tensorboard_writer(trainer)
        top = writer.default_bins[-1]  # the widest of its buckets, about 1e20
        for tag, tensor in tensors.items():
            values = tensor.cpu()
            if (values.abs() <= top).all():  # else a value falls in no bucket (or is NaN)
                writer.add_histogram(tag, values, step)
        self._written["histograms"] = trainer.current_epoch
        self._pending_histograms = None

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
            self._samples = (images[:n].clone(), targets[:n].clone(), outputs[:n].detach().clone())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        samples, self._samples = self._samples, None
        if samples is None or trainer.sanity_checking or _writer(trainer) is None:
            return
        if trainer.state.fn != TrainerFn.FITTING or self._due(trainer, "predictions"):
            self._write_grid(trainer, logging_step(trainer), samples)
        else:
            self._pending_grid = (logging_step(trainer), samples)

    def _write_grid(self, trainer: L.Trainer, step: int, samples: Samples) -> None:
        images, targets, probabilities = (t.cpu() for t in samples)
        figure = prediction_grid(images, targets, probabilities.float())
        tensorboard_writer(trainer).add_figure("val/predictions", figure, step)
        self._written["predictions"] = trainer.current_epoch
        self._pending_grid = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Writes the last epoch's histograms and images if its epoch was not due."""
        if self._pending_histograms is not None:
            self._write_histograms(trainer, *self._pending_histograms)
        if self._pending_grid is not None:
            self._write_grid(trainer, *self._pending_grid)

    def _due(self, trainer: L.Trainer, kind: str) -> bool:
        """Whether ``kind`` was never written, or last written ``every_n_epochs`` epochs ago."""
        every = self.every_n_epochs
        if every is None:
            max_epochs = trainer.max_epochs or -1
            every = math.ceil(max_epochs / 10) if max_epochs > 0 else 1
        last = self._written.get(kind)
        return last is None or trainer.current_epoch - last >= every


def _writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The TensorBoard writer on the process that writes (rank zero), else ``None``."""
    return tensorboard_writer(trainer) if trainer.is_global_zero else None


def prediction_grid(images: Tensor, targets: Tensor, probabilities: Tensor) -> Figure:
    """A matplotlib grid of images, each titled ``P(cat)=…`` and coloured by correctness.

    Constrained layout keeps every two-line title clear of the image above it.
    """
    n = len(images)
    columns = min(8, max(n, 1))
    rows = max(1, -(-n // columns))
    figure = Figure(figsize=(1.6 * columns, 2.0 * rows), layout="constrained")
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
    return figure
