"""Shared by the tests: the input forms a drop-in module must accept, composed run configs, and
a run trained on a folder of photos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image

from gdtorch.cli import CONFIG_DIR
from gdtorch.data import CatDataModule
from gdtorch.train import run


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


def write_photos(folder: Path, counts: dict[str, int], seed: int) -> None:
    """``folder/<class>/<k>.png``: noisy photos of various sizes, redder under ``cat/``."""
    generator = torch.Generator().manual_seed(seed)
    for name, n in counts.items():
        (folder / name).mkdir(parents=True)
        for k in range(n):
            height, width = (int(s) for s in torch.randint(12, 40, (2,), generator=generator))
            pixels = torch.rand(height, width, 3, generator=generator) * 0.6
            red, blue = torch.rand(2, generator=generator) * 0.3
            pixels[..., 0] += red + (0.1 if name == "cat" else 0.0)  # cats: a little redder
            pixels[..., 2] += blue
            array = (pixels * 255).to(torch.uint8).numpy()
            Image.fromarray(array).save(folder / name / f"{k}.png")


@dataclass
class TrainedRun:
    root: Path  # photos/train/{cat,other}, photos/test/{cat,other}
    checkpoint: Path  # the best checkpoint, the one the run tested
    metrics: dict[str, float]
    data: CatDataModule  # the run's data, set up again from its config


def train_on_photos(tmp: Path) -> TrainedRun:
    """A run on a photo folder with fixed train/ and test/ splits, tested on all of test/."""
    root = tmp / "photos"
    write_photos(root / "train", {"cat": 40, "other": 40}, seed=1)
    write_photos(root / "test", {"cat": 13, "other": 17}, seed=2)
    cfg = compose_train(
        tmp / "run",
        *TINY,
        "data=folder",
        f"data.root={root}",
        "data.n_val=16",
        "data.batch_size=8",
        "model=logistic",
        "optimizer.lr=0.2",
        "trainer.max_epochs=6",
    )
    metrics = run(cfg)
    best = [p for p in (tmp / "run" / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]
    assert len(best) == 1
    data = instantiate(cfg.data)
    data.setup()
    return TrainedRun(root, best[0], metrics, data)
