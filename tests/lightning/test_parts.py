"""A classifier rebuilt from a checkpoint's run config: torch's and gdtorch's classes only."""

from __future__ import annotations

import functools
import re

import pytest
import torch
from omegaconf import OmegaConf

from gdtorch import nn as gnn
from gdtorch.lightning import CatClassifier, CheckpointError
from gdtorch.lightning.parts import parts_from_config
from gdtorch.optim import GradientDescent
from tests.cases import compose_train


def _config(tmp_path, *overrides: str) -> dict:
    cfg = compose_train(tmp_path, "data.image_size=16", *overrides)
    cfg.paths.output_dir = str(tmp_path)  # resolvable outside a Hydra run
    return OmegaConf.to_container(cfg, resolve=True)


def test_the_parts_of_a_run_config_are_rebuilt(tmp_path):
    config = _config(tmp_path, "optimizer.lr=0.125", "scheduler=step")
    net, loss, optimizer, scheduler = parts_from_config(config)
    assert isinstance(net, gnn.MLP) and isinstance(loss, gnn.BCEWithLogitsLoss)
    sizes = [layer.in_features for layer in net.modules() if isinstance(layer, torch.nn.Linear)]
    assert sizes == [3 * 16 * 16, 20, 7, 5]
    made = optimizer(net.parameters())
    assert isinstance(made, GradientDescent) and made.param_groups[0]["lr"] == 0.125
    assert isinstance(scheduler(made), torch.optim.lr_scheduler.StepLR)


@pytest.mark.parametrize(
    "target",
    [
        "os.system",  # code
        "builtins.eval",
        "gdtorch.train.run",  # gdtorch, but not a part
        "torch.nn.functional.relu",  # torch.nn, but not a class
        "torch.nn.NoSuchThing",
        "torch.nnx.Linear",  # a look-alike module name
    ],
)
def test_a_target_outside_torch_and_gdtorch_parts_is_refused(tmp_path, target):
    config = _config(tmp_path)
    config["model"] = {"_target_": target, "command": f"touch {tmp_path}/owned"}
    with pytest.raises(CheckpointError, match=re.escape(f"names _target_ '{target}'")):
        parts_from_config(config)
    assert not (tmp_path / "owned").exists()


def test_a_nested_target_is_checked_too(tmp_path):
    config = _config(tmp_path)
    config["loss"] = {
        "_target_": "gdtorch.nn.BCEWithLogitsLoss",
        "pos_weight": {"_target_": "os.system", "command": "true"},
    }
    with pytest.raises(CheckpointError, match=r"'os\.system'"):
        parts_from_config(config)


def test_a_checkpoint_naming_code_does_not_load(tmp_path):
    model = CatClassifier(
        net=gnn.MLP([48, 1]),
        loss=gnn.BCEWithLogitsLoss(),
        optimizer=functools.partial(GradientDescent, lr=0.1),
        input_shape=(3, 4, 4),
        config={
            "model": {"_target_": "os.system", "command": f"touch {tmp_path}/owned"},
            "loss": {"_target_": "gdtorch.nn.BCEWithLogitsLoss"},
            "optimizer": {"_target_": "gdtorch.optim.GradientDescent", "_partial_": True},
        },
    )
    path = tmp_path / "evil.ckpt"
    torch.save({"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"os\.system"):
        CatClassifier.load_from_checkpoint(path)
    assert not (tmp_path / "owned").exists()
    # a network of one's own is passed in, and only the rest is rebuilt
    loaded = CatClassifier.load_from_checkpoint(path, net=gnn.MLP([48, 1]))
    for mine, saved in zip(loaded.net.parameters(), model.net.parameters(), strict=True):
        assert torch.equal(mine, saved)


def test_a_file_that_is_no_classifier_checkpoint_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a CatClassifier checkpoint"):
        CatClassifier.load_from_checkpoint(path)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        CatClassifier.load_from_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match="needs net, loss and optimizer, or a run config"):
        CatClassifier(net=gnn.MLP([48, 1]))
