"""CatClassifier and TensorBoardExtras on a tiny in-memory problem."""

from __future__ import annotations

import functools
import warnings

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from gdtorch import nn as gnn
from gdtorch.data import TensorBatchLoader
from gdtorch.lightning import CatClassifier, NonFiniteLossGuard, TensorBoardExtras
from gdtorch.lightning._compat import update_is_plain


def _loaders(n: int = 64, size: int = 4) -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=generator)
    targets = (images[:, 0].mean((1, 2)) > images[:, 2].mean((1, 2))).float()  # "red" is a cat
    data = TensorDataset(images, targets)
    return DataLoader(data, batch_size=16, shuffle=True), DataLoader(data, batch_size=32)


def _classifier(loss: torch.nn.Module, output_activation: str | None, **kwargs) -> CatClassifier:
    return CatClassifier(
        net=gnn.MLP([48, 8, 1], output_activation=output_activation),
        loss=loss,
        optimizer=functools.partial(torch.optim.SGD, lr=0.5),
        input_shape=(3, 4, 4),
        **kwargs,
    )


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    return L.Trainer(**{**defaults, **kwargs})


@pytest.mark.parametrize(
    ("loss", "output_activation", "logits"),
    [
        (gnn.BCEWithLogitsLoss(), None, True),
        (torch.nn.BCEWithLogitsLoss(), None, True),
        (gnn.BCELoss(), "sigmoid", False),
        (gnn.MSELoss(), "sigmoid", False),
        (gnn.MAELoss(), "sigmoid", False),
    ],
)
def test_trains_and_reports_metrics_for_logits_and_probabilities(
    tmp_path, loss, output_activation, logits
):
    model = _classifier(loss, output_activation)
    assert model.outputs_logits is logits
    train, val = _loaders()
    trainer = _trainer(tmp_path)
    before = trainer.validate(model, val, verbose=False)[0]["val/loss"]
    trainer.fit(model, train, val)
    metrics = trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/acc", "val/auroc"} <= metrics.keys()
    assert "lr" not in metrics  # logged straight to the loggers (none here), at its own step
    assert metrics["val/loss"] < before
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.5
    assert trainer.global_step == 3 * 4  # one update per batch of 16: 4 a epoch
    test = trainer.test(model, val, verbose=False)[0]
    assert {"test/loss", "test/acc", "test/auroc"} <= test.keys()
    probabilities = torch.cat(trainer.predict(model, val))
    assert probabilities.shape == (64,) and ((probabilities >= 0) & (probabilities <= 1)).all()
    _, targets = val.dataset.tensors
    accuracy = ((probabilities >= 0.5).float() == targets).float().mean()
    assert test["test/acc"] == pytest.approx(accuracy.item(), abs=1e-6)


def test_hyperparameters_are_plain_and_checkpoint_loads_weights_only(tmp_path):
    from omegaconf import OmegaConf

    config = OmegaConf.create({"optimizer": {"lr": 0.5}, "model": {"sizes": [48, 8, 1]}})
    model = _classifier(gnn.BCEWithLogitsLoss(), None, config=config)
    assert type(model.hparams["config"]) is dict
    assert model.example_input_array.shape[1:] == (3, 4, 4)
    train, val = _loaders()
    trainer = _trainer(tmp_path, max_epochs=1, enable_checkpointing=True)
    trainer.fit(model, train, val)
    path = trainer.checkpoint_callback.best_model_path
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"]["config"]["optimizer"]["lr"] == 0.5
    assert "net.0.weight" in checkpoint["state_dict"]


def test_scheduler_steps_each_epoch(tmp_path):
    model = _classifier(
        gnn.BCEWithLogitsLoss(),
        None,
        scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
    )
    train, val = _loaders()
    trainer = _trainer(tmp_path, max_epochs=3)
    trainer.fit(model, train, val)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.5 * 0.5**3)


def test_tensorboard_extras_writes_norms_ratios_histograms_and_predictions(tmp_path):
    logger = L.loggers.TensorBoardLogger(tmp_path, name="tb", version="")
    model = _classifier(gnn.BCEWithLogitsLoss(), None)
    train, val = _loaders()
    extras = TensorBoardExtras(every_n_steps=1, num_images=4)
    trainer = _trainer(
        tmp_path, max_epochs=2, logger=logger, log_every_n_steps=1, callbacks=[extras]
    )
    trainer.fit(model, train, val)
    events = EventAccumulator(logger.log_dir, size_guidance={"histograms": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"grad_norm/net.0.weight", "update_ratio/net.0.weight", "train/loss", "val/acc"} <= set(
        tags["scalars"]
    )
    assert {"weights/net.0.weight", "grads/net.0.weight"} <= set(tags["histograms"])
    assert "val/predictions" in tags["images"]
    ratios = [e.value for e in events.Scalars("update_ratio/net.0.weight")]
    norms = [e.value for e in events.Scalars("grad_norm/net.0.weight")]
    assert len(ratios) == len(norms) == trainer.global_step  # every step, as asked
    assert all(r > 0 for r in ratios)


def test_tensorboard_extras_rejects_bad_arguments():
    with pytest.raises(ValueError, match="every_n_steps must be >= 1, got 0"):
        TensorBoardExtras(every_n_steps=0)


# One update per batch of 8, or several per Lightning batch (an Updates): the same updates.
N_TRAIN, BATCH_SIZE = 64, 8
UPDATES_PER_EPOCH = N_TRAIN // BATCH_SIZE


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(N_TRAIN, 3, 4, 4, generator=generator)
    return images, (images[:, 0].mean((1, 2)) > images[:, 2].mean((1, 2))).float()


def _train_loader(updates_per_batch: int) -> TensorBatchLoader:
    return TensorBatchLoader(
        *_data(), BATCH_SIZE, shuffle=True, seed=1, updates_per_batch=updates_per_batch
    )


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return gnn.MLP([48, 8, 1])


def _fit_updates(tmp_path, updates_per_batch: int, scheduler=None, **kwargs):
    """Fits on shuffled batches of 8; returns the trainer, the module and the TensorBoard events."""
    model = CatClassifier(
        net=_net(),
        loss=gnn.BCEWithLogitsLoss(),
        optimizer=functools.partial(torch.optim.SGD, lr=0.5),
        scheduler=scheduler,
        input_shape=(3, 4, 4),
    )
    logger = L.loggers.TensorBoardLogger(tmp_path / f"k{updates_per_batch}", name="", version="")
    options = dict(max_epochs=2, logger=logger, log_every_n_steps=3, num_sanity_val_steps=0)
    trainer = _trainer(tmp_path, **{**options, **kwargs})
    val = TensorBatchLoader(*_data(), batch_size=32)
    with warnings.catch_warnings():  # Lightning compares log_every_n_steps with its batches
        warnings.filterwarnings("ignore", message=r"The number of training batches")
        trainer.fit(model, _train_loader(updates_per_batch), val)
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    return trainer, model, events


def _reference(updates: int, epochs: int, scheduler=None) -> tuple[dict, list[float], list]:
    """The same gradient descent as a plain loop: weights, loss before each update, each lr."""
    net = _net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    schedule = None if scheduler is None else scheduler(optimizer)
    loss_fn, loader = gnn.BCEWithLogitsLoss(), _train_loader(1)
    losses, lrs = [], []
    for _ in range(epochs):
        for images, targets in loader:
            if len(losses) == updates:
                break
            output = net(images)
            loss = loss_fn(output, targets.view_as(output))
            optimizer.zero_grad()
            loss.backward()
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            losses.append(loss.item())
        if schedule is not None:
            schedule.step()
    return {f"net.{k}": v for k, v in net.state_dict().items()}, losses, lrs


def _scalars(events: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in events.Scalars(tag)]


def _assert_same_weights(model: CatClassifier, expected: dict[str, torch.Tensor]) -> None:
    weights = model.state_dict()
    assert expected.keys() <= weights.keys()
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name


@pytest.mark.parametrize("updates_per_batch", [1, 3, 4, 8])
def test_a_batch_of_updates_is_the_same_gradient_descent_as_one_update_per_batch(
    tmp_path, updates_per_batch
):
    trainer, model, events = _fit_updates(tmp_path, updates_per_batch)
    weights, losses, _ = _reference(updates=2 * UPDATES_PER_EPOCH, epochs=2)
    assert trainer.global_step == 2 * UPDATES_PER_EPOCH  # updates, not Lightning batches
    _assert_same_weights(model, weights)
    # train/loss and lr of every third update (log_every_n_steps=3), each at its own step, the
    # loss before that update; the validations after the last update of each epoch.
    logged = [step for step in range(2 * UPDATES_PER_EPOCH) if (step + 1) % 3 == 0]
    assert [step for step, _ in _scalars(events, "train/loss")] == logged == [2, 5, 8, 11, 14]
    for step, value in _scalars(events, "train/loss"):
        assert value == pytest.approx(losses[step], rel=1e-6)
    assert _scalars(events, "lr") == [(step, 0.5) for step in logged]
    assert [step for step, _ in _scalars(events, "val/loss")] == [7, 15]


class UpdateHooks(L.Callback):
    """Records, for each update, the step and ``‖∇W‖`` of the first layer at three hooks."""

    def __init__(self) -> None:
        self.seen: dict[str, list[tuple[int, float]]] = {"before": [], "after": [], "step": []}

    def _record(self, kind: str, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        grad = next(pl_module.net.parameters()).grad
        norm = None if grad is None else grad.norm().item()
        self.seen[kind].append((trainer.global_step, norm))

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._record("before", trainer, pl_module)

    def on_after_backward(self, trainer, pl_module) -> None:
        self._record("after", trainer, pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._record("step", trainer, pl_module)


def test_update_hooks_run_once_per_update_in_a_batch_of_updates(tmp_path):
    one, grouped = UpdateHooks(), UpdateHooks()
    _fit_updates(tmp_path, 1, callbacks=[one])
    trainer, _, _ = _fit_updates(tmp_path, 4, callbacks=[grouped])
    steps = list(range(2 * UPDATES_PER_EPOCH))
    for kind in ("before", "after", "step"):
        assert [step for step, _ in grouped.seen[kind]] == steps, kind
        assert grouped.seen[kind] == one.seen[kind], kind  # the same gradients, too
    assert all(norm is not None for _, norm in grouped.seen["step"])
    assert not update_is_plain(trainer, trainer.lightning_module)


@pytest.mark.parametrize(
    "hook", [None, "on_before_backward", "on_after_backward", "on_before_optimizer_step"]
)
def test_an_update_is_plain_unless_a_callback_listens_to_it(tmp_path, hook):
    callbacks = [TensorBoardExtras(every_n_steps=2), NonFiniteLossGuard()]
    if hook is not None:
        callbacks.append(type("Listener", (L.Callback,), {hook: lambda self, *args: None})())
    trainer, model, _ = _fit_updates(tmp_path, 4, callbacks=callbacks)
    assert update_is_plain(trainer, model) == (hook is None)
    weights, _, _ = _reference(updates=2 * UPDATES_PER_EPOCH, epochs=2)
    _assert_same_weights(model, weights)  # either way, every update; counted in global_step
    assert trainer.global_step == 2 * UPDATES_PER_EPOCH


def test_an_update_is_plain_in_64_bit_precision_not_in_mixed_precision(tmp_path):
    trainer = _trainer(tmp_path, precision="64-true")
    model = _classifier(gnn.BCEWithLogitsLoss(), None)
    trainer.strategy.connect(model)
    assert update_is_plain(trainer, model)
    mixed = _trainer(tmp_path, precision="bf16-mixed")  # its own optimizer_step (16-bit scaling)
    mixed.strategy.connect(model)
    assert not update_is_plain(mixed, model)


def test_the_logged_curves_do_not_depend_on_updates_per_batch(tmp_path):
    _, _, one = _fit_updates(tmp_path, 1)
    _, _, grouped = _fit_updates(tmp_path, 4)
    tags = set(one.Tags()["scalars"])
    assert {"train/loss", "lr", "val/loss", "val/acc", "val/auroc"} <= tags
    assert set(grouped.Tags()["scalars"]) == tags
    for tag in sorted(tags):
        assert _scalars(grouped, tag) == _scalars(one, tag), tag


@pytest.mark.parametrize("updates_per_batch", [1, 4])
def test_max_steps_stops_at_that_update_inside_a_batch_of_updates(tmp_path, updates_per_batch):
    trainer, model, events = _fit_updates(tmp_path, updates_per_batch, max_steps=6)
    assert trainer.global_step == 6  # the second batch of 4 updates stops after 2
    weights, _, _ = _reference(updates=6, epochs=1)
    _assert_same_weights(model, weights)
    assert [step for step, _ in _scalars(events, "train/loss")] == [2, 5]


def test_an_epoch_scheduler_steps_once_per_epoch_with_batches_of_updates(tmp_path):
    step_lr = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    trainer, model, events = _fit_updates(
        tmp_path, 4, scheduler=step_lr, max_epochs=3, log_every_n_steps=1
    )
    weights, _, lrs = _reference(updates=3 * UPDATES_PER_EPOCH, epochs=3, scheduler=step_lr)
    assert lrs == [0.5] * 8 + [0.25] * 8 + [0.125] * 8  # the reference: once per epoch
    assert _scalars(events, "lr") == list(enumerate(lrs))
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.5 * 0.5**3
    _assert_same_weights(model, weights)


class RecordingPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """ReduceLROnPlateau that records every value it is stepped with."""

    def __init__(self, optimizer, **kwargs) -> None:
        super().__init__(optimizer, **kwargs)
        self.seen: list[float] = []

    def step(self, metrics, *args, **kwargs) -> None:
        self.seen.append(float(metrics))
        super().step(metrics, *args, **kwargs)


class ValLosses(L.Callback):
    """Each validation's val/loss, as the trainer's callback metrics hold it."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.losses.append(float(trainer.callback_metrics["val/loss"]))


def test_reduce_on_plateau_is_stepped_with_each_epochs_val_loss(tmp_path):
    val_losses = ValLosses()
    plateau = functools.partial(
        RecordingPlateau, factor=0.5, patience=0, threshold=10.0, threshold_mode="abs"
    )
    trainer, _, events = _fit_updates(
        tmp_path, 4, scheduler=plateau, max_epochs=3, callbacks=[val_losses]
    )
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert len(val_losses.losses) == 3
    assert scheduler.seen == val_losses.losses
    # threshold=10 (absolute): no validation counts as better than the first, so each later
    # one halves the learning rate.
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.5 * 0.5**2
    assert [value for _, value in _scalars(events, "val/loss")] == pytest.approx(val_losses.losses)


@pytest.mark.parametrize(
    ("name", "value"), [("gradient_clip_val", 1.0), ("accumulate_grad_batches", 2)]
)
def test_options_of_automatic_optimization_are_refused(tmp_path, name, value):
    model = _classifier(gnn.BCEWithLogitsLoss(), None)
    train, val = _loaders()
    with pytest.raises(MisconfigurationException, match=name):
        _trainer(tmp_path, max_epochs=1, **{name: value}).fit(model, train, val)
