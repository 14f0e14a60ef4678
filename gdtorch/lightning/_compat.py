"""Where gdtorch reaches into Lightning's workings, for batches that carry many updates.

Lightning stamps what ``self.log`` logs with a private counter of the batches that took an
optimizer step. gdtorch counts updates instead, because one of its batches may carry several
(:class:`~gdtorch.data.Updates`): :func:`logging_step` and :func:`count_extra_updates` keep the
two equal. :func:`backward_is_plain` tells when Lightning's backward adds nothing to torch's.
"""

from __future__ import annotations

import lightning.pytorch as L
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


_BACKWARD_HOOKS = ("on_before_backward", "on_after_backward")


def backward_is_plain(trainer: L.Trainer, module: L.LightningModule) -> bool:
    """Whether ``module.manual_backward(loss)`` would do no more than ``loss.backward()``.

    True when the strategy and precision add nothing to the backward pass (no loss scaling,
    no gradient synchronisation: a single device with 32-, 64-bit or bf16 precision) and no
    callback nor the module overrides ``on_before_backward`` or ``on_after_backward``. Then a
    batch of many tiny updates may skip Lightning's two hook dispatches per update.
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
    strategy_plain = all(
        getattr(type(strategy), name) is getattr(Strategy, name)
        for name in ("backward", "pre_backward", "post_backward")
    )
    hooks_plain = not any(
        is_overridden(hook, callback, L.Callback)
        for callback in trainer.callbacks
        for hook in _BACKWARD_HOOKS
    ) and not any(
        is_overridden(hook, module, L.LightningModule) for hook in (*_BACKWARD_HOOKS, "backward")
    )
    return precision_plain and pre_backward_plain and strategy_plain and hooks_plain
