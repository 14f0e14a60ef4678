"""``TensorBoardExtras``: what the tutorial asks you to watch while gradient descent runs."""

from __future__ import annotations

import io
import math
from functools import partial
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor
from torch.utils.hooks import RemovableHandle
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

from gdtorch.lightning._compat import logging_step

Samples = tuple[Tensor, Tensor, Tensor]


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
      (``update_ratio/<name>``, ``W`` after the update; around 1e-3 is healthy, far above means
      η is too large), at the step ``train/loss`` of the same batch is logged at, whatever
      ``log_every_n_steps`` is;
    * at the first epoch, then whenever ``every_n_epochs`` epochs have passed, and at the last
      epoch: histograms (64 equal bins) of every parameter after the epoch's last update and of that
      update's gradient (``weights/<name>``, ``grads/<name>``, at that update's step, where the
      validation after it logs too), and a grid of validation images (``val/predictions``, at
      the step of that validation's ``val/loss``): each image framed green when the prediction
      ``P(cat) ≥ 0.5`` matches its label and red when not, above a bar filled to ``P(cat)``,
      with the same numbers as a table in the ``val/predictions`` text.

    The writes use no plotting library, at a cadence that keeps them a few per cent of a run's
    time (``scripts/benchmark.py``'s ``run_extras`` rows). The last epoch is known only when
    training ends (early stopping decides late), so an epoch not yet due keeps its histograms'
    tensors and images, on their device, until the next epoch replaces them or training ends.
    A tensor holding NaN or ±inf gets no histogram; ``grad_norm/*`` and
    :class:`~gdtorch.lightning.NonFiniteLossGuard` report those.

    Args:
        every_n_steps: how often to log gradient norms and update ratios, in optimizer steps.
        every_n_epochs: how many epochs apart the histograms and the prediction grid are
            written. ``None`` writes three over the run, at the first epoch, the middle and the
            last (every ``⌈max_epochs / 2⌉`` epochs and at the last; every epoch when the
            trainer has no ``max_epochs``).
        num_images: how many validation images to show.
    """

    def __init__(
        self, every_n_steps: int = 10, every_n_epochs: int | None = None, num_images: int = 8
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
        self._step_hooks: list[RemovableHandle] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Hooks each optimizer's ``step``: the gradient norms are read right after an update.

        A torch step hook rather than Lightning's ``on_before_optimizer_step``, so that a batch of
        many updates need not dispatch Lightning's hooks for each (see ``CatClassifier``); it
        sees the gradients the update used, with automatic or manual optimization alike.
        """
        self._remove_step_hooks()
        self._step_hooks = [
            optimizer.register_step_post_hook(partial(self._after_step, trainer, pl_module))
            for optimizer in trainer.optimizers
        ]

    def _remove_step_hooks(self) -> None:
        for hook in self._step_hooks:
            hook.remove()
        self._step_hooks = []

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._remove_step_hooks()

    def _after_step(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        optimizer: torch.optim.Optimizer,
        args: Any,
        kwargs: Any,
    ) -> None:
        step = trainer.global_step  # the updates before this one, as train/loss counts them
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

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """After the epoch's last update (its gradients are cleared before validation)."""
        if trainer.is_last_batch and _writer(trainer) is not None:
            self._snapshot(trainer, pl_module, logging_step(trainer))

    def _snapshot(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        """The weights after the epoch's last update and that update's gradients."""
        tensors = {}
        for name, param in pl_module.named_parameters():
            tensors[f"weights/{name}"] = param.detach()
            if param.grad is not None:
                tensors[f"grads/{name}"] = param.grad.detach()
        if self._due(trainer, "histograms"):
            self._write_histograms(trainer, step, tensors)
        else:  # the next epoch's updates change them in place
            kept = {tag: tensor.clone() for tag, tensor in tensors.items()}
            self._pending_histograms = (step, kept)

    def _write_histograms(self, trainer: L.Trainer, step: int, tensors: dict[str, Tensor]) -> None:
        writer = tensorboard_writer(trainer)
        for tag, tensor in tensors.items():
            counted = histogram(tensor.cpu())
            if counted is not None:
                writer.add_histogram_raw(tag, **counted, global_step=step)
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
        images, targets, probabilities = (t.cpu().float() for t in samples)
        writer = tensorboard_writer(trainer)
        grid = jpeg_summary("val/predictions", prediction_grid(images, targets, probabilities))
        writer.file_writer.add_summary(grid, step)
        writer.add_text("val/predictions", prediction_table(targets, probabilities), step)
        self._written["predictions"] = trainer.current_epoch
        self._pending_grid = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Writes the last epoch's histograms and images if its epoch was not due."""
        self._remove_step_hooks()
        if self._pending_histograms is not None:
            self._write_histograms(trainer, *self._pending_histograms)
        if self._pending_grid is not None:
            self._write_grid(trainer, *self._pending_grid)

    def _due(self, trainer: L.Trainer, kind: str) -> bool:
        """Whether ``kind`` was never written, or last written ``every_n_epochs`` epochs ago."""
        every = self.every_n_epochs
        if every is None:
            max_epochs = trainer.max_epochs or -1
            every = math.ceil(max_epochs / 2) if max_epochs > 0 else 1
        last = self._written.get(kind)
        return last is None or trainer.current_epoch - last >= every


def _writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The TensorBoard writer on the process that writes (rank zero), else ``None``."""
    return tensorboard_writer(trainer) if trainer.is_global_zero else None


def prediction_grid(images: Tensor, targets: Tensor, probabilities: Tensor) -> Tensor:
    """The ``(3, H, W)`` grid of ``val/predictions``, eight images a row.

    Each image is scaled to ``[0, 1]`` on its own, framed green when the prediction
    ``P(cat) ≥ 0.5`` matches its label and red when not, above a bar filled to ``P(cat)``.
    """
    n, _, height, width = images.shape
    frame, bar = max(1, height // 16), max(2, height // 8)
    tiles = torch.zeros(n, 3, height + 3 * frame + bar, width + 2 * frame)
    correct = (probabilities >= 0.5) == (targets >= 0.5)
    tiles[:] = torch.where(correct.view(-1, 1, 1, 1), _GREEN, _RED)
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    scaled = (images - low) / (high - low).clamp_min(1e-12)
    tiles[:, :, frame : frame + height, frame : frame + width] = scaled
    top = 2 * frame + height
    tiles[:, :, top : top + bar, frame : frame + width] = 0.0
    # A NaN probability (a diverged model) leaves its bar empty rather than failing the run.
    shown = probabilities.nan_to_num(nan=0.0).clamp(0, 1)
    for tile, probability in zip(tiles, shown, strict=True):
        filled = round(float(probability) * width)
        tile[:, top : top + bar, frame : frame + filled] = 1.0
    return make_grid(tiles, nrow=8, padding=2, pad_value=1.0)


def jpeg_summary(tag: str, image: Tensor, quality: int = 90) -> Summary:
    """An image summary of a ``(3, H, W)`` image in ``[0, 1]``, encoded as a JPEG.

    ``SummaryWriter.add_image`` encodes a PNG. TensorBoard shows a JPEG alike, and the event
    file checksums every byte in Python, so a smaller encoding is a faster write: the grid of
    SyntheticCats is about half the PNG's size as a JPEG (full colour resolution, quality 90),
    and encodes faster.
    """
    array = image.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality, subsampling=0)
    height, width, channels = array.shape
    encoded = Summary.Image(
        height=height, width=width, colorspace=channels, encoded_image_string=buffer.getvalue()
    )
    return Summary(value=[Summary.Value(tag=tag, image=encoded)])


def prediction_table(targets: Tensor, probabilities: Tensor) -> str:
    """The grid's numbers as a markdown table: image, ``P(cat)``, label, right or wrong."""
    rows = ["| image | P(cat) | label | prediction |", "| --- | --- | --- | --- |"]
    pairs = zip(targets.tolist(), probabilities.tolist(), strict=True)
    for i, (target, probability) in enumerate(pairs):
        label = "cat" if target >= 0.5 else "not cat"
        verdict = "right" if (probability >= 0.5) == (target >= 0.5) else "wrong"
        rows.append(f"| {i + 1} | {probability:.2f} | {label} | {verdict} |")
    return "\n".join(rows)


def histogram(values: Tensor, bins: int = 64) -> dict[str, Any] | None:
    """``SummaryWriter.add_histogram_raw``'s arguments for ``bins`` equal bins over the values,
    or ``None`` when a value is NaN or ±inf (which falls in no bin).

    Counted by ``torch.histc``, cheaper than ``add_histogram``'s numpy counting.
    """
    values = values.detach().flatten()
    values = values.double() if values.dtype == torch.float64 else values.float()
    low, high = (bound.item() for bound in torch.aminmax(values))  # NaN if any value is
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    if high > low:
        # torch.histc overflows to one bucket when (high - low) × bins does: then the values are
        # counted scaled by a power of two (exact), to at most 1 in magnitude. The limits are
        # float64, as the values are (float32 stops at 3.4e38, below a 64-bit run's finite
        # weights).
        scale = 1.0
        if not math.isfinite((high - low) * bins):
            scale = 2.0 ** -math.frexp(max(abs(low), abs(high)))[1]
        counts = torch.histc(values * scale, bins, low * scale, high * scale)
        limits = torch.linspace(low * scale, high * scale, bins + 1, dtype=torch.float64)[1:]
        limits = limits / scale
        limits[-1] = high  # the last bucket ends at the largest value, whatever the rounding
    else:
        counts = values.new_full((1,), len(values))
        limits = values.new_full((1,), high)
    wide = values.double()
    return {
        "min": low,
        "max": high,
        "num": len(values),
        "sum": wide.sum().item(),
        "sum_squares": torch.dot(wide, wide).item(),
        "bucket_limits": limits.tolist(),
        "bucket_counts": counts.tolist(),
    }


_GREEN = torch.tensor([0.2, 0.75, 0.2]).view(3, 1, 1)
_RED = torch.tensor([0.85, 0.15, 0.15]).view(3, 1, 1)
