"""Where gdtorch reaches into Lightning's workings, for batches that carry many updates.

Lightning stamps what ``self.log`` logs with a private counter of the batches that took an
optimizer step. gdtorch counts updates instead, because one of its batches may carry several
(:class:`~gdtorch.data.Updates`): :func:`logging_step` and :func:`count_extra_updates` keep the
two equal. :func:`update_is_plain` tells when Lightning's backward and optimizer step add
nothing to torch's, and :func:`plain_step` then steps as Lightning counts a step.
"""

from __future__ import annotations

import lightning.pytorch as L
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.utilities.model_helpers import is_overridden


def logging_step(trainer: L.Trainer) -> int:
    """The step Lightning stamps on what ``self.log`` logs now (``val/*``, ``train/loss``).

    It counts the updates before the running batch: batch ``k`` of the run logs at step ``k``,
    and a validation that follows update ``k`` logs at step ``k`` too. It equals
    ``trainer.global_step`` before an update and ``global_step − 1`` in the validation after it.
    """
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def count_extra_updates(trainer: L.Trainer, extra: int) -> None:
    """Count ``extra`` more updates in :func:`logging_step` than the batch Lightning counts.

    A batch that took ``1 + extra`` updates advances the logging step by ``1 + extra``, as the
    same updates served one per batch would: Lightning adds the one after the batch.
    """
    trainer.fit_loop.epoch_loop._batches_that_stepped += extra


_UPDATE_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def update_is_plain(trainer: L.Trainer, module: L.LightningModule) -> bool:
    """Whether Lightning's ``manual_backward(loss)`` and ``optimizer.step()`` would do no more
    than ``loss.backward()`` and the optimizer's own ``step()``.

    True when the strategy and precision add nothing to the backward pass or the step (no loss
    scaling, no gradient synchronisation or model averaging: a single device with 32-, 64-bit
    or bf16 precision) and no callback nor the module overrides ``on_before_backward``,
    ``on_after_backward`` or ``on_before_optimizer_step``. Then a batch of many tiny updates
    may skip Lightning's three hook dispatches per update (:func:`plain_step`).
    """
    precision, strategy = trainer.precision_plugin, trainer.strategy
    scaler = getattr(precision, "scaler", None)
    precision_plain = scaler is None and all(
        getattr(type(precision), name) is getattr(Precision, name)
        for name in ("backward", "post_backward")
    )
    pre_backward_plain = type(precision).pre_backward in (
        Precision.pre_backward,
        MixedPrecision.pre_backward,  # scales the loss only with a scaler (16-mixed)
    )
    precision_plain = precision_plain and type(precision).optimizer_step is Precision.optimizer_step
    strategy_plain = all(
        getattr(type(strategy), name) is getattr(Strategy, name)
        for name in ("backward", "pre_backward", "post_backward", "optimizer_step")
    )
    hooks_plain = not any(
        is_overridden(hook, callback, L.Callback)
        for callback in trainer.callbacks
        for hook in _UPDATE_HOOKS
    ) and not any(
        is_overridden(hook, module, L.LightningModule) for hook in (*_UPDATE_HOOKS, "backward")
    )
    return precision_plain and pre_backward_plain and strategy_plain and hooks_plain


def plain_step(optimizer: LightningOptimizer) -> None:
    """``optimizer.step()`` without the strategy, precision and hook layers, for when
    :func:`update_is_plain`: the wrapped optimizer's own step, counted as Lightning counts one
    (``trainer.global_step``, the profiler's ``optimizer_step``) through the callbacks its
    manual-optimization loop set on ``optimizer``."""
    optimizer._on_before_step()
    optimizer.optimizer.step()
    optimizer._on_after_step()
