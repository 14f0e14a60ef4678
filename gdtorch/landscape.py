"""The cost surface around gradient descent's path, and the path on it: the ball rolling down.

The tutorial pictures the weights and biases θ as a ball on the surface of the cost ``C(θ)``,
rolling down by ``θ ← θ − η ∇C(θ)``. θ has thousands of dimensions, so, following Li et al.
(2018), "Visualizing the Loss Landscape of Neural Nets", the surface is drawn on a plane through
a point θ₀ spanned by two directions ``d₁`` and ``d₂`` (the paper's δ and η, renamed because the
tutorial uses η for the learning rate and δ for the backpropagated error):
``C(θ₀ + α d₁ + β d₂)`` over a grid of ``(α, β)``. A path θ₀, θ₁, …, θ_T is projected onto the
plane (:func:`project`).

Which plane? Two random directions (:func:`filter_normalized_directions`) are nearly orthogonal
to any path in so many dimensions, so its projection shrinks to a dot at θ₀ (Li et al., §7;
``experiments/gd_modes`` measures how little of the path such a plane holds,
:func:`share_in_plane`). So the plane is fitted to the path instead: :func:`path_plane` holds the
start θ₀ and the end θ_T of one path and follows its largest bend; :func:`principal_plane` holds
the most of several paths from one θ₀. :func:`path_landscape` draws one path on its
:func:`path_plane`, on a grid fitted to it (:func:`path_grid`).

Points in weight space are flat vectors in ``model.parameters()`` order
(:func:`torch.nn.utils.parameters_to_vector`). Nothing here needs Lightning; matplotlib is
imported only to draw.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn.utils import vector_to_parameters

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def share_in_plane(point: Tensor, origin: Tensor, directions: Sequence[Tensor]) -> float:
    """``‖P(θ − θ₀)‖ / ‖θ − θ₀‖``: how much of a displacement the plane holds (1 = all).

    ``P`` is the least-squares projection of :func:`project` onto ``span(d₁, d₂)``.
    """
    d1, d2 = (d.to(torch.float64) for d in directions)
    alpha, beta = project(point, origin, directions)
    displacement = (point - origin).to(torch.float64)
    return ((alpha * d1 + beta * d2).norm() / displacement.norm()).item()


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


def principal_plane(paths: Sequence[Tensor], origin: Tensor) -> tuple[Tensor, Tensor]:
    """The two orthonormal directions along which the displacements ``θ − θ₀`` vary most.

    The top two right singular vectors of the stacked displacements of every point of every path
    (Li et al.'s PCA plane, §7, without centring, so that the plane passes through θ₀), each
    signed so that the paths' end points lie on its positive side on average. One plane for
    several paths from the same θ₀, to compare where they went.

    Args:
        paths: ``(Tᵢ, P)`` flat weight vectors, each path starting at ``origin``.
        origin: θ₀, shape ``(P,)``.

    Returns:
        ``(d₁, d₂)`` in ``origin``'s dtype.
    """
    displacements = torch.cat([path[1:] - origin for path in paths]).to(torch.float64)
    _, _, vh = torch.linalg.svd(displacements, full_matrices=False)
    ends = torch.stack([path[-1] - origin for path in paths]).to(torch.float64)
    signs = torch.sign((ends @ vh[:2].T).sum(0))
    signs[signs == 0] = 1.0
    d1, d2 = (vh[:2] * signs[:, None]).to(origin.dtype)
    return d1, d2


def path_grid(coordinates: Tensor, resolution: int, margin: float) -> tuple[Tensor, Tensor]:
    """A square grid of ``(α, β)`` around a projected path, reaching ``margin`` beyond it.

    The grid is centred on the path's bounding box and its side is ``1 + 2 margin`` times the
    larger of the path's α and β extents, so the whole path fits with room on every side,
    however long it is. On the plane of :func:`path_plane` the α extent is at least 1 (θ₀ at 0,
    θ_T at 1), so the side is at least ``(1 + 2 margin) ‖θ_T − θ₀‖``.

    Args:
        coordinates: ``(T, 2)`` coordinates ``(α, β)`` of the path's points (several paths:
            their points concatenated).
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


def landscape_figure(
    alphas: Tensor,
    betas: Tensor,
    surface: Tensor,
    paths: Mapping[str, Tensor],
    *,
    colours: Mapping[str, str] | None = None,
    title: str = "C(θ₀ + α d₁ + β d₂): the ball rolling downhill",
    axis_labels: tuple[str, str] = ("α (along d₁)", "β (along d₂)"),
    cost_label: str = "cost C",
    start_label: str = "θ₀ (start)",
    end_label: str = "θ_T (end)",
) -> Figure:
    """A contour plot of ``surface`` with each of ``paths`` drawn on it.

    Each path is a line with a marker per point, labelled by its key in the legend, and a star
    in its colour at its end (red for a white path); the first path's first point, θ₀, is a
    square. The axes share one scale.

    Args:
        alphas: the grid's ``α`` values (x axis).
        betas: the grid's ``β`` values (y axis).
        surface: ``C`` of shape ``(len(alphas), len(betas))``.
        paths: legend label → ``(T, 2)`` coordinates ``(α, β)`` of θ₀, θ₁, …, θ_T.
        colours: legend label → matplotlib colour; a path not named is white.
        title: the plot's title.
        axis_labels: the x and y axes' labels.
        cost_label: the colour bar's label.
        start_label: the legend entry of the square at θ₀.
        end_label: the legend entry of the first path's star.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 5.0))
    ax = figure.subplots()
    x, y, z = alphas.numpy(), betas.numpy(), surface.T.numpy()
    filled = ax.contourf(x, y, z, levels=30, cmap="viridis")
    ax.contour(x, y, z, levels=15, colors="black", linewidths=0.3, alpha=0.5)
    figure.colorbar(filled, ax=ax, label=cost_label)
    for i, (label, path) in enumerate(paths.items()):
        colour = (colours or {}).get(label, "white")
        alpha, beta = path[:, 0].numpy(), path[:, 1].numpy()
        ax.plot(alpha, beta, "-o", color=colour, markersize=2.5, linewidth=1.2, label=label)
        ax.plot(
            alpha[-1:],
            beta[-1:],
            "*",
            color="red" if colour == "white" else colour,
            markersize=12,
            markeredgecolor="black",
            markeredgewidth=0.5,
            label=end_label if i == 0 else None,
        )
    first = next(iter(paths.values()))
    ax.plot(*first[0].tolist(), "s", color="orange", markersize=7, label=start_label)
    ax.set_aspect("equal")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title, fontsize=10)
    ax.legend(loc="best", fontsize=7)
    figure.tight_layout()
    return figure


def path_landscape(
    model: torch.nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batches: Sequence[tuple[Tensor, Tensor]],
    path: Tensor,
    resolution: int = 21,
    margin: float = 0.25,
    seed: int = 0,
) -> Figure:
    """One path drawn on its :func:`path_plane`, over the cost surface of a grid fitted to it.

    θ₀ (``path[0]``) sits at ``(0, 0)`` and θ_T (``path[-1]``) at ``(1, 0)``, β along the path's
    largest bend; a straight path gets a :func:`filter_normalized_direction` drawn from ``seed``
    as ``d₂``. The surface ``C(θ₀ + α d₁ + β d₂)`` is computed by :func:`loss_surface` on the
    ``resolution × resolution`` grid of :func:`path_grid`, on the model's device and dtype; the
    plane comes from the path on the CPU (a ``T × T`` Gram matrix).

    θ₀ and θ_T lie on the plane, so the colour under their markers is their cost, but the points
    between are generally off it, so the colour under them is the cost at their projection.

    Args:
        model: the network whose weights the path holds (its own weights are left untouched).
        loss_fn: ``C(output, target)``.
        batches: ``(x, y)`` pairs on the model's device; ``C`` is their mean.
        path: ``(T, P)`` flat weight vectors θ₀, …, θ_T on the CPU, ``T ≥ 2``, ``θ_T ≠ θ₀``.
        resolution: grid points along each axis.
        margin: the grid's room on each side of the path, as a fraction of the path's larger
            extent along α or β.
        seed: seeds the random ``d₂`` of a straight path.
    """
    fallback = filter_normalized_direction(model, torch.Generator().manual_seed(seed))
    d1, d2 = path_plane(path, fallback.cpu())
    coordinates = project(path, path[0], (d1, d2))
    alphas, betas = path_grid(coordinates, resolution, margin)
    like = next(model.parameters())
    origin, d1, d2 = (v.to(like.device, like.dtype) for v in (path[0], d1, d2))
    surface = loss_surface(model, loss_fn, batches, (d1, d2), origin, alphas, betas)
    return landscape_figure(
        alphas,
        betas,
        surface.cpu(),
        {"θ during training": coordinates},
        axis_labels=("α (along d₁ = θ_T − θ₀)", "β (along d₂, orthogonal to d₁)"),
        end_label="θ_T (now)",
    )
