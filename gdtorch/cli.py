"""Entry point: ``@hydra.main`` around :func:`gdtorch.train.run`, and the user-error shell.

Lightning and the rest of the trainer are imported inside :func:`main`, when a run starts:
``gdtorch-train --help`` and a config error answer without paying for them.
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from gdtorch.config import CONFIG_DIR

log = logging.getLogger(__name__)


def user_errors() -> tuple[type[BaseException], ...]:
    """Mistakes in a config, a data folder or a checkpoint: one line, not a traceback."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from gdtorch.lightning import NonFiniteLossError

    return (
        FileNotFoundError,
        NotADirectoryError,
        ValueError,  # gdtorch's CheckpointError and bad-value errors included
        InstantiationException,
        OmegaConfBaseException,
        MisconfigurationException,
        NonFiniteLossError,
        ConnectionError,
    )


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """``gdtorch-train [overrides...]``: train, test and log where the results are."""
    from gdtorch.train import run

    _log_lightning_through_hydra()
    try:
        metrics = run(cfg)
    except Exception as err:
        if not isinstance(err, user_errors()):
            raise
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # Hydra runs the sweep's other jobs, then reports the first failure.
            log.error("gdtorch-train: error: %s", user_message(err))
            raise
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"gdtorch-train: error: {user_message(err)}", file=sys.stderr)
        print("(set HYDRA_FULL_ERROR=1 for the full traceback)", file=sys.stderr)
        sys.exit(1)
    return metrics.get("test/acc", float("nan"))


def user_message(err: BaseException) -> str:
    """One line for a user error: Hydra's wrapper is unwrapped to the error inside it."""
    if isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}"


def _log_lightning_through_hydra() -> None:
    """Send Lightning's messages to Hydra's handlers, so ``gdtorch-train.log`` has them too.

    Lightning gives its loggers their own console handler and stops propagation when it is
    imported before logging is configured, which is always the case under ``@hydra.main``.
    """
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
