"""TensorBoardExtras: its steps, its cadence, non-finite values, its image grid and histograms."""

from __future__ import annotations

import functools
import io
import math
import warnings

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from gdtorch import nn as gnn
from gdtorch.data import TensorBatchLoader
from gdtorch.lightning import CatClassifier, NonFiniteLossError, NonFiniteLossGuard
from gdtorch.lightning import TensorBoardExtras as Extras
from gdtorch.lightning.tensorboard import (
    histogram,
    jpeg_summary,
    prediction_grid,
    prediction_table,
)
from gdtorch.train import run
from tests.cases import TINY, compose_train


class PoisonedNet(torch.nn.Module):
    """A small MLP whose output turns NaN from optimizer step ``poison_step`` on, in training."""

    def __init__(self, poison_step: int) -> None:
        super().__init__()
        self.mlp = gnn.MLP([48, 8, 1])
        self.poison_step = poison_step
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        output = self.mlp(images)
        if self.training:
            self.calls += 1
            if self.calls > self.poison_step:
                output = output * float("nan")
        return output


class Recorder(L.Callback):
    """The gradient norm of ``mlp``'s first weight before each update, and each batch's loss."""

    def __init__(self) -> None:
        self.grad_norms: list[float] = []
        self.losses: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.grad_norms.append(pl_module.net.mlp[0].weight.grad.norm().item())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].item())


class StopAt(L.Callback):
    """Stops training at the end of epoch ``epoch``, as early stopping would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = trainer.current_epoch >= self.epoch


def _fit(
    tmp_path,
    extras: Extras,
    *,
    batch_size: int = 16,
    poison_step: int = 10**9,
    updates_per_batch: int | None = None,
    **kwargs,
):
    """Fits a tiny classifier on 64 images of 3×4×4; returns the trainer and the event reader.

    The training batches come in order from a DataLoader, or from a TensorBatchLoader serving
    ``updates_per_batch`` of them together.
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(64, 3, 4, 4, generator=generator)
    targets = (images[:, 0].mean((1, 2)) > images[:, 2].mean((1, 2))).float()
    data = TensorDataset(images, targets)
    if updates_per_batch is None:
        train = DataLoader(data, batch_size=batch_size)
    else:
        train = TensorBatchLoader(images, targets, batch_size, updates_per_batch=updates_per_batch)
    torch.manual_seed(0)  # the same initial weights in every fit
    model = CatClassifier(
        net=PoisonedNet(poison_step),
        loss=gnn.BCEWithLogitsLoss(),
        optimizer=functools.partial(torch.optim.SGD, lr=0.5),
        input_shape=(3, 4, 4),
    )
    logger = L.loggers.TensorBoardLogger(tmp_path, name="tb", version="")
    options = dict(
        max_epochs=3,
        accelerator="cpu",
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer = L.Trainer(
        **{**options, **kwargs, "callbacks": [extras, *kwargs.get("callbacks", [])]}
    )
    with warnings.catch_warnings():  # Lightning compares log_every_n_steps with its batches
        warnings.filterwarnings("ignore", message=r"The number of training batches")
        trainer.fit(model, train, DataLoader(data, batch_size=32))
    sizes = {"histograms": 0, "images": 0, "tensors": 0}
    events = EventAccumulator(logger.log_dir, size_guidance=sizes)
    events.Reload()
    return trainer, events


def _steps(events: EventAccumulator, tag: str, kind: str = "Scalars") -> list[int]:
    return [event.step for event in getattr(events, kind)(tag)]


def test_grad_norms_are_logged_once_each_at_the_step_of_their_update(tmp_path):
    recorder = Recorder()
    trainer, events = _fit(
        tmp_path, Extras(every_n_steps=3), log_every_n_steps=2, callbacks=[recorder]
    )
    assert trainer.global_step == 12  # 4 updates a epoch, 3 epochs
    weight = "grad_norm/net.mlp.0.weight"
    assert _steps(events, weight) == [0, 3, 6, 9]
    assert _steps(events, "update_ratio/net.mlp.0.weight") == [0, 3, 6, 9]
    assert _steps(events, "train/loss") == [1, 3, 5, 7, 9, 11]  # every log_every_n_steps
    # Step 3 is one update in both: the loss of batch 3 and the gradient of that loss.
    for event in events.Scalars(weight):
        assert event.value == pytest.approx(recorder.grad_norms[event.step], rel=1e-6)
    for event in events.Scalars("train/loss"):
        assert event.value == pytest.approx(recorder.losses[event.step], rel=1e-6)


@pytest.mark.parametrize("updates_per_batch", [2, 3])
def test_batches_of_updates_log_what_one_update_per_batch_logs(tmp_path, updates_per_batch):
    def fit(folder: str, updates: int | None):
        extras = Extras(every_n_steps=3, every_n_epochs=2, num_images=4)
        return _fit(
            tmp_path / folder, extras, batch_size=8, updates_per_batch=updates, log_every_n_steps=2
        )

    one_trainer, one = fit("one", None)
    grouped_trainer, grouped = fit("grouped", updates_per_batch)
    assert one_trainer.global_step == grouped_trainer.global_step == 3 * 8
    tags = one.Tags()
    assert {"grad_norm/net.mlp.0.weight", "update_ratio/net.mlp.0.weight"} <= set(tags["scalars"])
    assert _steps(one, "grad_norm/net.mlp.0.weight") == list(range(0, 24, 3))
    assert _steps(one, "train/loss") == list(range(1, 24, 2))
    for kind in ("scalars", "histograms", "images"):
        assert set(grouped.Tags()[kind]) == set(tags[kind]), kind
    for tag in tags["scalars"]:
        expected = [(e.step, e.value) for e in one.Scalars(tag)]
        assert [(e.step, e.value) for e in grouped.Scalars(tag)] == expected, tag
    for tag in tags["histograms"]:  # weights after, and gradients of, each epoch's last update
        expected = [(e.step, e.histogram_value) for e in one.Histograms(tag)]
        assert [(e.step, e.histogram_value) for e in grouped.Histograms(tag)] == expected, tag
    assert _steps(grouped, "weights/net.mlp.0.weight", "Histograms") == [7, 23]
    expected = [(e.step, e.encoded_image_string) for e in one.Images("val/predictions")]
    assert [(e.step, e.encoded_image_string) for e in grouped.Images("val/predictions")] == (
        expected
    )


@pytest.mark.parametrize(
    ("every_n_epochs", "max_epochs", "stop_at", "epochs"),
    [
        (3, 8, None, [0, 3, 6, 7]),  # and the last epoch
        (None, 25, None, [0, 13, 24]),  # every ⌈25 / 2⌉ epochs, and the last
        (None, 25, 14, [0, 13, 14]),  # early stopped: its last epoch too
        (None, 25, 13, [0, 13]),  # early stopped at an epoch that was due anyway
        (None, 4, None, [0, 2, 3]),
    ],
)
def test_histograms_and_predictions_every_n_epochs_and_at_the_last(
    tmp_path, every_n_epochs, max_epochs, stop_at, epochs
):
    callbacks = [] if stop_at is None else [StopAt(stop_at)]
    _, events = _fit(
        tmp_path,
        Extras(every_n_steps=100, every_n_epochs=every_n_epochs, num_images=4),
        batch_size=64,  # one update an epoch: the full-batch mode
        max_epochs=max_epochs,
        callbacks=callbacks,
    )
    assert _steps(events, "weights/net.mlp.0.weight", "Histograms") == epochs
    assert _steps(events, "grads/net.mlp.0.weight", "Histograms") == epochs
    assert _steps(events, "val/predictions", "Images") == epochs
    assert _steps(events, "val/predictions/text_summary", "Tensors") == epochs  # the table
    assert set(epochs) <= set(_steps(events, "val/loss"))  # the same step axis


@pytest.mark.slow
@pytest.mark.parametrize("max_epochs", [5, 12, 40])
def test_by_default_histograms_and_predictions_come_three_times_a_run(tmp_path, max_epochs):
    _, events = _fit(
        tmp_path, Extras(every_n_steps=100, num_images=2), batch_size=64, max_epochs=max_epochs
    )
    every = math.ceil(max_epochs / 2)
    expected = sorted({*range(0, max_epochs, every), max_epochs - 1})
    assert _steps(events, "weights/net.mlp.0.weight", "Histograms") == expected
    assert _steps(events, "val/predictions", "Images") == expected
    assert len(expected) == 3  # the first epoch, half-way, the last


def test_histograms_are_at_the_step_of_the_epochs_last_update(tmp_path):
    _, events = _fit(tmp_path, Extras(every_n_epochs=2, num_images=4), max_epochs=3)
    assert _steps(events, "weights/net.mlp.0.weight", "Histograms") == [3, 11]
    assert _steps(events, "val/predictions", "Images") == [3, 11]
    assert _steps(events, "val/loss") == [3, 7, 11]


@pytest.mark.parametrize("batch_size", [64, 32], ids=["full_batch", "last_of_two_batches"])
def test_a_nan_gradient_is_left_to_the_non_finite_guard(tmp_path, batch_size):
    # The NaN reaches the gradients of step 1, the last batch of its epoch: the histograms of
    # that update are written before the guard sees the batch's loss.
    with pytest.raises(NonFiniteLossError, match="training loss is nan at step 1"):
        _fit(
            tmp_path,
            Extras(every_n_steps=1),
            batch_size=batch_size,
            poison_step=1,
            callbacks=[NonFiniteLossGuard()],
        )


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        # Weights beyond ±1e20 (add_histogram's default buckets) but finite: the run goes on,
        # with their histograms.
        (["data.mode=batch", "optimizer.lr=1e30"], None),
        (["data.mode=minibatch", "data.batch_size=32", "optimizer.lr=1e38"], NonFiniteLossError),
    ],
    ids=["batch", "minibatch"],
)
@pytest.mark.slow
def test_a_diverging_run_ends_in_the_guard_not_in_a_histogram(tmp_path, overrides, error):
    cfg = compose_train(tmp_path, *TINY, "model=logistic", "trainer.max_epochs=3", *overrides)
    if error is None:
        assert run(cfg)["val/loss"] > 1e20
    else:
        with pytest.raises(error, match="NonFiniteLossGuard"):
            run(cfg)


def _tile_origins(n: int, tile_height: int, tile_width: int) -> list[tuple[int, int]]:
    """Where make_grid puts each tile: eight a row, 2 pixels apart (a single tile: alone)."""
    if n == 1:
        return [(0, 0)]
    return [(2 + (i // 8) * (tile_height + 2), 2 + (i % 8) * (tile_width + 2)) for i in range(n)]


def _colour(pixel: torch.Tensor) -> str:
    r, g, b = pixel.tolist()
    if g > 2 * r and g > 2 * b:
        return "green"
    if r > 2 * g and r > 2 * b:
        return "red"
    return "other"


@pytest.mark.parametrize("n", [16, 9, 5, 1])
def test_prediction_grid_frames_right_green_wrong_red_above_a_bar_of_p_cat(n):
    height, width, frame, bar = 16, 16, 1, 2  # the frame and bar of 16×16 images
    images = torch.rand(n, 3, height, width) * 5 - 2
    targets = (torch.arange(n) % 2).float()
    probabilities = torch.linspace(0, 1, n)
    if n >= 5:  # at exactly 0.5 the prediction is "cat"; NaN (a diverged model) is not
        probabilities[:4] = torch.tensor([0.5, 0.5, math.nan, 0.49])
    grid = prediction_grid(images, targets, probabilities)
    tile_height, tile_width = height + 3 * frame + bar, width + 2 * frame
    rows, columns = math.ceil(n / 8), min(n, 8)
    if n == 1:
        assert grid.shape == (3, tile_height, tile_width)
    else:
        assert grid.shape == (3, 2 + rows * (tile_height + 2), 2 + columns * (tile_width + 2))
    for i, (top, left) in enumerate(_tile_origins(n, tile_height, tile_width)):
        tile = grid[:, top : top + tile_height, left : left + tile_width]
        p, cat = float(probabilities[i]), bool(targets[i] == 1)
        right = (p >= 0.5) == cat  # NaN >= 0.5 is False: predicted "not cat"
        colour = "green" if right else "red"
        top_of_bar = 2 * frame + height
        framed = torch.ones(tile_height, tile_width, dtype=torch.bool)
        framed[frame : frame + height, frame : frame + width] = False  # the image
        framed[top_of_bar : top_of_bar + bar, frame : frame + width] = False  # the bar
        # The frame all round, and between the image and the bar, is one colour.
        assert {_colour(pixel) for pixel in tile[:, framed].T} == {colour}, (i, p, cat)
        shown = tile[:, frame : frame + height, frame : frame + width]
        image = images[i]
        torch.testing.assert_close(shown, (image - image.min()) / (image.max() - image.min()))
        strip = tile[:, top_of_bar : top_of_bar + bar, frame : frame + width]
        white = (strip == 1).all(dim=(0, 1))
        black = (strip == 0).all(dim=(0, 1))
        assert (white | black).all()
        filled = int(white.sum())
        assert torch.equal(white[:filled], torch.ones(filled, dtype=torch.bool))  # from the left
        expected = 0.0 if math.isnan(p) else min(max(p, 0.0), 1.0) * width
        assert abs(filled - expected) <= 0.5, (i, p, filled)


def test_prediction_grid_clamps_probabilities_outside_zero_one():
    # A network trained with MSE and no output squashing outputs any number.
    images = torch.rand(3, 3, 16, 16)
    grid = prediction_grid(images, torch.tensor([1.0, 0.0, 1.0]), torch.tensor([7.0, -3.0, 1.0]))
    bars = [grid[:, 20:22, 2 + i * 20 + 1 : 2 + i * 20 + 17] for i in range(3)]
    assert [int((bar == 1).all(dim=(0, 1)).sum()) for bar in bars] == [16, 0, 16]


def test_prediction_table_has_a_row_per_image_with_its_numbers():
    targets = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
    probabilities = torch.tensor([0.5, 0.5, 0.123, 0.049, math.nan])
    lines = prediction_table(targets, probabilities).splitlines()
    assert lines[0] == "| image | P(cat) | label | prediction |"
    assert lines[1] == "| --- | --- | --- | --- |"
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert cells == [
        ["1", "0.50", "cat", "right"],
        ["2", "0.50", "not cat", "wrong"],
        ["3", "0.12", "cat", "wrong"],
        ["4", "0.05", "not cat", "right"],
        ["5", "nan", "not cat", "right"],
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_histogram_counts_every_value_in_64_equal_bins_as_histc_does(dtype):
    values = (torch.randn(50, 30) * 3 + 1).to(dtype)
    result = histogram(values)
    exact = values.double().flatten()
    low, high = exact.min().item(), exact.max().item()
    assert (result["min"], result["max"], result["num"]) == (low, high, 1500)
    assert result["sum"] == pytest.approx(exact.sum().item())
    assert result["sum_squares"] == pytest.approx(exact.square().sum().item())
    counts = result["bucket_counts"]
    assert len(counts) == len(result["bucket_limits"]) == 64
    assert sum(counts) == 1500
    assert counts == torch.histc(exact, 64, low, high).tolist()
    # 64 equal buckets from the smallest value, each ending at its limit.
    limits = torch.tensor(result["bucket_limits"], dtype=torch.float64)
    assert limits[-1] == high
    steps = torch.arange(1, 65, dtype=torch.float64)
    torch.testing.assert_close(limits, low + (high - low) * steps / 64, rtol=1e-12, atol=1e-12)
    position = ((exact - low) / (high - low) * 64).floor().clamp(max=63).long()
    by_position = torch.bincount(position, minlength=64)
    # (a value on an edge may fall either side by rounding)
    assert (by_position - torch.tensor(counts)).abs().sum() <= 2


def test_histogram_of_one_value_is_one_bucket():
    result = histogram(torch.full((7,), 2.5))
    assert result["bucket_counts"] == [7.0] and result["bucket_limits"] == [2.5]
    assert (result["min"], result["max"], result["num"], result["sum"]) == (2.5, 2.5, 7, 17.5)


@pytest.mark.parametrize("scale", [1e25, 1e39, 2.0**1020], ids=["1e25", "1e39", "2^1020"])
def test_histogram_of_huge_finite_values(scale):
    # Beyond float32 (1e39) and where high - low overflows float64 (2^1020 · 2 · 64 > 2^1024):
    # a 64-bit run's finite weights. Each value is at a known fraction of the range.
    fractions = torch.tensor([0.0, 0.2, 0.55, 0.85, 1.0], dtype=torch.float64)
    values = (fractions * 2 - 1) * scale  # exact: powers of two times representable numbers
    result = histogram(values)
    counts = result["bucket_counts"]
    assert sum(counts) == 5
    expected = [0] * 64
    for fraction in fractions.tolist():
        expected[min(int(fraction * 64), 63)] += 1
    assert counts == expected
    limits = result["bucket_limits"]
    assert all(math.isfinite(limit) for limit in limits) and limits[-1] == scale
    assert limits[31] == pytest.approx(0.0, abs=scale * 1e-12)


def test_a_float64_run_writes_histograms_of_weights_beyond_float32(tmp_path):
    class HugeWeight(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            with torch.no_grad():
                pl_module.net.mlp[0].weight[0, 0] = 1e300  # finite in float64 only

    _, events = _fit(
        tmp_path,
        Extras(every_n_steps=100, num_images=2),
        batch_size=64,
        max_epochs=1,
        precision="64-true",
        callbacks=[HugeWeight()],
    )
    (written,) = events.Histograms("weights/net.mlp.0.weight")
    assert written.histogram_value.max == 1e300
    assert sum(written.histogram_value.bucket) == 48 * 8


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="every_n_epochs must be >= 1 or None, got 0"):
        Extras(every_n_epochs=0)
    with pytest.raises(ValueError, match="num_images must be >= 0, got -1"):
        Extras(num_images=-1)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_histogram_of_values_with_nan_or_inf_is_none(bad):
    values = torch.randn(100)
    values[17] = bad
    assert histogram(values) is None


def test_the_prediction_grid_is_a_jpeg_of_the_grid(tmp_path):
    grid = prediction_grid(torch.rand(3, 3, 16, 16), torch.tensor([1.0, 0.0, 1.0]), torch.rand(3))
    summary = jpeg_summary("val/predictions", grid)
    (value,) = summary.value
    assert value.tag == "val/predictions"
    decoded = torch.from_numpy(np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string))))
    assert decoded.shape == (grid.shape[1], grid.shape[2], 3)
    assert (value.image.height, value.image.width) == tuple(grid.shape[1:])
    # JPEG is lossy: every pixel within a few levels of the grid's on average
    difference = (decoded.permute(2, 0, 1).float() / 255 - grid).abs()
    assert difference.mean() < 0.03
