"""TensorBoardExtras: its steps, its cadence, non-finite values and its figure."""

from __future__ import annotations

import functools

import lightning.pytorch as L
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from gdtorch import nn as gnn
from gdtorch.lightning import CatClassifier, NonFiniteLossError, NonFiniteLossGuard
from gdtorch.lightning import TensorBoardExtras as Extras
from gdtorch.lightning.tensorboard import prediction_grid
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


def _fit(tmp_path, extras: Extras, *, batch_size: int = 16, poison_step: int = 10**9, **kwargs):
    """Fits a tiny classifier on 64 images of 3×4×4; returns the trainer and the event reader."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(64, 3, 4, 4, generator=generator)
    targets = (images[:, 0].mean((1, 2)) > images[:, 2].mean((1, 2))).float()
    data = TensorDataset(images, targets)
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
    trainer.fit(model, DataLoader(data, batch_size=batch_size), DataLoader(data, batch_size=32))
    events = EventAccumulator(logger.log_dir, size_guidance={"histograms": 0, "images": 0})
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


@pytest.mark.parametrize(
    ("every_n_epochs", "max_epochs", "stop_at", "epochs"),
    [
        (3, 8, None, [0, 3, 6, 7]),  # and the last epoch
        (None, 25, None, [0, 3, 6, 9, 12, 15, 18, 21, 24]),  # every ⌈25 / 10⌉ epochs
        (None, 25, 10, [0, 3, 6, 9, 10]),  # early stopped: its last epoch too
        (None, 4, None, [0, 1, 2, 3]),
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
    assert set(epochs) <= set(_steps(events, "val/loss"))  # the same step axis


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
        # Weights beyond the histogram buckets (±1e20) but finite: the run goes on.
        (["data.mode=batch", "optimizer.lr=1e30"], None),
        (["data.mode=minibatch", "data.batch_size=32", "optimizer.lr=1e38"], NonFiniteLossError),
    ],
    ids=["batch", "minibatch"],
)
def test_a_diverging_run_ends_in_the_guard_not_in_a_histogram(tmp_path, overrides, error):
    cfg = compose_train(tmp_path, *TINY, "model=logistic", "trainer.max_epochs=3", *overrides)
    if error is None:
        assert run(cfg)["val/loss"] > 1e20
    else:
        with pytest.raises(error, match="NonFiniteLossGuard"):
            run(cfg)


@pytest.mark.parametrize("n", [16, 9, 5, 1])
def test_prediction_grid_titles_clear_every_image(n):
    images = torch.rand(n, 3, 16, 16)
    targets = (torch.arange(n) % 2).float()
    figure = prediction_grid(images, targets, torch.linspace(0, 1, n))
    FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()
    shown = [ax for ax in figure.axes if ax.images]
    assert len(shown) == n
    page = figure.bbox
    for ax in shown:
        title = ax.title.get_window_extent(renderer)
        assert page.x0 <= title.x0 and title.x1 <= page.x1
        assert page.y0 <= title.y0 and title.y1 <= page.y1
        for other in shown:
            image = other.images[0].get_window_extent(renderer)
            assert not title.overlaps(image), (ax.get_title(), other.get_title())


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="every_n_epochs must be >= 1 or None, got 0"):
        Extras(every_n_epochs=0)
    with pytest.raises(ValueError, match="num_images must be >= 0, got -1"):
        Extras(num_images=-1)
