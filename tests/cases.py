"""Shared by the tests: the input forms a drop-in module must accept, and composed run configs."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from gdtorch.cli import CONFIG_DIR


def with_layout(tensor: torch.Tensor, layout: str) -> torch.Tensor:
    """``tensor`` re-laid out as ``"contiguous"``, ``"channels_last"`` or ``"non_contiguous"``."""
    if layout == "channels_last":
        return tensor.contiguous(memory_format=torch.channels_last)
    if layout == "non_contiguous":
        return tensor.transpose(-1, -2).contiguous().transpose(-1, -2)
    return tensor


# (name, shape, layout): every input form a drop-in module must accept.
SHAPE_CASES = [
    ("scalar", (), "contiguous"),
    ("vector", (5,), "contiguous"),
    ("column", (6, 1), "contiguous"),
    ("nchw_channels_last", (2, 3, 4, 5), "channels_last"),
    ("non_contiguous", (4, 6), "non_contiguous"),
    ("empty", (0, 3), "contiguous"),
]


# A training run that takes seconds: 16×16 images, few of them, two epochs, quiet.
TINY = [
    "data.n_train=64",
    "data.n_val=32",
    "data.n_test=32",
    "data.image_size=16",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]


def compose_train(output_dir: Path, *overrides: str) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides``, writing under ``output_dir``."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={output_dir}", *overrides])
