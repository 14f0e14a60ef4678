"""``NonFiniteLossGuard``: stop training at the first NaN or infinite loss, before it is saved."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from gdtorch import _compat


class NonFiniteLossError(RuntimeError):
    """The training loss, a parameter after an update, or the validation loss is NaN or ±inf."""


class NonFiniteLossGuard(L.Callback):
    """Stops the run with :class:`NonFiniteLossError` at the first non-finite training loss.

    After each training batch (``on_train_batch_end``, when the optimizer steps of that batch have
    already been taken) the guard reads the batch's loss — or its losses, one per update, when the
    batch carried several updates (``CatClassifier`` on :class:`~gdtorch.data.Updates`) — and,
    with ``check_parameters``, whether every parameter is still finite. The first NaN or ±inf
    stops the run with a message naming the update's step (as logged: ``trainer.global_step``
    when the batch started, plus the update's place in it), the epoch, the batch and the value,
    or the first non-finite parameter. A NaN prediction is a model bug, not bad
    data: the losses do not check predictions (see the README), this guard does.

    With ``check_validation``, the guard also reads ``val/loss`` when a validation during
    ``fit`` ends (``on_validation_end``): weights that are finite but so large that the
    network's outputs overflow (``inf − inf = NaN``, e.g. after ``optimizer.lr=1e6``) give a
    finite training loss on one batch and a NaN validation loss; the run stops there too, before
    the checkpoint of that validation is written.

    Why this keeps the last good checkpoint intact: Lightning runs ``ModelCheckpoint`` after
    every other callback and saves only at the end of a training epoch, after validation, or
    every ``every_n_train_steps`` from its own ``on_train_batch_end`` — all of them after this
    guard has seen the batch (and the validation). An exception ends ``fit`` without a save
    (``ModelCheckpoint`` saves on an exception only with ``save_on_exception=True``, off by
    default; do not turn it on with this guard). Weights an update made non-finite while the
    loss was still finite are caught by ``check_parameters`` before any save, too.

    Under DDP the decision is reduced over all processes (any non-finite value on any rank stops
    every rank at the same step), so no process waits forever on a collective.

    Cost: one device synchronisation per step (one ``.item()``), plus, with
    ``check_parameters``, one fused norm pass over the parameters (rather than an ``isfinite``
    per parameter); under DDP one all-reduce of a single integer.

    Args:
        check_parameters: also stop when an update made a parameter non-finite although the
            loss of that batch was finite (the next checkpoint would hold it).
        check_validation: also stop when ``val/loss`` (the validation loss ``CatClassifier``
            logs) is NaN or ±inf at the end of a validation during ``fit``.

    Example:
        >>> trainer = L.Trainer(callbacks=[NonFiniteLossGuard()])  # doctest: +SKIP
    """

    validation_metric = "val/loss"

    def __init__(self, check_parameters: bool = True, check_validation: bool = True) -> None:
        for name, value in (
            ("check_parameters", check_parameters),
            ("check_validation", check_validation),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
        self.check_parameters = check_parameters
        self.check_validation = check_validation
        self._step = 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._step = trainer.global_step

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = _loss_of(outputs)
        parameters = [p.detach() for p in pl_module.parameters()] if self.check_parameters else []
        local_ok = _all_finite(loss, parameters)
        stop = trainer.strategy.reduce_boolean_decision(not local_ok, all=False)
        if not stop:
            return
        first_bad = 0 if loss is None else _first_non_finite(loss)
        where = f"step {self._step + first_bad} (epoch {trainer.current_epoch}, batch {batch_idx})"
        value = None if loss is None else _value_of(loss)
        if value is not None and not math.isfinite(value):
            raise NonFiniteLossError(
                f"NonFiniteLossGuard: the training loss is {value} at {where}; training "
                f"stopped before any checkpoint of these weights was written (the last "
                f"checkpoint on disk is the last good one). Lower the learning rate, check "
                f"the data and the model's output for NaN/inf, or resume from the last "
                f"checkpoint."
            )
        bad = next(
            (name for name, p in pl_module.named_parameters() if not torch.isfinite(p).all()),
            None,
        )
        if bad is not None:
            update = f"the update of {where}"
            taken = 1 if loss is None else loss.numel()
            if taken > 1:  # any of the batch's updates may have made it non-finite
                update = (
                    f"one of the updates of steps {self._step}-{self._step + taken - 1} "
                    f"(epoch {trainer.current_epoch}, batch {batch_idx})"
                )
            raise NonFiniteLossError(
                f"NonFiniteLossGuard: parameter {bad!r} is non-finite after {update} "
                f"(the training loss of that batch was {value}); training stopped "
                f"before any checkpoint of these weights was written. Lower the learning rate "
                f"or resume from the last checkpoint."
            )
        raise NonFiniteLossError(
            f"NonFiniteLossGuard: another process found a non-finite training loss or parameter "
            f"at {where} (this process's loss was {value}); training stopped on every process."
        )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Stops the run when ``val/loss`` is NaN or ±inf, before its checkpoint is saved."""
        if (
            not self.check_validation
            or trainer.sanity_checking
            or trainer.state.fn != TrainerFn.FITTING
        ):
            return
        metric = trainer.callback_metrics.get(self.validation_metric)
        value = None if metric is None else float(metric)
        local_bad = value is not None and not math.isfinite(value)
        if not trainer.strategy.reduce_boolean_decision(local_bad, all=False):
            return
        where = f"after step {trainer.global_step - 1} (epoch {trainer.current_epoch})"
        if not local_bad:
            raise NonFiniteLossError(
                f"NonFiniteLossGuard: another process found a non-finite "
                f"{self.validation_metric} {where} (this process's was {value}); training "
                f"stopped on every process."
            )
        raise NonFiniteLossError(
            f"NonFiniteLossGuard: the validation loss {self.validation_metric} is {value} "
            f"{where}: the network's outputs are not finite on the validation data (weights "
            f"so large that its outputs overflow); training stopped before any checkpoint of "
            f"these weights was written (the last checkpoint on disk is the last good one). "
            f"Lower the learning rate, or resume from the last checkpoint."
        )


def _all_finite(loss: Tensor | None, parameters: list[Tensor]) -> bool:
    """Whether the loss and every parameter are free of NaN and ±inf, with one device sync.

    The parameters are checked through their norms, in one fused ``_foreach_norm`` pass: a norm
    is finite unless an element is NaN or ±inf, or the sum of squares overflows. Only when that
    fast check fails are the parameters checked element by element, so an overflowing norm of
    finite weights is not mistaken for a non-finite one.
    """
    checks = [] if loss is None else [torch.isfinite(loss.detach()).all()]
    if parameters:
        norms = _compat.foreach_norm(parameters)
        checks.append(torch.isfinite(torch.stack([n.float() for n in norms])).all())
    if not checks or bool(torch.stack(checks).all().item()):
        return True
    loss_finite = loss is None or bool(torch.isfinite(loss.detach()).all())
    return loss_finite and all(bool(torch.isfinite(p).all()) for p in parameters)


def _loss_of(outputs: Any) -> Tensor | None:
    """The loss in ``training_step``'s output as Lightning hands it over, if there is one."""
    if isinstance(outputs, Tensor):
        return outputs
    if isinstance(outputs, Mapping) and isinstance(outputs.get("loss"), Tensor):
        return outputs["loss"]
    return None


def _first_non_finite(loss: Tensor) -> int:
    """The index of the first non-finite element of ``loss`` (one per update), else 0."""
    bad = (~torch.isfinite(loss.detach().flatten())).nonzero()
    return int(bad[0]) if len(bad) else 0


def _value_of(loss: Tensor) -> float | None:
    """The loss as one float: itself when a scalar, else its first non-finite element."""
    loss = loss.detach().flatten()
    if not loss.numel():
        return None
    bad = loss[~torch.isfinite(loss)]
    return (bad[0] if bad.numel() else loss[0]).item()
