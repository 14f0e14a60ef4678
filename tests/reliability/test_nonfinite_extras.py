"""Issue 16 item 4: no callback crashes on NaN or ±inf; the NonFiniteLossGuard's message wins.

Every reproducer runs as a user runs it, through ``run(cfg)`` with the default callbacks
(TensorBoard extras, checkpoints, the guard) and both loggers (``logger=many``: TensorBoard and
CSV), validating and writing histograms and the prediction grid every epoch. Each must end in the
guard's :class:`NonFiniteLossError` — not in ``ValueError: The histogram is empty`` or any other
callback's error — and leave only checkpoints that ``CatClassifier.load_from_checkpoint`` loads,
with finite weights.

The faults are injected by :class:`Poison`, a callback the config adds
(``+callbacks.poison._target_=…``): a NaN on the last batch of an epoch, infinite weights after
an update, NaN gradients, NaN predictions in the validation grid.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gdtorch.lightning import CatClassifier, NonFiniteLossError
from gdtorch.train import run
from tests.cases import TINY, compose_train

GUARD = "NonFiniteLossGuard"

# Validate, checkpoint and write every TensorBoard extra every epoch (to both loggers, unless
# a test chooses another logger=…).
EVERY_EPOCH = [
    *TINY,
    "trainer=cpu",
    "trainer.max_epochs=3",
    "trainer.check_val_every_n_epoch=1",
    "callbacks.early_stopping=null",
    "callbacks.tensorboard_extras.every_n_epochs=1",
    "callbacks.tensorboard_extras.every_n_steps=1",
]
MODES = ["batch", "minibatch", "stochastic"]
# Linear regression on pixels at η = 1e6: the squared error overflows (tests/test_cli.py).
OVERFLOWS = ["model=logistic", "loss=mse", "output_activation=null"]


class Poison(L.Callback):
    """Injects one kind of non-finite value in epoch ``epoch`` of a run.

    Args:
        kind: ``nan_last_batch`` — a NaN weight before the epoch's last batch (its loss is NaN);
            ``inf_weights`` — a weight set to +inf by the epoch's last update, after the update
            (a hook that runs before the TensorBoard extras' own, so they read it);
            ``nan_grads`` — NaN gradients handed to the epoch's last update;
            ``nan_predictions`` — a NaN weight before the epoch's validation, whose prediction
            grid then shows NaN probabilities.
        epoch: the epoch to poison; the epochs before it train and are checkpointed.
    """

    def __init__(self, kind: str, epoch: int = 1) -> None:
        self.kind, self.epoch = kind, epoch
        self._hook = None

    def _due(self, trainer: L.Trainer) -> bool:
        return trainer.current_epoch == self.epoch and not trainer.sanity_checking

    def _last_batch(self, trainer: L.Trainer) -> bool:
        return self._due(trainer) and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch

    @staticmethod
    def _weight(pl_module: L.LightningModule) -> torch.Tensor:
        return next(p for p in pl_module.parameters() if p.dim() == 2)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.kind == "inf_weights":  # registered before TensorBoardExtras' on_train_start

            def after_step(optimizer, args, kwargs):
                if self._last_batch(trainer):
                    with torch.no_grad():
                        self._weight(pl_module)[0, 0] = math.inf

            self._hook = trainer.optimizers[0].register_step_post_hook(after_step)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._hook is not None:
            self._hook.remove()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.kind == "nan_last_batch" and batch_idx == trainer.num_training_batches - 1:
            if self._due(trainer):
                with torch.no_grad():
                    self._weight(pl_module)[0, 0] = math.nan

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.kind == "nan_grads" and self._last_batch(trainer):
            for parameter in pl_module.parameters():
                parameter.grad.fill_(math.nan)

    def on_validation_start(self, trainer, pl_module) -> None:
        if self.kind == "nan_predictions" and self._due(trainer):
            with torch.no_grad():
                for parameter in pl_module.parameters():
                    parameter.fill_(math.nan)


def _poison(kind: str, epoch: int = 1) -> list[str]:
    return [
        f"+callbacks.poison._target_={__name__}.Poison",
        f"+callbacks.poison.kind={kind}",
        f"+callbacks.poison.epoch={epoch}",
    ]


def _config(tmp_path: Path, *overrides: str, logger: str = "many") -> DictConfig:
    return compose_train(tmp_path, *EVERY_EPOCH, f"logger={logger}", *overrides)


def _ends_in_the_guard(tmp_path: Path, *overrides: str, logger: str = "many") -> str:
    """Runs ``overrides``; asserts the guard stopped it; returns the guard's message."""
    with pytest.raises(NonFiniteLossError, match=GUARD) as raised:
        run(_config(tmp_path, *overrides, logger=logger))
    return str(raised.value)


def _checkpoints_are_good(tmp_path: Path, last_epoch: int | None) -> None:
    """Every checkpoint on disk loads as a classifier with finite weights; ``last.ckpt`` is
    the one of ``last_epoch`` (``None``: the run may have stopped before any was written)."""
    folder = tmp_path / "checkpoints"
    paths = sorted(folder.glob("*.ckpt"))
    for path in paths:
        model = CatClassifier.load_from_checkpoint(path)
        assert all(torch.isfinite(p).all() for p in model.parameters()), path
        probability = model.predict_decoded(torch.rand(2, 3, model.image_size, model.image_size))
        assert torch.isfinite(probability).all(), path
    if last_epoch is not None:
        last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
        assert last["epoch"] == last_epoch
    assert not list(folder.glob(".*.tmp")) if folder.exists() else True


def _csv_rows(tmp_path: Path) -> list[dict[str, str]]:
    (metrics,) = (tmp_path / "csv").rglob("metrics.csv")
    with metrics.open() as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_an_absurd_learning_rate_ends_in_the_guard_in_every_mode(tmp_path, mode):
    """The issue's reproducer, ``optimizer.lr=1e6``, on a network whose loss overflows."""
    message = _ends_in_the_guard(tmp_path, *OVERFLOWS, f"data.mode={mode}", "optimizer.lr=1e6")
    assert "histogram" not in message
    _checkpoints_are_good(tmp_path, last_epoch=None)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_an_absurd_learning_rate_on_the_default_network_never_ends_in_a_callback_error(
    tmp_path, mode
):
    """``optimizer.lr=1e6`` on the default 4-layer network: weights that stay finite but make
    the outputs overflow (NaN validation loss) are stopped by the guard before their checkpoint
    is written; a run whose values all stay finite finishes."""
    cfg = _config(tmp_path, f"data.mode={mode}", "optimizer.lr=1e6")
    try:
        metrics = run(cfg)
    except NonFiniteLossError as err:
        assert GUARD in str(err)
    else:
        assert all(math.isfinite(value) for value in metrics.values()), metrics
    _checkpoints_are_good(tmp_path, last_epoch=None)


@pytest.mark.slow
def test_the_default_network_at_an_absurd_learning_rate_in_batch_mode_is_stopped(tmp_path):
    """Without the guard's validation check this run finished "successfully", val/loss NaN,
    with a checkpoint of a network whose every prediction is NaN."""
    message = _ends_in_the_guard(tmp_path, "data.mode=batch", "optimizer.lr=1e6")
    assert "validation loss val/loss is nan" in message
    _checkpoints_are_good(tmp_path, last_epoch=None)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_nan_on_the_last_batch_of_an_epoch_ends_in_the_guard(tmp_path, mode):
    message = _ends_in_the_guard(tmp_path, f"data.mode={mode}", *_poison("nan_last_batch"))
    assert "the training loss is nan" in message and "(epoch 1, batch" in message
    _checkpoints_are_good(tmp_path, last_epoch=0)


@pytest.mark.parametrize("mode", ["batch", "minibatch"])
def test_infinite_weights_after_an_update_end_in_the_guard(tmp_path, mode):
    _ends_in_the_guard(tmp_path, f"data.mode={mode}", *_poison("inf_weights"))
    _checkpoints_are_good(tmp_path, last_epoch=0)


def test_nan_gradients_are_logged_as_nan_norms_and_end_in_the_guard(tmp_path):
    message = _ends_in_the_guard(tmp_path, "data.mode=batch", *_poison("nan_grads"))
    assert "is non-finite after the update of step 1 (epoch 1, batch 0)" in message
    _checkpoints_are_good(tmp_path, last_epoch=0)
    # The TensorBoard extras logged the NaN norms of that update, to both loggers.
    rows = [row for row in _csv_rows(tmp_path) if row.get("grad_norm/net.0.weight")]
    assert [row["step"] for row in rows] == ["0", "1"]
    assert math.isnan(float(rows[-1]["grad_norm/net.0.weight"]))
    (events,) = (tmp_path / "tensorboard").rglob("events.out.tfevents.*")
    scalars = EventAccumulator(str(events)).Reload().Scalars("grad_norm/net.0.weight")
    assert [s.step for s in scalars] == [0, 1] and math.isnan(scalars[-1].value)


def test_nan_probabilities_in_the_prediction_grid_end_in_the_guard(tmp_path):
    message = _ends_in_the_guard(tmp_path, "data.mode=minibatch", *_poison("nan_predictions"))
    assert "validation loss val/loss is nan" in message
    _checkpoints_are_good(tmp_path, last_epoch=0)
    # The grid of the NaN validation was written (empty bars), before the guard stopped the run.
    (events,) = (tmp_path / "tensorboard").rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events), size_guidance={"images": 0}).Reload()
    assert len(accumulator.Images("val/predictions")) == 2  # epochs 0 and 1


@pytest.mark.parametrize("logger", ["tensorboard", "csv", "many", "none"])
def test_every_logger_takes_the_nan_and_the_guard_wins(tmp_path, logger):
    _ends_in_the_guard(tmp_path, "data.mode=batch", *_poison("nan_last_batch"), logger=logger)
    _checkpoints_are_good(tmp_path, last_epoch=0)
