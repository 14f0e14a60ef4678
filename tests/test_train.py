"""run(cfg) and the Hydra config tree: every group option composes, instantiates and trains."""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import lightning.pytorch as L
import numpy as np
import pytest
import torch
import yaml
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gdtorch import nn as gnn
from gdtorch.config import resumed_hydra_subdir, resumed_run_dir
from gdtorch.data import CatDataModule
from gdtorch.optim import GradientDescent
from gdtorch.train import build_loggers, run
from tests.cases import TINY, compose_train

ROOT = Path(__file__).resolve().parents[1]


def test_default_run_trains_tests_and_writes_logs_and_checkpoints(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gdtorch.train")
    metrics = run(compose_train(tmp_path, *TINY))
    for name in ("val/loss", "val/acc", "val/auroc", "test/acc", "test/auroc", "test/loss"):
        assert name in metrics and isinstance(metrics[name], float)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    assert {"train/loss", "val/loss", "val/acc", "val/auroc", "lr"} <= set(events.Tags()["scalars"])
    assert "test accuracy:" in caplog.text and "tensorboard --logdir" in caplog.text
    hparams_tags = events.Tags()["scalars"]
    assert {"hp/test/acc", "hp/val/acc"} <= set(hparams_tags)


# Four updates an epoch (64 images, 16 a batch), two epochs; train/loss every second update.
LOGGED = [*TINY, "data.batch_size=16", "trainer.log_every_n_steps=2"]


def _csv_rows(path: Path) -> list[dict[str, float]]:
    """``metrics.csv`` as one dict per row, holding only the columns that row filled."""
    with path.open(newline="") as file:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(file)]


def _csv_curve(rows: list[dict[str, float]], tag: str) -> list[tuple[int, float]]:
    return [(int(row["step"]), row[tag]) for row in rows if tag in row]


def test_logger_csv_writes_every_metric_to_metrics_csv(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gdtorch.train")
    metrics = run(
        compose_train(tmp_path, *LOGGED, "logger=csv", "trainer.check_val_every_n_epoch=1")
    )
    log_dir = tmp_path / "csv" / "version_0"
    rows = _csv_rows(log_dir / "metrics.csv")
    # train/loss and lr of updates k with (k + 1) % log_every_n_steps == 0, at step k
    assert [step for step, _ in _csv_curve(rows, "train/loss")] == [1, 3, 5, 7]
    assert [lr for _, lr in _csv_curve(rows, "lr")] == [0.05] * 4
    # one val/acc per validation (after each epoch, at the step of its last update); the run
    # returns the last one, and test/acc once, at the end
    val_acc = _csv_curve(rows, "val/acc")
    assert [step for step, _ in val_acc] == [3, 7]
    assert val_acc[-1][1] == metrics["val/acc"]
    assert _csv_curve(rows, "test/acc") == [(8, metrics["test/acc"])]
    for tag in ("grad_norm/net.0.weight", "update_ratio/net.0.weight"):  # TensorBoardExtras
        assert _csv_curve(rows, tag)
    hparams = yaml.safe_load((log_dir / "hparams.yaml").read_text())
    assert hparams["optimizer.lr"] == 0.05 and hparams["optimized_metric"] == "val/acc"
    assert not (tmp_path / "tensorboard").exists()
    assert f"CSV logs: {log_dir} (metrics.csv, hparams.yaml)" in caplog.text
    assert "TensorBoard logs" not in caplog.text


def test_logger_many_writes_the_same_values_to_tensorboard_and_csv(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gdtorch.train")
    metrics = run(compose_train(tmp_path, *LOGGED, "logger=many"))
    rows = _csv_rows(tmp_path / "csv" / "version_0" / "metrics.csv")
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"histograms": 0})
    events.Reload()
    tags = ["train/loss", "lr", "val/loss", "val/acc", "val/auroc", "test/acc"]
    tags += [t for t in events.Tags()["scalars"] if t.startswith(("grad_norm/", "update_ratio/"))]
    assert len(tags) == 6 + 2 * 4  # the four weight matrices of model=four_layer
    for tag in tags:
        board = [(e.step, e.value) for e in events.Scalars(tag)]
        # TensorBoard keeps float32; the CSV file the float each logger was given
        assert board == [(s, float(np.float32(v))) for s, v in _csv_curve(rows, tag)], tag
    assert _csv_curve(rows, "val/acc")[-1][1] == metrics["val/acc"]
    # images and histograms only where they can go
    assert events.Tags()["images"] and events.Tags()["histograms"]
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    assert "TensorBoard logs:" in caplog.text and "CSV logs:" in caplog.text


@pytest.mark.slow
def test_a_resumed_csv_run_keeps_the_first_rows_and_writes_the_next_version(tmp_path):
    run(compose_train(tmp_path, *LOGGED, "logger=csv", "trainer.max_epochs=1"))
    first = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    last = tmp_path / "checkpoints" / "last.ckpt"
    run(compose_train(tmp_path, *LOGGED, "logger=csv", f"ckpt_path={last}"))
    assert (tmp_path / "csv" / "version_0" / "metrics.csv").read_text() == first
    rows = _csv_rows(tmp_path / "csv" / "version_1" / "metrics.csv")
    assert [step for step, _ in _csv_curve(rows, "train/loss")] == [5, 7]  # after the resume
    assert [step for step, _ in _csv_curve(rows, "val/acc")] == [7]


@pytest.mark.slow
def test_build_loggers_makes_one_logger_per_named_entry(tmp_path):
    many = build_loggers(compose_train(tmp_path, "logger=many"))
    assert [type(logger) for logger in many] == [TensorBoardLogger, CSVLogger]
    assert Path(many[0].log_dir) == tmp_path / "tensorboard"
    assert Path(many[1].log_dir) == tmp_path / "csv" / "version_0"
    only_tensorboard = build_loggers(compose_train(tmp_path, "logger=many", "logger.csv=null"))
    assert [type(logger) for logger in only_tensorboard] == [TensorBoardLogger]
    assert build_loggers(compose_train(tmp_path, "logger=none")) == []
    assert build_loggers(compose_train(tmp_path, "~logger")) == []


def test_a_logger_config_without_names_is_refused_naming_the_setting(tmp_path):
    cfg = compose_train(tmp_path, "logger=csv")
    cfg.logger = {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": str(tmp_path)}
    with pytest.raises(ValueError, match=r"logger\._target_ must be a logger config with a"):
        build_loggers(cfg)


@pytest.mark.parametrize(
    ("model", "image_size", "sizes"),
    [
        ("logistic", 64, [12288, 1]),
        ("two_layer", 64, [12288, 7, 1]),
        ("four_layer", 64, [12288, 20, 7, 5, 1]),
        ("four_layer", 32, [3072, 20, 7, 5, 1]),
    ],
)
def test_model_input_width_follows_the_image_size(tmp_path, model, image_size, sizes):
    cfg = compose_train(tmp_path, f"model={model}", f"data.image_size={image_size}")
    assert instantiate(cfg.model).sizes == sizes


def test_cifar10_config_needs_no_hand_edit_of_the_model(tmp_path):
    cfg = compose_train(tmp_path, "data=cifar10")
    assert instantiate(cfg.model).sizes[0] == 3 * 32 * 32


@pytest.mark.parametrize(
    ("loss", "cls", "last"),
    [
        ("mae", gnn.MAELoss, gnn.Sigmoid),
        ("mse", gnn.MSELoss, gnn.Sigmoid),
        ("bce", gnn.BCELoss, gnn.Sigmoid),
        ("bce_logits", gnn.BCEWithLogitsLoss, gnn.Linear),
    ],
)
def test_the_loss_decides_the_output_layer(tmp_path, loss, cls, last):
    cfg = compose_train(tmp_path, f"loss={loss}")
    assert type(instantiate(cfg.loss)) is cls
    assert type(instantiate(cfg.model)[-1]) is last


@pytest.mark.parametrize(
    ("optimizer", "cls", "options"),
    [
        ("gd", GradientDescent, {"momentum": 0.0}),
        ("momentum", GradientDescent, {"momentum": 0.9, "nesterov": False}),
        ("nesterov", GradientDescent, {"momentum": 0.9, "nesterov": True}),
        ("torch_sgd", torch.optim.SGD, {"momentum": 0.0}),
    ],
)
def test_optimizers_are_partials_and_one_override_swaps_them(tmp_path, optimizer, cls, options):
    cfg = compose_train(tmp_path, f"optimizer={optimizer}")
    built = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    assert type(built) is cls
    for key, value in options.items():
        assert built.param_groups[0][key] == value


@pytest.mark.parametrize(
    ("scheduler", "cls"),
    [
        ("step", torch.optim.lr_scheduler.StepLR),
        ("cosine", torch.optim.lr_scheduler.CosineAnnealingLR),
    ],
)
def test_schedulers(tmp_path, scheduler, cls):
    cfg = compose_train(tmp_path, f"scheduler={scheduler}")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    assert type(instantiate(cfg.scheduler)(optimizer)) is cls
    assert compose_train(tmp_path).scheduler is None


@pytest.mark.parametrize("data", ["synthetic", "cifar10", "folder"])
def test_data_sources_instantiate(tmp_path, data):
    overrides = [f"data={data}"] + ([f"data.root={tmp_path}"] if data == "folder" else [])
    datamodule = instantiate(compose_train(tmp_path, *overrides).data)
    assert isinstance(datamodule, CatDataModule)


@pytest.mark.parametrize("mode", ["batch", "stochastic", "minibatch"])
def test_gradient_descent_modes_train(tmp_path, mode):
    metrics = run(compose_train(tmp_path, *TINY, f"data.mode={mode}", "trainer.max_epochs=1"))
    assert "test/acc" in metrics


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp"])
def test_trainer_optionscompose_train(tmp_path, trainer):
    cfg = compose_train(tmp_path, f"trainer={trainer}")
    expected = {"cpu": "cpu", "gpu": "gpu", "ddp": "auto"}[trainer]
    assert cfg.trainer.accelerator == expected
    if trainer == "ddp":
        assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 2


def test_debug_and_experiment_configs(tmp_path):
    fdr = compose_train(tmp_path, "debug=fdr")
    assert fdr.trainer.fast_dev_run is True
    overfit = compose_train(tmp_path, "debug=overfit")
    assert overfit.trainer.overfit_batches == 2 and overfit.callbacks.early_stopping is None
    tutorial = compose_train(tmp_path, "experiment=tutorial")
    assert tutorial.data.mode == "batch" and tutorial.loss._target_ == "gdtorch.nn.BCELoss"
    assert tutorial.output_activation == "sigmoid" and tutorial.scheduler is None


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["batch", "minibatch", "stochastic"])
def test_each_mode_has_its_own_defaults_and_explicit_values_win(tmp_path, mode):
    cfg = compose_train(tmp_path, f"data.mode={mode}")
    defaults = cfg.mode_defaults[mode]
    assert cfg.optimizer.lr == defaults.lr and cfg.trainer.max_epochs == defaults.max_epochs
    assert cfg.callbacks.early_stopping.patience == defaults.patience
    assert compose_train(tmp_path, f"data.mode={mode}", "optimizer=torch_sgd").optimizer.lr == (
        defaults.lr
    )
    explicit = compose_train(tmp_path, f"data.mode={mode}", "optimizer.lr=0.123")
    assert explicit.optimizer.lr == 0.123
    assert cfg.trainer.check_val_every_n_epoch == defaults.val_every_n_epochs
    assert cfg.callbacks.last_checkpoint.every_n_epochs == defaults.val_every_n_epochs
    lrs = {compose_train(tmp_path, f"data.mode={m}").optimizer.lr for m in cfg.mode_defaults}
    assert len(lrs) == 3  # stochastic descent needs a smaller step than batch descent


@pytest.mark.parametrize(
    ("mode", "max_epochs", "interval"),
    # the largest interval up to the mode's (batch 5, mini-batch 2) that divides max_epochs
    [
        ("batch", 200, 5),
        ("batch", 12, 4),
        ("batch", 7, 1),
        ("batch", -1, 5),
        ("minibatch", 20, 2),
        ("minibatch", 3, 1),
        ("minibatch", 1, 1),
    ],
)
def test_a_run_validates_at_its_last_epoch(tmp_path, mode, max_epochs, interval):
    cfg = compose_train(tmp_path, f"data.mode={mode}", f"trainer.max_epochs={max_epochs}")
    assert cfg.trainer.check_val_every_n_epoch == interval
    assert cfg.callbacks.last_checkpoint.every_n_epochs == interval


def test_a_run_shorter_than_the_validation_interval_validates_at_its_end(tmp_path):
    assert compose_train(tmp_path, "data.mode=batch").trainer.check_val_every_n_epoch == 5
    short = compose_train(tmp_path, *TINY, "data.mode=batch", "trainer.max_epochs=3")
    assert short.trainer.check_val_every_n_epoch == 3
    metrics = run(short)
    assert {"val/loss", "test/acc"} <= metrics.keys()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_resuming_continues_in_the_checkpoints_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a new run's folder is created where it is asked for
    run_dir = tmp_path / "outputs" / "2026-01-01" / "10-00-00"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run_dir / "checkpoints" / "epoch003.ckpt").write_bytes(b"")
    last, best = (str(run_dir / "checkpoints" / n) for n in ("last.ckpt", "epoch003.ckpt"))
    assert resumed_run_dir(last, "outputs/new") == "outputs/new"  # no .hydra/: not a run
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 0\n")
    assert resumed_run_dir(last, "outputs/new") == str(run_dir)
    assert resumed_run_dir(best, "outputs/new") == "outputs/new"  # the run went on since
    assert resumed_run_dir(None, "outputs/new") == "outputs/new"
    assert resumed_run_dir(str(tmp_path / "elsewhere.ckpt"), "outputs/new") == "outputs/new"
    assert resumed_run_dir("s3://bucket/run/checkpoints/last.ckpt", "new") == "new"
    assert (tmp_path / "outputs" / "new").is_dir() and (tmp_path / "new").is_dir()
    assert resumed_hydra_subdir(last, ".hydra/resumed-x", RunMode.RUN) == ".hydra/resumed-x"
    assert resumed_hydra_subdir(last, ".hydra/resumed-x", RunMode.MULTIRUN) == ".hydra"
    assert resumed_hydra_subdir(None, ".hydra/resumed-x", RunMode.RUN) == ".hydra"


@pytest.mark.slow
def test_fast_dev_run_through_the_command_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            "debug=fdr",
            f"hydra.run.dir={tmp_path}",
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy:" in result.stdout
    assert "fast_dev_run: no checkpoints or TensorBoard logs were written" in result.stdout
    assert "TensorBoard logs: None" not in result.stdout and "--logdir" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("callbacks", ["audit", "landscape"])
def test_audit_and_landscape_callbacks_run_from_the_config(tmp_path, callbacks):
    overrides = [*TINY, f"callbacks={callbacks}", "trainer.max_epochs=1"]
    if callbacks == "audit":
        overrides.append("callbacks.gradient_audit.every_n_steps=1")
    else:
        overrides.append("callbacks.loss_landscape.resolution=5")
    metrics = run(compose_train(tmp_path, *overrides))
    if callbacks == "audit":
        assert metrics["audit/max_abs_diff"] <= 1e-8
    else:
        assert list(tmp_path.rglob("loss_landscape_step*.png"))


class TrainLossHistory(L.Callback):
    """Records the mean training loss of every epoch (instantiated from the config by name)."""

    losses: ClassVar[list[float]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


@pytest.mark.slow
def test_a_short_run_lowers_the_training_loss_and_beats_chance(tmp_path):
    overrides = ["data.n_train=1024", "data.n_val=256", "data.n_test=256", "data.image_size=32"]
    history = f"+callbacks.history._target_={__name__}.TrainLossHistory"
    cfg = compose_train(
        tmp_path, *overrides, "optimizer=momentum", "trainer.max_epochs=8", "~logger", history
    )
    cfg.callbacks.early_stopping = None
    TrainLossHistory.losses.clear()
    metrics = run(cfg)
    losses = TrainLossHistory.losses
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert metrics["val/acc"] > 0.6 and metrics["test/acc"] > 0.6


@pytest.mark.slow
def test_bf16_mixed_precision_trains(tmp_path):
    metrics = run(compose_train(tmp_path, *TINY, "trainer.precision=bf16-mixed"))
    assert 0.0 <= metrics["test/acc"] <= 1.0


@pytest.mark.slow
def test_help_and_a_two_job_multirun_through_the_command_line(tmp_path):
    script = str(ROOT / "scripts" / "train.py")
    help_text = subprocess.run(
        [sys.executable, script, "--help"], capture_output=True, text=True, timeout=120
    )
    assert help_text.returncode == 0 and "optimizer: gd, momentum, nesterov, torch_sgd" in (
        help_text.stdout
    )
    result = subprocess.run(
        [
            sys.executable,
            script,
            "-m",
            "optimizer.lr=0.1,0.01",
            "debug=fdr",
            *TINY,
            f"hydra.sweep.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("test accuracy:") == 2
    for job in ("0", "1"):
        assert (tmp_path / job / ".hydra" / "overrides.yaml").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "at_least"),
    [
        (["data.mode=batch"], 0.80),
        (["data.mode=minibatch"], 0.80),
        (["data.mode=stochastic"], 0.80),
        (["experiment=tutorial"], 0.82),
    ],
    ids=["batch", "minibatch", "stochastic", "tutorial"],
)
def test_the_shipped_defaults_learn_in_every_mode(tmp_path, overrides, at_least):
    """Every other setting as shipped (SyntheticCats, seed 0): well above chance (0.5)."""
    cfg = compose_train(tmp_path, *overrides, "+trainer.enable_progress_bar=false")
    assert run(cfg)["test/acc"] >= at_least
