"""The cost surface around gradient descent's path, and the path on it: the ball rolling down.

The tutorial pictures the weights and biases θ as a ball on the surface of the cost ``C(θ)``,
rolling down by ``θ ← θ − η ∇C(θ)``. θ has thousands of dimensions, so, following Li et al.
(2018), "Visualizing the Loss Landscape of Neural Nets", the surface is drawn on a plane through
a point θ₀ spanned by two directions ``d₁`` and ``d₂`` (the paper's δ and η, renamed because the
tutorial uses η for the learning rate and δ for the backpropagated error):
``C(θ₀ + α d₁ + β d₂)`` over a grid of ``(α, β)``. The path θ₀, θ₁, …, θ_T is projected onto the
plane.

Which plane? Two random directions (:func:`filter_normalized_directions`) are nearly orthogonal
to any path in so many dimensions, so its projection shrinks to a dot at θ₀ (Li et al., §7; in
``experiments/gd_modes`` a random plane held at most 4.3% of the displacement θ_T − θ₀). So the
plane is fitted to the path instead (:func:`path_plane`): it holds the start θ₀ and the end θ_T,
with ``d₁ = θ_T − θ₀``, and ``d₂`` follows the path's largest bend away from that line; the grid
is fitted to the projected path (:func:`path_grid`).

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
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.figure import Figure
from torch import Tensor
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from gdtorch.data import first_update
from gdtorch.lightning.audit import TargetsLikeOutput
from gdtorch.lightning.tensorboard import tensorboard_writer

# A path whose bend away from the line θ₀θ_T is under this fraction of ‖θ_T − θ₀‖ is straight
# as far as a plot can show: path_plane then takes its fallback direction for d₂.
_STRAIGHT = 1e-3


def filter_normalized_direction(
    model: torch.nn.Module, generator: torch.Generator | None = None
) -> Tensor:
    """A random direction ``d`` scaled filter by filter to the weights (Li et al., 2018).

    For each parameter with two or more dimensions (a ``Linear`` weight ``W``, shape
    ``(out, in)``: one row ``wᵢ`` per neuron, a filter), a Gaussian direction is drawn and each of
    its rows ``dᵢ`` is rescaled to ``dᵢ ‖wᵢ‖ / ‖dᵢ‖``, so that a step ``α d`` changes every neuron
    by the same fraction of its own weights, whatever their scale. One-dimensional parameters
    (biases) get a zero direction: the paper leaves biases and batch-norm parameters unperturbed.

    Args:
        model: the network whose parameters span the space.
        generator: a CPU random generator, for a direction fixed by a seed.

    Returns:
        ``d``, a flat vector on the parameters' device and dtype.
    """
    return torch.cat([_filter_normalized(p.detach(), generator) for p in model.parameters()])


def filter_normalized_directions(
    model: torch.nn.Module, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Two directions ``d₁, d₂`` of :func:`filter_normalized_direction`, drawn in turn."""
    d1, d2 = (filter_normalized_direction(model, generator) for _ in range(2))
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


def path_plane(path: Tensor, fallback: Tensor) -> tuple[Tensor, Tensor]:
    """Directions ``d₁, d₂`` of the plane through θ₀ and θ_T that lies closest to the whole path.

    ``d₁ = θ_T − θ₀``: the start θ₀ sits at ``(α, β) = (0, 0)`` and the end θ_T at ``(1, 0)``,
    both on the plane, and the α axis is the straight line between them. ``d₂`` is the direction
    orthogonal to ``d₁`` along which the path strays furthest from that line. With the residuals
    ``rₜ = (θₜ − θ₀) − (⟨θₜ − θ₀, d₁⟩ / ‖d₁‖²) d₁`` as the rows of ``R``, it is the unit ``v``
    maximising ``‖R v‖² = Σₜ ⟨rₜ, v⟩²``: ``R``'s top right singular vector, found from the small
    ``T × T`` matrix ``R Rᵀ``. Among the planes through θ₀ and θ_T, this one has the least summed
    squared distance to the path's points (Li et al.'s PCA plane, §7, held to both ends). When
    ``R``'s largest singular value σ₁ (at least every ``‖rₜ‖``) is under 0.1% of ``‖d₁‖``, as for
    a path of two points, the bend is too small to show and ``d₂`` is ``fallback`` made
    orthogonal to ``d₁`` instead.
    ``d₂`` is scaled to ``‖d₁‖``, so that α and β share one unit, ``‖θ_T − θ₀‖``.

    Args:
        path: ``(T, P)`` flat weight vectors θ₀, θ₁, …, θ_T, with ``T ≥ 2`` and ``θ_T ≠ θ₀``.
        fallback: ``(P,)``, a direction independent of ``d₁``, for a straight path.

    Returns:
        ``(d₁, d₂)``, orthogonal, of equal norm, float64.
    """
    displacement = (path - path[0]).to(torch.float64)
    d1 = displacement[-1]
    residual = displacement - torch.outer(displacement @ d1 / d1.dot(d1), d1)
    _, vectors = torch.linalg.eigh(residual @ residual.T)
    d2 = residual.T @ vectors[:, -1]  # = σ₁ v: R Rᵀ's top eigenvector u gives Rᵀu = σ₁ v
    if d2.norm() < _STRAIGHT * d1.norm():  # σ₁ ≥ every ‖rₜ‖
        fallback = fallback.to(torch.float64)
        d2 = fallback - fallback.dot(d1) / d1.dot(d1) * d1
    return d1, d2 * (d1.norm() / d2.norm())


def path_grid(coordinates: Tensor, resolution: int, margin: float) -> tuple[Tensor, Tensor]:
    """A square grid of ``(α, β)`` around a projected path, reaching ``margin`` beyond it.

    The grid is centred on the path's bounding box and its side is ``1 + 2 margin`` times the
    larger of the path's α and β extents, so the whole path fits with room on every side,
    however long it is. On the plane of :func:`path_plane` the α extent is at least 1 (θ₀ at 0,
    θ_T at 1), so the side is at least ``(1 + 2 margin) ‖θ_T − θ₀‖``.

    Args:
        coordinates: ``(T, 2)`` coordinates ``(α, β)`` of the path's points.
        resolution: grid points along each axis.
        margin: the room on each side, as a fraction of the path's larger extent.

    Returns:
        ``(alphas, betas)``, each of shape ``(resolution,)``, float64.
    """
    low, high = coordinates.min(0).values, coordinates.max(0).values
    half_side = (0.5 + margin) * (high - low).max().item()
    alphas, betas = (
        torch.linspace(centre - half_side, centre + half_side, resolution, dtype=torch.float64)
        for centre in ((low + high) / 2).tolist()
    )
    return alphas, betas


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
    """A contour plot of ``surface`` on the plane of :func:`path_plane`, with ``path`` on it.

    The path is a line with a marker per point, its first point θ₀ a square and its last θ_T a
    star. α and β share one unit, so both axes are drawn to the same scale.

    Args:
        alphas: the grid's ``α`` values (x axis).
        betas: the grid's ``β`` values (y axis).
        surface: ``C`` of shape ``(len(alphas), len(betas))``.
        path: ``(T, 2)`` coordinates ``(α, β)`` of θ₀, θ₁, …, θ_T.
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
    ax.plot(alpha[-1:], beta[-1:], "*", color="red", markersize=12, label="θ_T (now)")
    ax.set_aspect("equal")
    ax.set_xlabel("α (along d₁ = θ_T − θ₀)")
    ax.set_ylabel("β (along d₂, orthogonal to d₁)")
    ax.set_title("C(θ₀ + α d₁ + β d₂): the ball rolling downhill")
    ax.legend(loc="best", fontsize=7)
    figure.tight_layout()
    return figure


class LossLandscape(L.Callback):
    """Draws gradient descent's path and the cost surface on the plane that best holds it.

    At the first training step, and then every ``every_n_steps`` optimizer steps, the weights θₜ,
    before their update, are copied to the CPU (``path``, θ₀ first) and their training-batch cost
    is kept (``path_loss``). At most ``max_points`` are kept: when full, every second point is
    dropped (θ₀ stays) and the interval doubles, so the path covers the whole run in bounded
    memory, ``max_points`` weight vectors.

    At the end of each epoch in ``epochs``, or at the end of training when ``epochs`` is
    ``None``, :meth:`figure` projects the path, up to the current weights θ_T, onto the plane of
    :func:`path_plane` (θ₀ at ``(0, 0)``, θ_T at ``(1, 0)``, β along the path's largest bend; a
    straight path gets a filter-normalised random ``d₂`` drawn from ``seed``) and computes the
    surface ``C(θ₀ + α d₁ + β d₂)`` on the ``resolution × resolution`` square grid of
    :func:`path_grid`, which holds the whole projected path with ``margin`` to spare, averaging
    the module's ``loss_fn`` over the first ``num_batches`` training batches. The figure is
    written as ``save_dir/loss_landscape_step<global step>.png`` and as the TensorBoard image
    ``loss_landscape``, when the trainer has a TensorBoard logger. Each plot has its own plane,
    since θ_T moves; a plot is skipped, with a warning, while θ_T is still θ₀.

    Read it as a sketch: θ₀ and θ_T lie on the plane, so the colour under their markers is their
    cost, but the points between are generally off it, so the colour under them is the cost at
    their projection, not at θₜ; and the plane is chosen to show the path, not as a typical
    slice of the landscape.

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
        net = pl_module.net
        now = parameters_to_vector(net.parameters()).detach()
        path = torch.cat([self.path, now.cpu()[None]])
        fallback = filter_normalized_direction(net, torch.Generator().manual_seed(self.seed))
        d1, d2 = path_plane(path, fallback.cpu())
        coordinates = project(path, path[0], (d1, d2))
        alphas, betas = path_grid(coordinates, self.resolution, self.margin)
        origin, d1, d2 = (v.to(now.device, now.dtype) for v in (path[0], d1, d2))
        loss_fn = TargetsLikeOutput(pl_module.loss_fn)
        surface = loss_surface(net, loss_fn, self._batches, (d1, d2), origin, alphas, betas)
        return landscape_figure(alphas, betas, surface.cpu(), coordinates)

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
