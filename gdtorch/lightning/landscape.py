"""The cost surface around the weights and gradient descent's path on it: the ball rolling down.

The tutorial pictures the weights and biases θ as a ball on the surface of the cost ``C(θ)``,
rolling down by ``θ ← θ − η ∇C(θ)``. θ has thousands of dimensions, so, following Li et al.
(2018), "Visualizing the Loss Landscape of Neural Nets", the surface is drawn on a plane through
an origin θ₀ spanned by two random directions ``d₁`` and ``d₂`` (the paper's δ and η, renamed
because the tutorial uses η for the learning rate and δ for the backpropagated error):
``C(θ₀ + α d₁ + β d₂)`` over a grid of ``(α, β)``. The path θ₀, θ₁, … is projected onto the plane.

Points in weight space are flat vectors in ``model.parameters()`` order
(:func:`torch.nn.utils.parameters_to_vector`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from matplotlib.figure import Figure
from torch import Tensor
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from gdtorch.lightning.audit import TargetsLikeOutput
from gdtorch.lightning.tensorboard import tensorboard_writer


def filter_normalized_directions(
    model: torch.nn.Module, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Two random directions ``d₁, d₂`` scaled filter by filter to the weights (Li et al., 2018).

    For each parameter with two or more dimensions (a ``Linear`` weight ``W``, shape
    ``(out, in)``: one row ``wᵢ`` per neuron, a filter), a Gaussian direction is drawn and each of
    its rows ``dᵢ`` is rescaled to ``dᵢ ‖wᵢ‖ / ‖dᵢ‖``, so that a step ``α d`` changes every neuron
    by the same fraction of its own weights, whatever their scale. One-dimensional parameters
    (biases) get a zero direction: the paper leaves biases and batch-norm parameters unperturbed.

    Args:
        model: the network whose parameters span the space.
        generator: a CPU random generator, for directions fixed by a seed.

    Returns:
        ``(d₁, d₂)``, flat vectors on the parameters' device and dtype.
    """
    d1, d2 = (
        torch.cat([_filter_normalized(p.detach(), generator) for p in model.parameters()])
        for _ in range(2)
    )
    return d1, d2


def _filter_normalized(weight: Tensor, generator: torch.Generator | None) -> Tensor:
    if weight.dim() < 2:
        return torch.zeros_like(weight).flatten()
    rows = weight.flatten(1).to("cpu", torch.float64)
    direction = torch.randn(rows.shape, generator=generator, dtype=torch.float64)
    scale = rows.norm(dim=1, keepdim=True) / direction.norm(dim=1, keepdim=True)
    return (direction * scale).flatten().to(weight.device, weight.dtype)


def project(path: Tensor, origin: Tensor, directions: Sequence[Tensor]) -> Tensor:
    """Coordinates ``(α, β)`` of the points θ of ``path`` on the plane ``θ₀ + α d₁ + β d₂``.

    Least squares: with ``D = [d₁ d₂]``, ``(α, β)`` minimises ``‖θ − θ₀ − D (α, β)‖``, so it
    solves the 2×2 normal equations ``DᵀD (α, β) = Dᵀ(θ − θ₀)``. ``d₁`` and ``d₂`` need not be
    orthogonal, only independent. Computed in float64.

    Args:
        path: one point ``(P,)`` or a path ``(T, P)`` of flat weight vectors.
        origin: θ₀, shape ``(P,)``.
        directions: ``(d₁, d₂)``, each of shape ``(P,)``.

    Returns:
        ``(2,)`` or ``(T, 2)`` coordinates, float64.
    """
    basis = torch.stack([d.to(torch.float64) for d in directions], dim=1)
    right = (path.to(torch.float64) - origin.to(torch.float64)) @ basis
    coordinates = torch.linalg.solve(basis.T @ basis, right.reshape(-1, 2), left=False)
    return coordinates.reshape(right.shape)  # X DᵀD = right, DᵀD being symmetric


def loss_surface(
    model: torch.nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batches: Sequence[tuple[Tensor, Tensor]],
    directions: Sequence[Tensor],
    origin: Tensor,
    alphas: Tensor,
    betas: Tensor,
) -> Tensor:
    """``C(θ₀ + α d₁ + β d₂)`` for every ``α`` in ``alphas`` and ``β`` in ``betas``.

    ``C`` at each point is ``loss_fn(model(x), y)`` averaged over ``batches``. It is evaluated
    under ``torch.no_grad()`` on a copy of ``model`` (in the model's current mode), so the model
    itself is untouched. Cost: ``len(alphas) × len(betas) × len(batches)`` forward passes.

    Args:
        model: the network; only its architecture is used, the weights come from the plane.
        loss_fn: ``C(output, target)``.
        batches: ``(x, y)`` pairs on the model's device.
        directions: ``(d₁, d₂)``, flat vectors.
        origin: θ₀, a flat vector.
        alphas: 1-D grid of ``α``.
        betas: 1-D grid of ``β``.

    Returns:
        float64 tensor of shape ``(len(alphas), len(betas))``, on the model's device.
    """
    work = copy.deepcopy(model)
    parameters = list(work.parameters())
    d1, d2 = directions
    costs = []
    with torch.no_grad():
        for alpha in alphas.tolist():
            for beta in betas.tolist():
                vector_to_parameters(origin + alpha * d1 + beta * d2, parameters)
                batch_costs = [loss_fn(work(x), y).to(torch.float64) for x, y in batches]
                costs.append(torch.stack(batch_costs).mean())
    return torch.stack(costs).reshape(len(alphas), len(betas))


def landscape_figure(alphas: Tensor, betas: Tensor, surface: Tensor, path: Tensor) -> Figure:
    """A contour plot of ``surface`` with ``path`` drawn on it as a line with markers.

    Args:
        alphas: the grid's ``α`` values (x axis).
        betas: the grid's ``β`` values (y axis).
        surface: ``C`` of shape ``(len(alphas), len(betas))``.
        path: ``(T, 2)`` coordinates ``(α, β)`` of θ₀, θ₁, …
    """
    figure = Figure(figsize=(6, 5))
    ax = figure.subplots()
    x, y, z = alphas.numpy(), betas.numpy(), surface.T.numpy()
    filled = ax.contourf(x, y, z, levels=30, cmap="viridis")
    ax.contour(x, y, z, levels=15, colors="black", linewidths=0.3, alpha=0.5)
    figure.colorbar(filled, ax=ax, label="cost C")
    alpha, beta = path[:, 0].numpy(), path[:, 1].numpy()
    ax.plot(alpha, beta, "-o", color="white", markersize=3, linewidth=1, label="θ during training")
    ax.plot(alpha[:1], beta[:1], "s", color="orange", markersize=7, label="θ₀ (start)")
    ax.plot(alpha[-1:], beta[-1:], "*", color="red", markersize=12, label="θ (now)")
    ax.set_xlabel("α (along d₁)")
    ax.set_ylabel("β (along d₂)")
    ax.set_title("C(θ₀ + α d₁ + β d₂): the ball rolling downhill")
    ax.legend(loc="upper right", fontsize=7)
    figure.tight_layout()
    return figure


class LossLandscape(L.Callback):
    """Draws the cost surface around the start weights θ₀ and gradient descent's path on it.

    At the start of training, θ₀ (the plane's origin) is recorded and two filter-normalised
    directions ``d₁, d₂`` are drawn from ``seed``; both stay fixed for the whole run. Every
    ``every_n_steps`` optimizer steps the weights θₜ, before their update, are projected onto the
    plane (two dot products over all parameters) and their training-batch cost is kept:
    ``path`` and ``path_loss``. At the end of each epoch in ``epochs``, or at the end of
    training when ``epochs`` is ``None``, the surface ``C(θ₀ + α d₁ + β d₂)`` is computed on a
    ``resolution × resolution`` grid of ``α, β ∈ [−r, r]`` (``r`` is ``span``, widened to hold the
    whole path), averaging the module's ``loss_fn`` over the first ``num_batches`` training
    batches, and drawn with the path (up to the current weights) as
    ``save_dir/loss_landscape_step<global step>.png`` and as the TensorBoard image
    ``loss_landscape``, when the trainer has a TensorBoard logger.

    Read it as a sketch: θₜ is generally off the plane, so the surface under the marker is the
    cost at θₜ's projection, not at θₜ; and in many dimensions random directions are nearly
    orthogonal to the path, whose projection is then short.

    Cost per plot: ``resolution² × num_batches`` forward passes without gradients, on a copy of
    the module's ``net`` (in its current mode), on the training device and on rank 0 only.
    Training is unaffected.

    Args:
        resolution: grid points along each axis.
        span: the smallest half-width ``r`` of the grid, in units of the directions (1 is a step
            as large as the weights themselves).
        num_batches: training batches the cost is averaged over.
        epochs: epochs (0-based) at whose end to plot; ``None`` plots once, at the end of fit.
        every_n_steps: record the path every this many optimizer steps.
        seed: seeds the directions.
        save_dir: where to write the PNGs; defaults to ``trainer.log_dir``.
    """

    def __init__(
        self,
        resolution: int = 21,
        span: float = 1.0,
        num_batches: int = 1,
        epochs: Sequence[int] | None = None,
        every_n_steps: int = 1,
        seed: int = 0,
        save_dir: str | Path | None = None,
    ) -> None:
        for name, value in (
            ("resolution", resolution),
            ("num_batches", num_batches),
            ("every_n_steps", every_n_steps),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not span > 0:
            raise ValueError(f"span must be > 0, got {span}")
        if epochs is not None and any(epoch < 0 for epoch in epochs):
            raise ValueError(f"epochs must be non-negative epoch indices, got {list(epochs)}")
        self.resolution = resolution
        self.span = span
        self.num_batches = num_batches
        self.epochs = None if epochs is None else set(epochs)
        self.every_n_steps = every_n_steps
        self.seed = seed
        self.save_dir = save_dir
        self._origin: Tensor | None = None
        self._directions: tuple[Tensor, Tensor] | None = None
        self._save_dir: Path | None = None
        self._batches: list[tuple[Tensor, Tensor]] = []
        self._coordinates: list[Tensor] = []
        self._losses: list[Tensor] = []
        self._recording = False
        self._last_step: int | None = None

    @property
    def path(self) -> Tensor:
        """``(T, 2)`` coordinates ``(α, β)`` of the recorded weights θₜ, θ₀ first."""
        return torch.stack(self._coordinates).cpu() if self._coordinates else torch.empty(0, 2)

    @property
    def path_loss(self) -> Tensor:
        """``(T,)`` training-batch cost ``C(θₜ)`` at each recorded point of ``path``."""
        return torch.stack(self._losses).cpu() if self._losses else torch.empty(0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = pl_module.net
        self._origin = parameters_to_vector(net.parameters()).detach().clone()
        self._directions = filter_normalized_directions(
            net, torch.Generator().manual_seed(self.seed)
        )
        self._batches, self._coordinates, self._losses = [], [], []
        self._last_step = None
        self._save_dir = Path(self.save_dir if self.save_dir is not None else trainer.log_dir)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if len(self._batches) < self.num_batches:
            images, targets = batch
            self._batches.append((images.detach(), targets.detach()))
        step = trainer.global_step
        self._recording = step % self.every_n_steps == 0 and step != self._last_step
        if self._recording:
            self._last_step = step
            self._coordinates.append(self._project(pl_module))

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
            self._losses.append(loss.detach().to(torch.float64))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epochs is not None and trainer.current_epoch in self.epochs:
            self._plot(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epochs is None:
            self._plot(trainer, pl_module)

    def _project(self, pl_module: L.LightningModule) -> Tensor:
        weights = parameters_to_vector(pl_module.net.parameters()).detach()
        return project(weights, self._origin, self._directions)

    def _plot(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self._coordinates:
            return
        path = torch.cat([self.path, self._project(pl_module).cpu()[None]])
        radius = max(self.span, 1.1 * path.abs().max().item())
        grid = torch.linspace(-radius, radius, self.resolution, dtype=torch.float64)
        surface = loss_surface(
            pl_module.net,
            TargetsLikeOutput(pl_module.loss_fn),
            self._batches,
            self._directions,
            self._origin,
            grid,
            grid,
        )
        figure = landscape_figure(grid, grid, surface.cpu(), path)
        self._save_dir.mkdir(parents=True, exist_ok=True)
        figure.savefig(self._save_dir / f"loss_landscape_step{trainer.global_step}.png", dpi=100)
        writer = tensorboard_writer(trainer)
        if writer is not None:
            writer.add_figure("loss_landscape", figure, trainer.global_step)
