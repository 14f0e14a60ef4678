"""``LossLandscape``: draws gradient descent's path on the cost surface while a model trains.

The maths and the plot are :mod:`gdtorch.landscape`'s (Lightning-free); this callback records
the path and calls :func:`gdtorch.landscape.path_landscape`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.figure import Figure
from torch import Tensor
from torch.nn.utils import parameters_to_vector

from gdtorch.data import first_update
from gdtorch.landscape import path_landscape
from gdtorch.lightning.cost import TargetsLikeOutput
from gdtorch.lightning.tensorboard import tensorboard_writer


class LossLandscape(L.Callback):
    """Draws gradient descent's path and the cost surface on the plane that best holds it.

    At the first training step, and then every ``every_n_steps`` optimizer steps, the weights θₜ,
    before their update, are copied to the CPU (``path``, θ₀ first) and their training-batch cost
    is kept (``path_loss``). At most ``max_points`` are kept: when full, every second point is
    dropped (θ₀ stays) and the interval doubles, so the path covers the whole run in bounded
    memory, ``max_points`` weight vectors.

    At the end of each epoch in ``epochs``, or at the end of training when ``epochs`` is
    ``None``, :meth:`figure` draws the path, up to the current weights θ_T, with
    :func:`gdtorch.landscape.path_landscape`: on the plane through θ₀ and θ_T that follows the
    path's largest bend (a straight path gets a filter-normalised random ``d₂`` drawn from
    ``seed``), over the cost ``C(θ₀ + α d₁ + β d₂)`` on a ``resolution × resolution`` square grid
    that holds the whole projected path with ``margin`` to spare, the module's ``loss_fn``
    averaged over the first ``num_batches`` training batches. The figure is written as
    ``save_dir/loss_landscape_step<global step>.png`` and as the TensorBoard image
    ``loss_landscape``, when the trainer has a TensorBoard logger. Each plot has its own plane,
    since θ_T moves; a plot is skipped, with a warning, while θ_T is still θ₀.

    Read it as a sketch: the points between θ₀ and θ_T are generally off the plane, so the colour
    under them is the cost at their projection, not at θₜ; and the plane is chosen to show the
    path, not as a typical slice of the landscape.

    Cost per plot: ``resolution² × num_batches`` forward passes without gradients, on a copy of
    the module's ``net`` (in its current mode), on the training device and on rank 0 only, plus
    the plane from the ``T ≤ max_points + 1`` path points (a ``T × T`` Gram matrix, on the CPU).
    Training is unaffected.

    Args:
        resolution: grid points along each axis.
        margin: the grid's room on each side of the path, as a fraction of the path's larger
            extent along α or β.
        num_batches: training batches the cost is averaged over.
        epochs: epochs (0-based) at whose end to plot; ``None`` plots once, at the end of fit.
        every_n_steps: record the path every this many optimizer steps (at first: the interval
            doubles each time ``max_points`` are kept).
        max_points: the most path points kept, at least 2.
        seed: seeds the random ``d₂`` of a straight path.
        save_dir: where to write the PNGs; defaults to ``trainer.log_dir``.
    """

    def __init__(
        self,
        resolution: int = 21,
        margin: float = 0.25,
        num_batches: int = 1,
        epochs: Sequence[int] | None = None,
        every_n_steps: int = 1,
        max_points: int = 100,
        seed: int = 0,
        save_dir: str | Path | None = None,
    ) -> None:
        for name, value, least in (
            ("resolution", resolution, 1),
            ("num_batches", num_batches, 1),
            ("every_n_steps", every_n_steps, 1),
            ("max_points", max_points, 2),
        ):
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
        if not margin > 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        if epochs is not None and any(epoch < 0 for epoch in epochs):
            raise ValueError(f"epochs must be non-negative epoch indices, got {list(epochs)}")
        self.resolution = resolution
        self.margin = margin
        self.num_batches = num_batches
        self.epochs = None if epochs is None else set(epochs)
        self.every_n_steps = every_n_steps
        self.max_points = max_points
        self.seed = seed
        self.save_dir = save_dir
        self._save_dir: Path | None = None
        self._batches: list[tuple[Tensor, Tensor]] = []
        self._points: list[Tensor] = []
        self._losses: list[Tensor] = []
        self._interval = every_n_steps
        self._recording = False
        self._last_step: int | None = None

    @property
    def path(self) -> Tensor:
        """``(T, P)`` the recorded weights θₜ as flat vectors, θ₀ first, on the CPU."""
        return torch.stack(self._points) if self._points else torch.empty(0, 0)

    @property
    def path_loss(self) -> Tensor:
        """``(T,)`` training-batch cost ``C(θₜ)`` at each recorded point of ``path``."""
        return torch.stack(self._losses).cpu() if self._losses else torch.empty(0)

    def figure(self, pl_module: L.LightningModule) -> Figure:
        """The landscape of the path recorded so far, up to the current weights θ_T (≠ θ₀)."""
        now = parameters_to_vector(pl_module.net.parameters()).detach().cpu()
        return path_landscape(
            pl_module.net,
            TargetsLikeOutput(pl_module.loss_fn),
            self._batches,
            torch.cat([self.path, now[None]]),
            self.resolution,
            self.margin,
            self.seed,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._batches, self._points, self._losses = [], [], []
        self._interval = self.every_n_steps
        self._last_step = None
        self._save_dir = Path(self.save_dir if self.save_dir is not None else trainer.log_dir)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if len(self._batches) < self.num_batches:
            images, targets = first_update(batch)
            self._batches.append((images.detach(), targets.detach()))
        step = trainer.global_step
        if self._due(step) and len(self._points) >= self.max_points:
            self._points, self._losses = self._points[::2], self._losses[::2]
            self._interval *= 2
        self._recording = self._due(step)
        if self._recording:
            self._last_step = step
            self._points.append(parameters_to_vector(pl_module.net.parameters()).detach().cpu())

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._recording:
            loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
            # one loss per update when the batch took several: the first is at the recorded θ
            self._losses.append(loss.detach().flatten()[0].to(torch.float64))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epochs is not None and trainer.current_epoch in self.epochs:
            self._plot(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epochs is None:
            self._plot(trainer, pl_module)

    def _due(self, step: int) -> bool:
        """Whether to record at ``step``: the first step of fit, then every ``_interval``."""
        if self._last_step is None:
            return True
        return step != self._last_step and step % self._interval == 0

    def _plot(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self._points:
            return
        now = parameters_to_vector(pl_module.net.parameters()).detach().cpu()
        if torch.equal(now, self._points[0]):
            rank_zero_warn("LossLandscape: the weights have not moved from θ₀; no plot.")
            return
        figure = self.figure(pl_module)
        self._save_dir.mkdir(parents=True, exist_ok=True)
        figure.savefig(self._save_dir / f"loss_landscape_step{trainer.global_step}.png", dpi=100)
        writer = tensorboard_writer(trainer)
        if writer is not None:
            writer.add_figure("loss_landscape", figure, trainer.global_step)
