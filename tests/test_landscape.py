"""gdtorch.landscape: filter-normalised directions, planes, projection, the cost surface, plots."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch.nn.utils import parameters_to_vector

from gdtorch import nn as gnn
from gdtorch.landscape import (
    filter_normalized_directions,
    landscape_figure,
    loss_surface,
    path_grid,
    path_landscape,
    path_plane,
    principal_plane,
    project,
    share_in_plane,
)


def test_importing_it_loads_neither_lightning_nor_matplotlib():
    code = "import sys, gdtorch.landscape; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "'lightning'" not in loaded and "'matplotlib'" not in loaded


class Bowl(torch.nn.Module):
    """A "network" whose output is its weight matrix W, so ``C = ‖W − W*‖²`` is a round bowl."""

    def __init__(self, shape: tuple[int, int]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(shape, dtype=torch.float64))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.weight


def _squared_distance(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((output - target) ** 2).sum()


def _plane(count: int = 12) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """An origin and two independent, non-orthogonal directions in R^count."""
    origin, d1, d2 = torch.randn(3, count, dtype=torch.float64)
    return origin, (d1, d2 + 0.5 * d1)


def _off_plane(vector: torch.Tensor, directions) -> torch.Tensor:
    """``vector`` minus its least-squares projection onto span(d₁, d₂)."""
    basis = torch.stack(directions, dim=1)
    return vector - basis @ torch.linalg.lstsq(basis, vector).solution


def test_filter_normalized_directions_match_each_weight_rows_norm():
    model = gnn.MLP([5, 4, 3])
    d1, d2 = filter_normalized_directions(model, torch.Generator().manual_seed(1))
    again, _ = filter_normalized_directions(model, torch.Generator().manual_seed(1))
    other, _ = filter_normalized_directions(model, torch.Generator().manual_seed(2))
    assert torch.equal(d1, again) and not torch.equal(d1, other) and not torch.equal(d1, d2)
    for direction in (d1, d2):
        assert direction.shape == parameters_to_vector(model.parameters()).shape
        assert direction.dtype == torch.float32
        offset = 0
        for parameter in model.parameters():
            piece = direction[offset : offset + parameter.numel()].view_as(parameter)
            offset += parameter.numel()
            if parameter.dim() == 1:  # biases are not perturbed
                assert torch.equal(piece, torch.zeros_like(piece))
            else:
                torch.testing.assert_close(piece.norm(dim=1), parameter.detach().norm(dim=1))
                assert not torch.allclose(piece, parameter)  # random, not the weights themselves


def test_project_recovers_known_coordinates_of_a_path():
    origin, directions = _plane()
    coordinates = torch.tensor([[0.0, 0.0], [0.3, -1.2], [-2.0, 0.7]], dtype=torch.float64)
    d1, d2 = directions
    residual = _off_plane(torch.randn(12, dtype=torch.float64), directions)
    path = origin + coordinates[:, :1] * d1 + coordinates[:, 1:] * d2 + residual
    torch.testing.assert_close(project(path, origin, directions), coordinates)
    torch.testing.assert_close(project(path[1], origin, directions), coordinates[1])


def test_bowl_centred_on_its_minimum_has_the_closed_form_surface():
    bowl = Bowl((3, 4))
    minimum = torch.randn(3, 4, dtype=torch.float64)
    _, directions = _plane()
    grid = torch.linspace(-1, 1, 11, dtype=torch.float64)
    batches = [(torch.zeros(1), minimum)]
    surface = loss_surface(
        bowl, _squared_distance, batches, directions, minimum.flatten(), grid, grid
    )
    d1, d2 = directions
    expected = torch.stack(
        [torch.stack([(a * d1 + b * d2).square().sum() for b in grid]) for a in grid]
    )  # C(W* + α d₁ + β d₂) = ‖α d₁ + β d₂‖²
    torch.testing.assert_close(surface, expected)
    assert divmod(surface.argmin().item(), 11) == (5, 5)
    assert surface[5, 5] == pytest.approx(0, abs=1e-20)


def test_bowl_seen_from_elsewhere_has_its_grid_minimum_at_the_projected_minimum():
    bowl = Bowl((3, 4))
    weight = bowl.weight.detach().clone()
    origin, directions = _plane()
    d1, d2 = directions
    offset = _off_plane(torch.randn(12, dtype=torch.float64), directions)
    minimum = origin + 0.4 * d1 - 0.6 * d2 + offset  # the bowl's bottom, off the plane
    grid = torch.linspace(-1, 1, 11, dtype=torch.float64)  # step 0.2: holds 0.4 and -0.6
    batches = [(torch.zeros(1), minimum.view(3, 4))] * 2
    surface = loss_surface(bowl, _squared_distance, batches, directions, origin, grid, grid)
    row, column = divmod(surface.argmin().item(), 11)
    torch.testing.assert_close(grid[[row, column]], project(minimum, origin, directions))
    assert surface.min() == pytest.approx(offset.square().sum().item())
    assert torch.equal(bowl.weight, weight)  # the surface was computed on a copy


def test_path_plane_holds_both_ends_and_recovers_a_path_that_bends_in_a_plane():
    origin, (u, w) = _plane()
    t = torch.linspace(0, 1, 9, dtype=torch.float64)[:, None]
    path = origin + t * u + 0.3 * torch.sin(math.pi * t) * w  # a bend along w, back to t u at t = 1
    d1, d2 = path_plane(path, fallback=torch.randn(12, dtype=torch.float64))
    torch.testing.assert_close(d1, path[-1] - path[0])  # θ₀ at (0, 0), θ_T at (1, 0)
    assert d1.dot(d2) == pytest.approx(0, abs=1e-12) and d2.norm() == pytest.approx(d1.norm())
    coordinates = project(path, path[0], (d1, d2))
    torch.testing.assert_close(
        coordinates[[0, -1]], torch.tensor([[0.0, 0.0], [1.0, 0.0]]).double()
    )
    on_plane = path[0] + coordinates[:, :1] * d1 + coordinates[:, 1:] * d2
    torch.testing.assert_close(on_plane, path)  # the whole path lies in the plane
    assert coordinates[:, 1].abs().max() > 0.1  # and its bend shows along β


def test_path_plane_of_a_straight_path_takes_the_fallback_for_d2():
    origin, (u, fallback) = _plane()
    for steps in ([0.0, 1.0], [0.0, 0.3, 0.7, 1.0]):
        path = origin + torch.tensor(steps, dtype=torch.float64)[:, None] * u
        d1, d2 = path_plane(path, fallback)
        expected = fallback - fallback.dot(u) / u.dot(u) * u
        torch.testing.assert_close(d2, expected * (u.norm() / expected.norm()))
        assert d1.dot(d2) == pytest.approx(0, abs=1e-12)


def test_path_grid_is_a_square_around_the_path_with_the_margin_to_spare():
    coordinates = torch.tensor([[0.0, 0.0], [0.4, 0.3], [1.0, 0.0]], dtype=torch.float64)
    alphas, betas = path_grid(coordinates, resolution=7, margin=0.25)
    torch.testing.assert_close(alphas[[0, -1]], torch.tensor([-0.25, 1.25]).double())
    torch.testing.assert_close(betas[[0, -1]], torch.tensor([-0.6, 0.9]).double())  # centre 0.15
    assert len(alphas) == len(betas) == 7


def test_principal_plane_holds_paths_that_stay_in_one_plane_and_points_to_their_ends():
    origin, (u, w) = _plane()
    t = torch.linspace(0, 1, 6, dtype=torch.float64)[:, None]
    paths = [origin + t * u, origin + t * (0.5 * u - w), origin + t**2 * (u + 2 * w)]
    d1, d2 = principal_plane(paths, origin)
    torch.testing.assert_close(
        torch.stack([d1, d2]) @ torch.stack([d1, d2]).T, torch.eye(2).double()
    )
    for path in paths:
        assert share_in_plane(path[-1], origin, (d1, d2)) == pytest.approx(1.0)
    ends = torch.stack([project(path[-1], origin, (d1, d2)) for path in paths])
    assert (ends.sum(0) > 0).all()  # the ends lie on the positive side on average


def test_share_in_plane_is_the_cosine_to_the_plane():
    origin, directions = _plane()
    inside = origin + 0.7 * directions[0] - 0.2 * directions[1]
    off = _off_plane(torch.randn(12, dtype=torch.float64), directions)
    assert share_in_plane(inside, origin, directions) == pytest.approx(1.0)
    assert share_in_plane(origin + off, origin, directions) == pytest.approx(0.0, abs=1e-12)
    tilted = inside - origin + off * ((inside - origin).norm() / off.norm())  # 45° off the plane
    assert share_in_plane(origin + tilted, origin, directions) == pytest.approx(math.sqrt(0.5))


def test_landscape_figure_draws_each_path_with_its_label_and_colour():
    grid = torch.linspace(-1, 1, 5, dtype=torch.float64)
    surface = grid[:, None] ** 2 + grid[None, :] ** 2
    paths = {
        "a": torch.tensor([[0.0, 0.0], [0.5, 0.2]], dtype=torch.float64),
        "b": torch.tensor([[0.0, 0.0], [-0.4, 0.6]], dtype=torch.float64),
    }
    figure = landscape_figure(grid, grid, surface, paths, colours={"a": "red"}, title="t")
    ax = figure.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    assert {"a", "b", "θ₀ (start)", "θ_T (end)"} <= set(lines)
    assert lines["a"].get_color() == "red" and lines["b"].get_color() == "white"
    assert list(lines["θ₀ (start)"].get_xydata()[0]) == [0.0, 0.0]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "a",
        "θ_T (end)",
        "b",
        "θ₀ (start)",
    ]


def test_path_landscape_puts_the_ends_at_0_0_and_1_0_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = gnn.MLP([6, 3, 1])
    weights = parameters_to_vector(model.parameters()).detach().clone()
    steps = torch.randn(4, weights.numel())
    path = torch.cat([weights[None], weights + steps.cumsum(0) * 0.1])
    batches = [(torch.randn(8, 6), torch.rand(8, 1))]
    figure = path_landscape(model, torch.nn.functional.mse_loss, batches, path, resolution=4)
    lines = {line.get_label(): line for line in figure.axes[0].lines}
    assert list(lines["θ₀ (start)"].get_xydata()[0]) == pytest.approx([0.0, 0.0], abs=1e-6)
    assert list(lines["θ_T (now)"].get_xydata()[0]) == pytest.approx([1.0, 0.0], abs=1e-6)
    assert len(lines["θ during training"].get_xydata()) == 5
    assert torch.equal(parameters_to_vector(model.parameters()), weights)
