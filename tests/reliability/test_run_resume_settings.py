"""A resumed run trains with the settings it is given (issue 16, item 3).

Lightning restores the checkpoint's optimizer ``state_dict`` over the configured optimizer, and
its ``param_groups`` carry η, momentum and weight decay: ``ckpt_path=… optimizer.lr=0.001`` used
to go on at the checkpoint's η. ``ResumeWithConfiguredSettings`` (added by ``build``) writes the
configured values into the checkpoint before Lightning restores it, and logs each change. Each
resumed run here ends on the weights, bit for bit, of an uninterrupted run whose settings were
switched by hand at the same epoch.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from omegaconf import OmegaConf

from gdtorch.lightning import NonFiniteLossError
from gdtorch.train import run
from tests.cases import compose_train
from tests.reliability.helpers import TINY, all_finite, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
# Epochs of 4 updates (64 images, 16 a batch), deterministic on the CPU.
SHORT = [
    *TINY,
    "trainer.deterministic=true",
    "data.mode=minibatch",
    "data.batch_size=16",
    "callbacks.early_stopping=null",
]
SWITCH = f"+callbacks.switch._target_={__name__}.SwitchAtEpoch"


class SwitchAtEpoch(L.Callback):
    """Sets param-group and scheduler values by hand when epoch ``epoch`` starts: the reference
    for a run resumed at that epoch with other settings.

    Args:
        epoch: the epoch (from 0) at whose start the values change.
        group: param-group values, e.g. ``{"lr": 0.001}``.
        scheduler: scheduler attributes, e.g. ``{"step_size": 1}``.
    """

    def __init__(self, epoch: int, group: dict | None = None, scheduler: dict | None = None):
        self.epoch = epoch
        self.group = OmegaConf.to_container(OmegaConf.create(dict(group or {})))
        self.scheduler = OmegaConf.to_container(OmegaConf.create(dict(scheduler or {})))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch != self.epoch:
            return
        for param_group in trainer.optimizers[0].param_groups:
            param_group.update(self.group)
        for config in trainer.lr_scheduler_configs:
            for key, value in self.scheduler.items():
                setattr(config.scheduler, key, value)


def _switch(epoch: int, group: dict, scheduler: dict | None = None) -> list[str]:
    overrides = [SWITCH, f"+callbacks.switch.epoch={epoch}"]
    overrides += [f"+callbacks.switch.group.{key}={value}" for key, value in group.items()]
    for key, value in (scheduler or {}).items():
        overrides.append(f"+callbacks.switch.scheduler.{key}={value}")
    return overrides


def _assert_same_training_state(actual: Path, expected: Path) -> None:
    a, b = load_checkpoint(actual), load_checkpoint(expected)
    assert a["global_step"] == b["global_step"] and a["epoch"] == b["epoch"]
    for name, tensor in b["state_dict"].items():
        assert torch.equal(a["state_dict"][name], tensor), name
    groups_a = a["optimizer_states"][0]["param_groups"]
    groups_b = b["optimizer_states"][0]["param_groups"]
    for group_a, group_b in zip(groups_a, groups_b, strict=True):
        for key in ("lr", "momentum", "dampening", "weight_decay", "nesterov"):
            assert group_a[key] == group_b[key], key
    state_a, state_b = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert state_a.keys() == state_b.keys()
    for key, state in state_b.items():
        assert torch.equal(state_a[key]["momentum_buffer"], state["momentum_buffer"])


@pytest.mark.parametrize(
    ("first", "resumed", "group", "scheduler", "logged"),
    [
        (
            [],
            ["optimizer.lr=0.001"],
            {"lr": 0.001},
            None,
            ["optimizer.lr changed on resume: 0.05 → 0.001"],
        ),
        (
            [],
            ["optimizer=momentum"],  # gd at η = 0.05 → heavy ball at η = 0.02, momentum 0.9
            {"lr": 0.02, "momentum": 0.9},
            None,
            [
                "optimizer.lr changed on resume: 0.05 → 0.02",
                "optimizer.momentum changed on resume: 0.0 → 0.9",
            ],
        ),
        (
            # η halves after epoch 1 (its last_epoch 2 is a multiple of 1, not of 3)
            ["scheduler=step", "scheduler.step_size=3", "scheduler.gamma=0.5"],
            ["scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5"],
            {},
            {"step_size": 1},
            ["scheduler.step_size changed on resume: 3 → 1"],
        ),
        (
            # η halves after every epoch; the schedule restarts from the new η: after one
            # epoch at 0.05 the resumed epoch runs at 0.01 × 0.5.
            ["scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5"],
            ["scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5", "optimizer.lr=0.01"],
            {"lr": 0.005, "initial_lr": 0.01},
            {"base_lrs": [0.01]},
            ["optimizer.lr changed on resume: 0.05 → 0.01"],
        ),
    ],
    ids=["lr", "gd-to-momentum", "step-size", "lr-under-a-schedule"],
)
@pytest.mark.slow
def test_a_resumed_run_uses_its_configured_settings_and_logs_the_change(
    tmp_path, caplog, first, resumed, group, scheduler, logged
):
    run(compose_train(tmp_path / "resumed", *SHORT, *first, "trainer.max_epochs=1"))
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    caplog.set_level(logging.INFO, logger="gdtorch.train")
    run(
        compose_train(
            tmp_path / "resumed", *SHORT, *resumed, "trainer.max_epochs=3", f"ckpt_path={last}"
        )
    )
    for line in logged:
        assert line in caplog.text, caplog.text

    switched = [*SHORT, *first, "trainer.max_epochs=3", *_switch(1, group, scheduler)]
    run(compose_train(tmp_path / "reference", *switched))
    _assert_same_training_state(last, tmp_path / "reference" / "checkpoints" / "last.ckpt")


@pytest.mark.slow
def test_an_unchanged_resume_logs_no_change(tmp_path, caplog):
    overrides = [*SHORT, "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5"]
    run(compose_train(tmp_path, *overrides, "trainer.max_epochs=2"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["optimizer_states"][0]["param_groups"][0]["lr"] < 0.05
    caplog.set_level(logging.INFO, logger="gdtorch.train")
    run(compose_train(tmp_path, *overrides, "trainer.max_epochs=3", f"ckpt_path={last}"))
    assert "changed on resume" not in caplog.text  # the scheduled η is not taken for a change


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["optimizer=torch_sgd"],
            "optimizer changed on resume: .* gdtorch.optim.GradientDescent, "
            "this run configures torch.optim.SGD",
        ),
        (
            ["scheduler=step"],
            "scheduler changed on resume: .* none, this run configures "
            "torch.optim.lr_scheduler.StepLR",
        ),
    ],
    ids=["optimizer", "scheduler"],
)
@pytest.mark.slow
def test_another_optimizer_or_scheduler_class_is_refused_before_training(
    tmp_path, overrides, message
):
    run(compose_train(tmp_path / "first", *SHORT, "trainer.max_epochs=1"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    cfg = compose_train(tmp_path / "other", *SHORT, *overrides, f"ckpt_path={last}")
    with pytest.raises(ValueError, match=message):
        run(cfg)
    assert not (tmp_path / "other" / "checkpoints").exists()


@pytest.mark.slow
def test_the_readmes_advice_after_a_nan_stop_works_as_written(tmp_path, caplog):
    """README: "`last.ckpt` is therefore the last good state: resume from it with a smaller
    learning rate." Linear regression on pixels at η = 0.1 overflows in epoch 3."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "last good state: resume from it with a smaller learning rate" in readme
    diverges = [
        *TINY,
        "model=logistic",
        "loss=mse",
        "output_activation=null",
        "data.mode=minibatch",
        "data.batch_size=16",
        "trainer.max_epochs=6",
        "callbacks.early_stopping=null",
    ]
    with pytest.raises(NonFiniteLossError, match=r"at step \d+ \(epoch [1-5]"):
        run(compose_train(tmp_path, *diverges, "optimizer.lr=0.1"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    shutil.copy(last, tmp_path / "stopped.ckpt")
    assert load_checkpoint(last)["optimizer_states"][0]["param_groups"][0]["lr"] == 0.1

    caplog.set_level(logging.INFO, logger="gdtorch.train")
    metrics = run(compose_train(tmp_path, *diverges, "optimizer.lr=0.001", f"ckpt_path={last}"))
    assert "optimizer.lr changed on resume: 0.1 → 0.001" in caplog.text
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["val/loss"])
    resumed = load_checkpoint(last)
    assert resumed["epoch"] == 5 and all_finite(resumed["state_dict"])
    assert resumed["optimizer_states"][0]["param_groups"][0]["lr"] == 0.001
    assert resumed["global_step"] > load_checkpoint(tmp_path / "stopped.ckpt")["global_step"]
    assert re.search(r"optimizer\.lr changed on resume", caplog.text)
