"""Loss landscape: filter-normalised directions, projection, the cost surface and the callback."""

from __future__ import annotations

import functools

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
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
    project,
)


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


def _loaders() -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(32, 3, 4, 4, generator=generator)
    targets = (images[:, 0].mean((1, 2)) > images[:, 2].mean((1, 2))).float()
    data = TensorDataset(images, targets)
    return DataLoader(data, batch_size=32), DataLoader(data, batch_size=32)  # full batch


def _fit(tmp_path, callbacks: list[L.Callback], logger) -> CatClassifier:
    torch.manual_seed(0)
    model = CatClassifier(
        net=gnn.MLP([48, 1]),  # linear regression: MSE is a quadratic bowl in (W, b)
        loss=gnn.MSELoss(),
        optimizer=functools.partial(torch.optim.SGD, lr=0.01),
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
    assert path.shape == (8, 2) and losses.shape == (8,)
    assert torch.equal(path[0], torch.zeros(2, dtype=torch.float64))  # θ₀ is the plane's origin
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


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resolution": 0}, "resolution"),
        ({"num_batches": 0}, "num_batches"),
        ({"every_n_steps": 0}, "every_n_steps"),
        ({"span": 0.0}, "span"),
        ({"epochs": [-1]}, "epochs"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossLandscape(**kwargs)
