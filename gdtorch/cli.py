"""Entry point: ``@hydra.main`` around :func:`gdtorch.train.run`, and nothing else."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from gdtorch.train import run

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")  # the repository's conf/


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """``gdtorch-train [overrides...]``: train, test and print where the logs are."""
    return run(cfg).get("test/acc", float("nan"))
