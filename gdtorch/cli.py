"""Entry point: ``@hydra.main`` around :func:`gdtorch.train.run`, and the user-error shell.

Lightning and the rest of the trainer are imported inside :func:`train_main`, when a run
starts: ``gdtorch-train --help`` and a config error answer without paying for them.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from gdtorch.config import CONFIG_DIR, RunFolderInUse, check_run_folder

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


def main() -> float | None:
    """``gdtorch-train [overrides...]``: train, test and log where the results are.

    Exit status: 0; 1 for a user error (one ``gdtorch-train: error: …`` line on stderr); 130
    or 143 for a run that SIGINT or SIGTERM stopped (one line saying how to resume it).

    Returns:
        The run's ``optimized_metric`` (see :func:`objective`), for a Hydra sweeper.
    """
    refused = null_group_override(sys.argv[1:])
    if refused is not None and os.environ.get("HYDRA_FULL_ERROR") != "1":
        print(f"gdtorch-train: error: {refused}", file=sys.stderr)
        print("(set HYDRA_FULL_ERROR=1 for the full traceback)", file=sys.stderr)
        sys.exit(1)
    return train_main()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def train_main(cfg: DictConfig) -> float | None:
    """The ``@hydra.main`` task of ``gdtorch-train``: :func:`gdtorch.train.run` of ``cfg``.

    Returns:
        The run's ``optimized_metric`` (see :func:`objective`), which a Hydra sweeper such as
        ``hparams_search=optuna`` optimizes. A multirun job whose training diverged
        (``NonFiniteLossError``) returns :func:`worst_value` instead of failing, so that the
        sweep goes on.
    """
    from gdtorch.lightning import NonFiniteLossError
    from gdtorch.train import RunInterrupted, run

    _log_lightning_through_hydra()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        value = objective(cfg, run(cfg))
    except RunInterrupted as stopped:
        print(f"gdtorch-train: {interrupted_message(stopped)}", file=sys.stderr)
        sys.exit(stopped.exit_status)
    except Exception as err:
        if not isinstance(err, user_errors()):
            raise
        if multirun:
            log.error("gdtorch-train: error: %s", user_message(err))
            if isinstance(err, NonFiniteLossError):
                # A diverged trial is a result of the search, not a broken sweep.
                value = worst_value(HydraConfig.get().sweeper.get("direction"))
                log.error(
                    "this job diverged: it returns the worst value, %s, to the sweeper", value
                )
                return value
            # Hydra runs the sweep's other jobs, then reports the first failure.
            raise
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _exit_with_user_error("gdtorch-train", err)
    if multirun and value is not None:
        log.info("objective %s: %r", cfg.optimized_metric, value)
    return value


def interrupted_message(stopped: BaseException) -> str:
    """One line for a run SIGINT or SIGTERM stopped: where, and the command that resumes it.

    Args:
        stopped: a :class:`gdtorch.train.RunInterrupted`.

    Returns:
        ``interrupted by SIGINT at epoch E, step S; resume with: gdtorch-train <this run's
        overrides> ckpt_path=<run>/checkpoints/last.ckpt``, or, before the first checkpoint,
        that there is nothing to resume.
    """
    if stopped.checkpoint is None:
        return f"{stopped.where}, before its first checkpoint: nothing to resume; start it again"
    overrides = [
        o for o in HydraConfig.get().overrides.task if o.lstrip("+~").split("=")[0] != "ckpt_path"
    ]
    command = ["gdtorch-train", *overrides, f"ckpt_path={stopped.checkpoint}"]
    return f"{stopped.where}; resume with: {shlex.join(command)}"


def null_group_override(args: list[str]) -> str | None:
    """The message for an override that sets a config group to null, e.g. ``logger=null``.

    Hydra refuses it while it composes the config, with a traceback ending in "Config group
    override must be a string or a list. Got NoneType" that names neither the override nor
    what to write instead. A group is chosen by naming one of its options (``logger=none`` logs
    nowhere) or removed with ``~group``.

    Args:
        args: the command line's overrides.

    Returns:
        One line naming the override and the group's options, or ``None`` if no override
        sets a group to null.
    """
    groups = {p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir()}
    for arg in args:
        key, equals, value = arg.partition("=")
        group = key.lstrip("+")
        if not equals or value.strip().lower() != "null" or group not in groups:
            continue
        options = sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))
        instead = f"{group}=none (or ~{group})" if "none" in options else f"~{group}"
        return (
            f"{arg}: a config group cannot be set to null; choose one of its options "
            f"({', '.join(options)}), e.g. {instead}."
        )
    return None


class RunFolderGuard(Callback):
    """Hydra callback (``hydra.callbacks`` in ``conf/train.yaml``): the run folder is free.

    Runs before Hydra writes the run's ``.hydra/`` files and log into its folder, and refuses
    (one ``<command>: error:`` line, status 1) a ``hydra.run.dir`` that holds another run
    unless the run resumes it (:func:`gdtorch.config.check_run_folder`), and a
    ``hydra.sweep.dir`` that holds another sweep. ``gdtorch-eval`` inherits it.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir, ckpt_path = str(config.hydra.run.dir), config.get("ckpt_path")
        _refuse_before_hydra(
            config.hydra.job.name, lambda: check_run_folder(run_dir, ckpt_path, "hydra.run.dir")
        )

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))

        def check() -> None:
            found = [
                str(path.relative_to(sweep_dir))
                for pattern in ("multirun.yaml", "optimization_results.yaml", "*/.hydra")
                for path in sorted(sweep_dir.glob(pattern))
            ]
            if found:
                raise RunFolderInUse(
                    f"hydra.sweep.dir={sweep_dir} already holds a sweep ({', '.join(found[:3])}"
                    f"): its jobs' folders would be overwritten. Choose another folder (or leave "
                    f"hydra.sweep.dir out for a new one)."
                )

        _refuse_before_hydra(config.hydra.job.name, check)


def _refuse_before_hydra(prog: str, check: Callable[[], object]) -> None:
    """``check()``; a ``RunFolderInUse`` it raises is one line and exit status 1 (Hydra would
    print a traceback for an error in a callback), or the traceback with HYDRA_FULL_ERROR=1."""
    try:
        check()
    except RunFolderInUse as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _exit_with_user_error(prog, err)


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The metric ``cfg.optimized_metric`` names, among the metrics of a run: its objective.

    Args:
        cfg: the run's config; ``optimized_metric`` is ``val/acc`` in ``conf/train.yaml``.
        metrics: what :func:`gdtorch.train.run` returned.

    Returns:
        ``metrics[cfg.optimized_metric]``, or ``None`` when ``optimized_metric`` is null.

    Raises:
        ValueError: ``optimized_metric`` names a test metric (a sweep would tune on the test
            set), or a metric the run does not have.
    """
    name = cfg.get("optimized_metric")
    if name is None:
        return None
    if str(name).startswith("test/"):
        raise ValueError(
            f"optimized_metric={name} would tune on the test set: choose a validation metric "
            f"(val/acc, val/loss or val/auroc)."
        )
    if name not in metrics:
        raise ValueError(
            f"optimized_metric={name} is not a metric of this run: choose one of "
            f"{', '.join(sorted(k for k in metrics if not k.startswith('test/')))}."
        )
    return metrics[name]


def worst_value(direction: object) -> float:
    """What a diverged multirun job returns: the worst objective for the sweeper's direction.

    ``-inf`` when the sweeper maximizes (``hparams_search=optuna`` on ``val/acc``), ``+inf``
    when it minimizes: Optuna records a complete trial with the worst value, and its sampler
    learns to avoid that region. Not NaN: hydra-optuna-sweeper 1.3 stops the whole sweep when
    told a NaN. NaN for a sweeper without one direction (Hydra's basic sweeper ignores the
    value).

    Args:
        direction: ``hydra.sweeper.direction``: ``maximize``, ``minimize`` (a string or an
            enum with that name), a list of them, or ``None``.
    """
    name = str(getattr(direction, "name", direction)).lower()
    return {"maximize": -math.inf, "minimize": math.inf}.get(name, math.nan)


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


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def eval_main(cfg: DictConfig) -> float:
    """``gdtorch-eval ckpt_path=… [data=… data.root=…]``: test a checkpoint, print the metrics."""
    from gdtorch.evaluate import evaluate

    _log_lightning_through_hydra()
    try:
        metrics = evaluate(cfg)
    except Exception as err:
        if not isinstance(err, user_errors()) or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _exit_with_user_error("gdtorch-eval", err)
    return metrics.get("test/acc", float("nan"))


def predict_main(argv: list[str] | None = None) -> int:
    """``gdtorch-predict CHECKPOINT PATH... [--csv FILE]``: ``P(cat)`` of each image.

    Prints one line per image, ``path<TAB>P(cat)<TAB>cat|not-cat``; a file that cannot be
    read gets one ``gdtorch-predict: error: …`` line on stderr and the others still run.

    Returns:
        The exit status: 0, or 1 when a path gave no prediction or the checkpoint is unusable.
    """
    from gdtorch.lightning import CatClassifier, CheckpointError
    from gdtorch.predict import predict, write_csv

    parser = argparse.ArgumentParser(
        prog="gdtorch-predict",
        description="Does this image contain a cat? P(cat) of each image, from a checkpoint.",
    )
    parser.add_argument("checkpoint", help="a .ckpt file written by gdtorch-train")
    parser.add_argument("paths", nargs="+", help="image files, or folders searched recursively")
    parser.add_argument("--csv", metavar="FILE", help="also write path,p_cat,label rows to FILE")
    parser.add_argument("--batch-size", type=_positive_int, default=1024, help="default: 1024")
    parser.add_argument(
        "--device", default="cpu", help="where to run the model: cpu (default), cuda, cuda:1, …"
    )
    args = parser.parse_args(argv)
    try:
        model = CatClassifier.load_from_checkpoint(args.checkpoint, map_location=args.device)
    except (CheckpointError, RuntimeError, ValueError) as err:
        print(f"gdtorch-predict: error: {user_message(err)}", file=sys.stderr)
        return 1
    predictions, failures = predict(model, args.paths, batch_size=args.batch_size)
    for prediction in predictions:
        print(f"{prediction.path}\t{prediction.probability:.4f}\t{prediction.label}")
    for failure in failures:
        print(f"gdtorch-predict: error: {failure.path}: {failure.reason}", file=sys.stderr)
    if args.csv:
        write_csv(predictions, args.csv)
    return 1 if failures else 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _exit_with_user_error(prog: str, err: BaseException) -> None:
    """One line on stderr for a user error, then exit status 1."""
    print(f"{prog}: error: {user_message(err)}", file=sys.stderr)
    print("(set HYDRA_FULL_ERROR=1 for the full traceback)", file=sys.stderr)
    sys.exit(1)
