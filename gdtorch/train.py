"""Layer 6: ``run(cfg)`` — one training run from a Hydra config, kept apart from the CLI shell.

``run`` seeds everything, instantiates the data, network, loss, optimizer, scheduler, loggers,
callbacks and trainer from the config, fits, tests the best checkpoint and returns the metrics.
``scripts/train.py`` and the ``gdtorch-train`` console script only wrap it in ``@hydra.main``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning.pytorch as L
from hydra.utils import instantiate
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

import gdtorch.config  # noqa: F401  (registers the config resolvers run(cfg) relies on)
from gdtorch.lightning import AtomicCheckpointIO, CatClassifier, training_checkpoint_progress

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and test one cat/not-cat model as ``cfg`` describes.

    Args:
        cfg: a composed ``conf/train.yaml`` (see the README for the groups and overrides).

    Returns:
        The final metrics as floats: ``val/loss``, ``val/acc``, ``val/auroc`` of the last
        validation, and ``test/loss``, ``test/acc``, ``test/auroc`` of the best checkpoint.

    Raises:
        CheckpointError: ``ckpt_path`` is missing, unreadable, or not a training checkpoint.
        ValueError: the run would take no training step (``trainer.max_epochs=0``, or a
            checkpoint that has already trained ``trainer.max_epochs`` epochs).
    """
    start_step = _check_something_to_train(cfg)
    trainer, model, datamodule = build(cfg)
    with warnings.catch_warnings():
        # Lightning compares log_every_n_steps with its batches per epoch, but gdtorch logs by
        # updates, and one batch may carry many (data.updates_per_batch).
        warnings.filterwarnings(
            "ignore", message=r"The number of training batches \(\d+\) is smaller"
        )
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    if trainer.global_step <= start_step:  # e.g. trainer.max_steps reached already
        raise ValueError(
            f"no training step was taken (from step {start_step}): check trainer.max_epochs "
            f"and trainer.max_steps."
        )
    metrics = _floats(trainer.callback_metrics)
    has_best = (
        trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_path
    )
    trainer.test(model, datamodule=datamodule, ckpt_path="best" if has_best else None)
    metrics.update(_floats(trainer.callback_metrics))

    if trainer.is_global_zero:
        if not trainer.fast_dev_run:
            _log_hyperparams(trainer.loggers, cfg, metrics)
        _report(cfg, trainer, metrics)
    return metrics


def build(cfg: DictConfig) -> tuple[L.Trainer, CatClassifier, L.LightningDataModule]:
    """The trainer, model and data module of ``cfg``, seeded, as ``run`` fits them.

    Args:
        cfg: a composed ``conf/train.yaml``.

    Returns:
        ``(trainer, model, datamodule)``: ``trainer.fit(model, datamodule=datamodule)`` trains.
    """
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    model = CatClassifier(
        net=instantiate(cfg.model),
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        input_shape=(3, cfg.data.image_size, cfg.data.image_size),
        config=cfg,
    )
    loggers = build_loggers(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=loggers or False, callbacks=callbacks, plugins=plugins(cfg.trainer)
    )
    return trainer, model, datamodule


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """The loggers of ``cfg.logger``, one per named entry, in the config's order.

    ``cfg.logger`` holds named logger configs, e.g. ``{tensorboard: {_target_: …}, csv: {…}}``
    (``logger=many``); an entry set to ``null`` (``logger.csv=null``) is left out.

    Args:
        cfg: a composed ``conf/train.yaml`` (or any config with a ``logger`` group).

    Returns:
        The instantiated loggers; an empty list for ``logger=none`` or ``~logger``.

    Raises:
        ValueError: an entry of ``cfg.logger`` is not a logger config with a ``_target_``.
    """
    group = cfg.get("logger")
    if not group:
        return []
    if not OmegaConf.is_dict(group):
        raise ValueError(
            f"logger must be a dict of named logger configs or null, got {group!r}: choose "
            f"logger=tensorboard, csv, many or none."
        )
    loggers = []
    for name, entry in group.items():
        if entry is None:
            continue
        if not OmegaConf.is_dict(entry) or "_target_" not in entry:
            raise ValueError(
                f"logger.{name} must be a logger config with a _target_ (e.g. "
                f"logger.{name}._target_=lightning.pytorch.loggers.CSVLogger), got "
                f"{OmegaConf.to_container(entry) if OmegaConf.is_config(entry) else entry!r}: "
                f"each entry of logger is one named logger."
            )
        loggers.append(instantiate(entry))
    return loggers


def fit(
    trainer: L.Trainer,
    model: CatClassifier,
    datamodule: L.LightningDataModule,
    ckpt_path: str | None = None,
) -> None:
    """``trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)``, as ``run`` fits.

    Lightning warns when an epoch has fewer batches than ``trainer.log_every_n_steps``; gdtorch
    logs by updates, and one batch may carry many (``data.updates_per_batch``), so that warning
    is silenced here, and only it.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is")
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)


def _check_something_to_train(cfg: DictConfig) -> int:
    """The step training starts from; refuses a run that would take no training step.

    Raises:
        CheckpointError: ``ckpt_path`` cannot be resumed from.
        ValueError: ``trainer.max_epochs`` is below 1, or no more than the checkpoint's epochs.
    """
    epochs_done, start_step = 0, 0
    if cfg.get("ckpt_path"):
        epochs_done, start_step = training_checkpoint_progress(cfg.ckpt_path)
    max_epochs = cfg.trainer.get("max_epochs")
    if max_epochs is not None and max_epochs != -1 and max_epochs <= epochs_done:
        done = f"the checkpoint has trained {epochs_done} epochs; " if epochs_done else ""
        raise ValueError(
            f"trainer.max_epochs={max_epochs} leaves nothing to train: {done}set "
            f"trainer.max_epochs to at least {epochs_done + 1}."
        )
    return start_step


def plugins(trainer_cfg: DictConfig) -> list:
    """The trainer's plugins, with :class:`AtomicCheckpointIO` unless one sets a CheckpointIO.

    Lightning's own save is atomic only when ``$TMPDIR`` shares the checkpoint folder's file
    system, and its load uses torch's default ``weights_only``; see ``AtomicCheckpointIO``.
    """
    configured = trainer_cfg.get("plugins")
    if configured is None:
        configured = []
    elif not OmegaConf.is_list(configured):
        configured = [configured]
    made = [instantiate(p) if OmegaConf.is_config(p) else p for p in configured]
    if not any(isinstance(plugin, CheckpointIO) for plugin in made):
        made.append(AtomicCheckpointIO())
    return made


def _floats(metrics: dict) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()}


def _flat_config(cfg: DictConfig) -> dict[str, object]:
    """The config as one flat ``{"optimizer.lr": 0.05, ...}`` dict of scalars, for hparams."""
    flat: dict[str, object] = {}

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        elif isinstance(node, list):
            flat[prefix] = str(node)
        else:
            flat[prefix] = node

    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("paths", None)
    walk("", container)
    return flat


def _log_hyperparams(loggers: list[Logger], cfg: DictConfig, metrics: dict[str, float]) -> None:
    """The run's flattened config, and beside it in TensorBoard the final metrics.

    TensorBoard's hparams view gets the metrics under their own ``hp/`` tags: logging the final
    values under the curves' own tags would add a point at step 0, after the last step, which
    TensorBoard's loader takes for a restart and purges every later point. Other loggers take
    the config only (the final metrics are already among their rows).
    """
    params = _flat_config(cfg)
    hp_metrics = {f"hp/{k}": v for k, v in metrics.items() if "/" in k}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, hp_metrics)
        else:
            logger.log_hyperparams(params)
        logger.save()


def _report(cfg: DictConfig, trainer: L.Trainer, metrics: dict[str, float]) -> None:
    """Logs the test metrics and where the checkpoints and the loggers' files are."""
    lines = [f"test accuracy: {metrics.get('test/acc', float('nan')):.4f}"]
    if "test/auroc" in metrics:
        lines.append(f"test AUROC:    {metrics['test/auroc']:.4f}")
    if trainer.fast_dev_run:
        lines.append("fast_dev_run: no checkpoints or TensorBoard logs were written")
    if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_path:
        lines.append(f"best checkpoint: {trainer.checkpoint_callback.best_model_path}")
    for logger in [] if trainer.fast_dev_run else trainer.loggers:
        log_dir = getattr(logger, "log_dir", None)
        if not isinstance(log_dir, str) or not Path(log_dir).is_dir():
            continue
        log_dir = str(Path(log_dir))  # without the trailing "/" of an empty version
        if isinstance(logger, TensorBoardLogger):
            lines.append(f"TensorBoard logs: {log_dir}")
            lines.append(f"  view them with: tensorboard --logdir {cfg.paths.output_dir}")
        elif isinstance(logger, CSVLogger):
            lines.append(f"CSV logs: {log_dir} (metrics.csv, hparams.yaml)")
        else:
            lines.append(f"{type(logger).__name__} logs: {log_dir}")
    log.info("\n".join(lines))
