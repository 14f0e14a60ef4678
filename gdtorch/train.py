"""Layer 6: ``run(cfg)`` — one training run from a Hydra config, kept apart from the CLI shell.

``run`` seeds everything, instantiates the data, network, loss, optimizer, scheduler, loggers,
callbacks and trainer from the config, fits, tests the best checkpoint and returns the metrics.
``scripts/train.py`` and the ``gdtorch-train`` console script only wrap it in ``@hydra.main``.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from hydra.utils import instantiate
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

# (importing gdtorch.config registers the config resolvers run(cfg) relies on)
from gdtorch.config import check_run_folder, release_run_folder
from gdtorch.lightning import (
    AtomicCheckpointIO,
    CatClassifier,
    CheckpointError,
    training_checkpoint_progress,
)

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and test one cat/not-cat model as ``cfg`` describes.

    Before anything is built, the settings are checked (:func:`check_config`), the output
    folder is claimed (:func:`gdtorch.config.check_run_folder`) and a checkpoint to resume from
    is checked against the configured optimizer and scheduler. While the run trains and tests,
    SIGINT and SIGTERM ask it to stop (see :class:`StopOnSignal`).

    Args:
        cfg: a composed ``conf/train.yaml`` (see the README for the groups and overrides).

    Returns:
        The final metrics as floats: ``val/loss``, ``val/acc``, ``val/auroc`` of the last
        validation, and ``test/loss``, ``test/acc``, ``test/auroc`` of the best checkpoint.

    Raises:
        ValueError: a setting out of its range (:func:`check_config`); the run would take no
            training step (``trainer.max_epochs=0``, or a checkpoint that has already trained
            ``trainer.max_epochs`` epochs); a resumed run with another optimizer or scheduler
            class.
        CheckpointError: ``ckpt_path`` is missing, unreadable, or not a training checkpoint.
        RunFolderInUse: ``paths.output_dir`` holds another run, and this one does not resume it.
        RunInterrupted: SIGINT or SIGTERM stopped the run.
    """
    check_config(cfg)
    output_dir = cfg.paths.output_dir
    locked = check_run_folder(output_dir, cfg.get("ckpt_path"), setting="paths.output_dir")
    try:
        start_step = _check_something_to_train(cfg)
        _check_resumed_parts(cfg)
        trainer, model, datamodule = build(cfg)
        return _fit_and_test(cfg, trainer, model, datamodule, start_step)
    finally:
        if locked:
            release_run_folder(output_dir)


def _fit_and_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    model: CatClassifier,
    datamodule: L.LightningDataModule,
    start_step: int,
) -> dict[str, float]:
    """``run``'s fit and test, stopped by SIGINT or SIGTERM at the next update."""
    stop = next((c for c in trainer.callbacks if isinstance(c, StopOnSignal)), StopOnSignal())
    with stop.catching_signals(enabled=trainer.world_size == 1):
        try:
            stop.check()
            fit(trainer, model, datamodule, ckpt_path=cfg.get("ckpt_path"))
            stop.check()
            if trainer.global_step <= start_step:  # e.g. trainer.max_steps reached already
                raise ValueError(
                    f"no training step was taken (from step {start_step}): check "
                    f"trainer.max_epochs and trainer.max_steps."
                )
            metrics = _floats(trainer.callback_metrics)
            has_best = (
                trainer.checkpoint_callback is not None
                and trainer.checkpoint_callback.best_model_path
            )
            trainer.test(model, datamodule=datamodule, ckpt_path="best" if has_best else None)
            stop.check()
        except BaseException as err:
            if isinstance(err, SIGTERMException) and stop.received is None:
                stop.received = signal.SIGTERM  # Lightning's own handler (several processes)
            if stop.received is None:
                raise
            raise stop.interruption(trainer) from err
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
        Besides the configured callbacks the trainer has :class:`ResumeWithConfiguredSettings`
        and :class:`StopOnSignal` (which acts only inside :func:`run`).
    """
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    model = CatClassifier(
        net=instantiate(cfg.model),
        loss=instantiate(cfg.loss),
        optimizer=optimizer,
        scheduler=scheduler,
        input_shape=(3, cfg.data.image_size, cfg.data.image_size),
        config=cfg,
    )
    loggers = build_loggers(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks += [ResumeWithConfiguredSettings(optimizer, scheduler), StopOnSignal()]
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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_ONE_OR_MORE = "an int >= 1"
_SEEDS = "an int from 0 to 4294967295 (2**32 - 1: the seeds numpy and Lightning accept)"

# (setting, test, what is allowed): what check_config refuses, in the order it checks (a value
# that others are computed from, such as trainer.max_epochs, before them).
SETTINGS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("seed", lambda v: _is_int(v) and 0 <= v < 2**32, _SEEDS),
    ("data.seed", lambda v: _is_int(v) and 0 <= v < 2**32, _SEEDS),
    (
        "trainer.max_epochs",  # 0: refused by _check_something_to_train, with its own message
        lambda v: v is None or (_is_int(v) and v >= -1),
        "an int >= 1 (or -1 for no limit)",
    ),
    (
        "trainer.max_steps",
        lambda v: _is_int(v) and (v == -1 or v >= 1),
        "an int >= 1 (or -1 for no limit)",
    ),
    (
        "trainer.check_val_every_n_epoch",
        lambda v: v is None or (_is_int(v) and v >= 1),
        f"{_ONE_OR_MORE} (or null)",
    ),
    ("trainer.log_every_n_steps", lambda v: _is_int(v) and v >= 1, _ONE_OR_MORE),
    ("optimizer.lr", lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    ("optimizer.momentum", lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    ("optimizer.dampening", _is_number, "a finite number"),
    ("optimizer.weight_decay", lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    ("optimizer.nesterov", lambda v: isinstance(v, bool), "true or false"),
    ("scheduler.step_size", lambda v: _is_int(v) and v >= 1, f"{_ONE_OR_MORE} (epochs)"),
    ("scheduler.gamma", lambda v: _is_number(v) and v > 0, "a finite number > 0"),
    (
        "scheduler.T_max",
        lambda v: _is_int(v) and v >= 1,
        f"{_ONE_OR_MORE} (epochs; it follows trainer.max_epochs unless set)",
    ),
    ("scheduler.eta_min", lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    ("callbacks.early_stopping.patience", lambda v: _is_int(v) and v >= 0, "an int >= 0"),
)


def check_config(cfg: DictConfig) -> None:
    """Refuses a setting of :data:`SETTINGS` that is set and out of its type or range.

    Each would otherwise fail later, or deep inside torch or Lightning, with a message that
    names neither the setting nor its value: ``trainer.max_epochs=abc`` in a comparison,
    ``optimizer.lr=abc`` as "must be real number, not str", ``scheduler.step_size=0`` as a
    ``ZeroDivisionError`` after a whole epoch, ``seed=2**63`` as an overflow. Settings that are
    not in the config (``scheduler=none`` has no ``step_size``) are not checked.

    Args:
        cfg: a composed ``conf/train.yaml``.

    Raises:
        ValueError: ``<setting> must be <what is allowed>; got <value>``, for the first bad one.
    """
    absent = object()
    for setting, allowed, description in SETTINGS:
        value = OmegaConf.select(cfg, setting, default=absent)
        if value is absent or allowed(value):
            continue
        shown = value if _is_int(value) else repr(value)
        raise ValueError(f"{setting} must be {description}; got {shown}")


def _check_resumed_parts(cfg: DictConfig) -> None:
    """Refuses to resume with an optimizer or scheduler of another class than the checkpoint's.

    A resumed run restores the optimizer's state (momentum buffers) and the scheduler's, which
    belong to their classes; their settings may change (:class:`ResumeWithConfiguredSettings`).
    A checkpoint without gdtorch-train's run config is not compared.

    Raises:
        ValueError: ``optimizer`` or ``scheduler`` names another class than the checkpoint's.
    """
    if not cfg.get("ckpt_path"):
        return
    checkpoint = AtomicCheckpointIO().load_checkpoint(cfg.ckpt_path, map_location="cpu")
    saved = (checkpoint.get("hyper_parameters") or {}).get("config")
    if not isinstance(saved, dict):
        return
    for group, example in (("optimizer", "optimizer.lr"), ("scheduler", "scheduler.step_size")):
        before, now = _target(saved.get(group)), _target(cfg.get(group))
        if before != now:
            raise ValueError(
                f"{group} changed on resume: {cfg.ckpt_path} was trained with {before or 'none'}, "
                f"this run configures {now or 'none'}. A resumed run continues the state of its "
                f"{group}, so its class stays: resume with the checkpoint's {group} (its "
                f"settings, such as {example}, may change), or start a new run."
            )


def _target(part: object) -> str | None:
    """The ``_target_`` of an optimizer or scheduler config (a dict or DictConfig), or None."""
    if OmegaConf.is_dict(part) or isinstance(part, dict):
        return part.get("_target_")
    return None


class ResumeWithConfiguredSettings(L.Callback):
    """A resumed run trains with the optimizer and scheduler settings it is configured with.

    Lightning restores the checkpoint's optimizer ``state_dict`` over the configured optimizer,
    and its ``param_groups`` carry the hyper-parameters: ``ckpt_path=… optimizer.lr=0.001``
    would go on at the checkpoint's η, ``optimizer=momentum`` at momentum 0; likewise the
    scheduler's ``state_dict`` carries ``step_size``, ``gamma``, ``T_max``. Before Lightning
    restores them, this callback writes the configured values into the checkpoint as it was
    loaded, and logs each change: ``optimizer.lr changed on resume: 0.05 → 0.001``. Momentum
    buffers stay (switching momentum on starts them at the next update, as in a new run).

    With a scheduler the groups' η follow a schedule that started from the old ``optimizer.lr``
    (each group's ``initial_lr``); a new ``optimizer.lr`` restarts it from the new value, so the
    current η is scaled by new/old and the schedule goes on from there (exact for ``StepLR``,
    and for ``CosineAnnealingLR`` with ``eta_min=0``). A change of class is refused before the
    run starts (see :func:`run`).

    Args:
        optimizer: the configured partial optimizer (called with the parameters).
        scheduler: the configured partial scheduler (called with the optimizer), or ``None``.
    """

    def __init__(self, optimizer: Callable[..., torch.optim.Optimizer], scheduler: Any) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        configured = self.optimizer([torch.nn.Parameter(torch.zeros(1))]).param_groups[0]
        saved_config = (checkpoint.get("hyper_parameters") or {}).get("config") or {}
        saved_lr = (saved_config.get("optimizer") or {}).get("lr")
        schedulers = checkpoint.get("lr_schedulers") or []
        changes: dict[str, tuple[object, object]] = {}
        for state in checkpoint.get("optimizer_states") or []:
            for group in state.get("param_groups", []):
                lr = _apply_lr(group, configured["lr"], saved_lr, bool(schedulers))
                if lr is not None:
                    changes["optimizer.lr"] = lr
                for key, value in configured.items():
                    if key in ("params", "param_names", "lr", "initial_lr"):
                        continue
                    if key in group and group[key] != value:
                        changes[f"optimizer.{key}"] = (group[key], value)
                    group[key] = value
        settings = getattr(self.scheduler, "keywords", {})  # a functools.partial's arguments
        for state in schedulers:
            if "optimizer.lr" in changes and "base_lrs" in state:
                state["base_lrs"] = [configured["lr"]] * len(state["base_lrs"])
            for key, value in settings.items():
                if key in state and state[key] != value:
                    changes[f"scheduler.{key}"] = (state[key], value)
                    state[key] = value
        if trainer.is_global_zero:
            for setting, (before, after) in changes.items():
                log.info("%s changed on resume: %s → %s", setting, before, after)


def _apply_lr(
    group: dict[str, Any], lr: float, saved_lr: object, scheduled: bool
) -> tuple[float, float] | None:
    """Sets a restored param group's η from the configured ``lr``; ``(old, new)`` if it changed.

    The old configured η is the group's ``initial_lr`` (a scheduler's start), else the
    checkpoint's ``optimizer.lr``, else the group's ``lr``.
    """
    if "initial_lr" in group:
        before = group["initial_lr"]
    elif _is_number(saved_lr):
        before = saved_lr
    else:
        before = group["lr"]
    if lr == before:
        return None
    if scheduled and before:
        group["lr"] = group["lr"] * lr / before  # the schedule goes on from the new start
    else:
        group["lr"] = lr
    if "initial_lr" in group:
        group["initial_lr"] = lr
    return before, lr


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM, and the checkpoint it can resume from.

    Attributes:
        signal_name: ``"SIGINT"`` or ``"SIGTERM"``.
        exit_status: ``128 +`` the signal's number, as a shell reports a process it ended:
            130 for SIGINT, 143 for SIGTERM.
        epoch: the epoch that was running, counted from 0 as Lightning does.
        step: the updates made (``trainer.global_step``).
        checkpoint: the run's ``last.ckpt`` (whole: written atomically, and read back), or
            ``None`` when the run stopped before writing one.
    """

    def __init__(
        self, signum: int, epoch: int, step: int, checkpoint: Path | None, done: tuple[int, int]
    ) -> None:
        self.signal_name = signal.Signals(signum).name
        self.exit_status = 128 + int(signum)
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint
        where = f"interrupted by {self.signal_name} at epoch {epoch}, step {step}"
        if checkpoint is None:
            message = f"{where}, before its first checkpoint: there is nothing to resume from"
        else:
            message = (
                f"{where}; {checkpoint} holds {done[0]} epochs ({done[1]} steps): resume "
                f"with ckpt_path={checkpoint}"
            )
        super().__init__(message)
        self.where = where


class _StopRequested(BaseException):
    """Raised by :class:`StopOnSignal` inside Lightning's loops; ``run`` reports it as
    :class:`RunInterrupted`. (Not a ``KeyboardInterrupt``: Lightning would ``sys.exit(1)``.)"""


class StopOnSignal(L.Callback):
    """Stops a run at the next training, validation or test batch after SIGINT or SIGTERM.

    Python turns SIGINT into a ``KeyboardInterrupt`` wherever the main thread is, and one that
    lands in a weak-reference callback or a finaliser is printed and dropped: the run goes on
    and exits 0. Lightning turns SIGTERM into a ``SystemExit`` whose status is 0. Inside
    :meth:`catching_signals` both signals only set :attr:`received`; the next batch hook raises,
    Lightning tears the run down (queued checkpoint writes finish), and :func:`run` raises
    :class:`RunInterrupted`. The epoch that was running is abandoned: ``last.ckpt``, written at
    the end of an epoch, is left as it was. A second signal raises ``KeyboardInterrupt`` at once.
    """

    def __init__(self) -> None:
        self.received: int | None = None

    @contextmanager
    def catching_signals(self, enabled: bool = True) -> Iterator[StopOnSignal]:
        """SIGINT and SIGTERM set :attr:`received` inside the ``with`` block.

        Args:
            enabled: ``False`` leaves the handlers alone (several processes: Lightning's own
                SIGTERM handling stops every one at the same batch). Only the main thread can
                set handlers, and a signal that is ignored (SIGINT of a background job) stays so.
        """
        self.received = None
        previous: dict[int, Any] = {}
        if enabled and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                handler = signal.getsignal(signum)
                if handler is not signal.SIG_IGN:
                    previous[signum] = signal.SIG_DFL if handler is None else handler
                    signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None:
            raise KeyboardInterrupt  # a second signal: stop at once
        self.received = signum  # nothing else here: the handler can run in the middle of a write

    def check(self) -> None:
        """Raises ``_StopRequested`` once a signal was received."""
        if self.received is not None:
            raise _StopRequested

    def on_train_batch_start(self, *args: Any) -> None:
        self.check()

    def on_train_batch_end(self, *args: Any) -> None:
        self.check()

    def on_validation_batch_end(self, *args: Any) -> None:
        self.check()

    def on_test_batch_end(self, *args: Any) -> None:
        self.check()

    def interruption(self, trainer: L.Trainer) -> RunInterrupted:
        """The :class:`RunInterrupted` of ``trainer``'s run, after :attr:`received`."""
        assert self.received is not None
        checkpoint, done = None, (0, 0)
        for callback in trainer.checkpoint_callbacks:
            last = Path(callback.dirpath or "", f"last{ModelCheckpoint.FILE_EXTENSION}")
            if callback.dirpath and last.is_file():
                try:
                    done = training_checkpoint_progress(last)
                except CheckpointError:
                    continue
                checkpoint = last.absolute()
                break
        return RunInterrupted(
            self.received, trainer.current_epoch, trainer.global_step, checkpoint, done
        )


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
