"""LossLandscape: the path it records, the plots it writes, and a run it leaves unchanged.

The maths it calls is tested in ``tests/test_landscape.py``.
"""

from __future__ import annotations

import functools
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
from gdtorch.lightning import CatClassifier, LossLandscape
from gdtorch.train import run
from tests.cases import compose_train


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
