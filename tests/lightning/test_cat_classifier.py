"""CatClassifier and TensorBoardExtras on a tiny in-memory problem."""

from __future__ import annotations

import functools

import lightning.pytorch as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from gdtorch import nn as gnn
from gdtorch.lightning import CatClassifier, TensorBoardExtras


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
    assert {"train/loss", "lr", "val/loss", "val/acc", "val/auroc"} <= metrics.keys()
    assert metrics["val/loss"] < before
    assert metrics["lr"] == pytest.approx(0.5)
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
