"""Loss landscape: filter-normalised directions, projection, the cost surface and the callback."""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.nn.utils import parameters_to_vector
from torch.utils.data import DataLoader, TensorDataset

from gdtorch import nn as gnn
from gdtorch.lightning import CatClassifier
from gdtorch.lightning.landscape import (
    LossLandscape,
    filter_normalized_directions,
    loss_surface,
    path_grid,
    path_plane,
    project,
)
from gdtorch.train import run
from tests.cases import compose_train


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


def _loaders() -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(32, 3, 4, 4, generator=generator)
    targets = (images[:, 0].mean((1, 2)) > images[:, 2].mean((1, 2))).float()
    data = TensorDataset(images, targets)
    return DataLoader(data, batch_size=32), DataLoader(data, batch_size=32)  # full batch


def _net() -> gnn.MLP:
    torch.manual_seed(0)
    return gnn.MLP([48, 1])  # linear regression: MSE is a quadratic bowl in (W, b)


def _fit(tmp_path, callbacks: list[L.Callback], logger, lr: float = 0.01) -> CatClassifier:
    model = CatClassifier(
        net=_net(),
        loss=gnn.MSELoss(),
        optimizer=functools.partial(torch.optim.SGD, lr=lr),
        input_shape=(3, 4, 4),
    )
    trainer = L.Trainer(
        max_epochs=8,
        log_every_n_steps=1,
        accelerator="cpu",
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )
    trainer.fit(model, *_loaders())
    return model


def test_callback_records_a_descending_path_and_writes_png_and_tensorboard_image(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="run")
    callback = LossLandscape(resolution=5, num_batches=1, epochs=[2, 7], seed=0)
    _fit(tmp_path, [callback], logger)

    path, losses = callback.path, callback.path_loss
    assert path.shape == (8, 49) and losses.shape == (8,)  # 48 weights and a bias, every step
    assert torch.equal(path[0], parameters_to_vector(_net().parameters()).detach())  # θ₀
    assert (losses[1:] < losses[:-1]).all()  # full-batch GD, small η, on a bowl: downhill

    pngs = sorted(p.name for p in tmp_path.rglob("*.png"))
    assert pngs == ["loss_landscape_step3.png", "loss_landscape_step8.png"]
    for png in tmp_path.rglob("*.png"):
        image = imread(png)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert png.parent == tmp_path / "run" / "version_0"  # trainer.log_dir
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0}).Reload()
    assert [event.step for event in events.Images("loss_landscape")] == [3, 8]


def test_callback_leaves_training_unchanged(tmp_path):
    callback = LossLandscape(resolution=4, epochs=[1, 4], save_dir=tmp_path / "plots")
    with_plots = _fit(tmp_path, [callback], logger=False)  # plots mid-run, between updates
    without = _fit(tmp_path, [], logger=False)
    for p, q in zip(with_plots.parameters(), without.parameters(), strict=True):
        assert torch.equal(p, q)
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["loss_landscape_step2.png", "loss_landscape_step5.png"]


def test_callback_plots_once_at_the_end_of_fit_by_default(tmp_path):
    callback = LossLandscape(resolution=3)
    _fit(tmp_path, [callback], logger=False)
    assert [p.name for p in tmp_path.glob("*.png")] == ["loss_landscape_step8.png"]


def test_a_full_path_drops_every_second_point_and_records_half_as_often(tmp_path):
    thinned = LossLandscape(max_points=3, epochs=[])  # steps 0 1 2 | 0 2 4 | 0 4
    every_step = LossLandscape(epochs=[])
    _fit(tmp_path, [thinned, every_step], logger=False)
    assert torch.equal(thinned.path, every_step.path[[0, 4]])
    assert torch.equal(thinned.path_loss, every_step.path_loss[[0, 4]])


def test_no_plot_while_the_weights_have_not_moved(tmp_path):
    with pytest.warns(UserWarning, match="not moved"):
        _fit(tmp_path, [LossLandscape(resolution=3)], logger=False, lr=0.0)
    assert not list(tmp_path.glob("*.png"))


class KeptLandscape(LossLandscape):
    """A ``LossLandscape`` keeping the figures it draws (instantiated from the config by name)."""

    figures: ClassVar[list[Figure]] = []

    def figure(self, pl_module: L.LightningModule) -> Figure:
        figure = super().figure(pl_module)
        self.figures.append(figure)
        return figure


def test_the_path_of_a_configured_run_spans_the_plot_with_its_ends_apart(tmp_path):
    KeptLandscape.figures.clear()
    kept = f"callbacks.loss_landscape._target_={__name__}.KeptLandscape"
    sizes = ["data.n_train=256", "data.n_val=64", "data.n_test=64", "data.image_size=16"]
    quiet = ["+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false"]
    run(
        compose_train(tmp_path, "callbacks=landscape", kept, "trainer.max_epochs=3", *sizes, *quiet)
    )
    [figure] = KeptLandscape.figures
    assert list(tmp_path.rglob("loss_landscape_step12.png"))  # 256 / 64 × 3 updates

    ax = figure.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    path = torch.tensor(lines["θ during training"].get_xydata())
    start, end = lines["θ₀ (start)"], lines["θ_T (now)"]
    (left, right), (bottom, top) = ax.get_xlim(), ax.get_ylim()
    extent = max(right - left, top - bottom)
    assert ((path >= torch.tensor([left, bottom])) & (path <= torch.tensor([right, top]))).all()
    separation = (torch.tensor(end.get_xydata()[0]) - torch.tensor(start.get_xydata()[0])).norm()
    assert separation >= 0.2 * extent

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    start_box, end_box = (line.get_window_extent(canvas.get_renderer()) for line in (start, end))
    assert not start_box.overlaps(end_box)  # the markers, in pixels
    axes_box = ax.get_window_extent()
    assert all(
        axes_box.contains(*box.p0) and axes_box.contains(*box.p1) for box in (start_box, end_box)
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resolution": 0}, "resolution"),
        ({"num_batches": 0}, "num_batches"),
        ({"every_n_steps": 0}, "every_n_steps"),
        ({"margin": 0.0}, "margin"),
        ({"max_points": 1}, "max_points"),
        ({"epochs": [-1]}, "epochs"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossLandscape(**kwargs)
