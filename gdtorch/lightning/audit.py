"""``GradientAudit``: check the hand-written backward against torch autograd while training."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as L

from gdtorch.data import first_update
from gdtorch.gradient_audit import AuditReport, audit
from gdtorch.lightning.cost import TargetsLikeOutput


class GradientAuditError(RuntimeError):
    """gdtorch's gradients differ from torch autograd's by more than the tolerance."""


class GradientAudit(L.Callback):
    """Every ``every_n_steps`` optimizer steps, :func:`gdtorch.audit` the current batch.

    Before the step's update, the batch ``(x, y)`` is audited with the module's ``net`` and
    ``loss_fn`` (:class:`~gdtorch.lightning.CatClassifier`'s attributes): ``∇C(θ)`` through
    gdtorch's hand-written backward against torch autograd's, in float64. Logs
    ``audit/max_abs_diff`` and ``audit/max_rel_diff``, and stops the run with a
    :class:`GradientAuditError` naming the step, the worst layer and parameter and their
    differences when any row differs by more than ``tolerance`` both absolutely and relatively.
    The last report is kept as ``last_report``.

    Cost per audit: two float64 copies of the network, and about two float64 forward+backward
    passes of each on the batch. Training itself is unaffected (the copies are discarded and the
    random state is restored).

    Args:
        every_n_steps: audit when ``trainer.global_step`` is a multiple of this.
        tolerance: the largest difference accepted; float64 rounding is around 1e-16.
    """

    def __init__(self, every_n_steps: int = 100, tolerance: float = 1e-8) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if not tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        self.every_n_steps = every_n_steps
        self.tolerance = tolerance
        self.last_report: AuditReport | None = None
        self._last_step: int | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or step == self._last_step:  # once per step (accumulation)
            return
        self._last_step = step
        images, targets = first_update(batch)  # the update about to be taken
        report = audit(pl_module.net, TargetsLikeOutput(pl_module.loss_fn), images, targets)
        self.last_report = report
        for name in ("max_abs_diff", "max_rel_diff"):
            pl_module.log(f"audit/{name}", getattr(report, name), on_step=True, on_epoch=False)
        if any(row.exceeds(self.tolerance) for row in report.rows):
            raise GradientAuditError(_failure_message(step, self.tolerance, report))


def _failure_message(step: int, tolerance: float, report: AuditReport) -> str:
    worst = [
        f"worst {kind}: {row.name}, max |g − r| = {row.max_abs_diff:.3e}, "
        f"relative {row.max_rel_diff:.3e}"
        for kind in ("layer", "parameter")
        if (row := report.worst(kind)) is not None
    ]
    return (
        f"GradientAudit at step {step}: gdtorch's gradients differ from torch autograd's by more "
        f"than tolerance={tolerance:g}; " + "; ".join(worst) + f".\n{report}"
    )
