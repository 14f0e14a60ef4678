"""Cost functions ``C(ŷ, y)`` and their hand-written gradients ``∂C/∂ŷ`` and ``∂C/∂y``.

Each forward is written from the tutorial's formulas with ``abs``, ``pow``, ``log``, sums and
means; ``torch.nn.functional``'s losses serve only as references in the tests. Every Function
takes ``reduction`` (``"none"``, ``"mean"`` or ``"sum"``) as its last argument:

* ``"none"`` returns the per-element errors ``ℓᵢ``;
* ``"sum"`` returns ``C = Σᵢ ℓᵢ``, so ``∂C/∂ℓᵢ = 1``;
* ``"mean"`` returns ``C = (1/N) Σᵢ ℓᵢ``, so ``∂C/∂ℓᵢ = 1/N``.

Arguments are assumed valid (same shapes, known reduction); :mod:`gdtorch.functional` checks them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gdtorch.autograd import _fast

LOG_FLOOR = -100.0  # torch's BCE clamps log(ŷ) and log(1 − ŷ) here, so C stays finite at 0 and 1
BCE_EPS = 1e-12  # torch's floor for ŷ(1 − ŷ) in ∂C/∂ŷ


def log1p_exp(x: Tensor) -> Tensor:
    """``log(1 + eˣ) = log(e⁰ + eˣ)`` by the log-sum-exp trick, finite for every ``x``."""
    return torch.logaddexp(_fast.shared_constant(0.0, x), x)


def reduce(loss: Tensor, reduction: str) -> Tensor:
    """``C`` from the per-element errors ``ℓᵢ`` (already multiplied by any weight)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()  # C = Σᵢ ℓᵢ
    return loss.mean()  # C = (1/N) Σᵢ ℓᵢ


def _reduction_scale(grad_output: Tensor, reduction: str, count: Tensor | int) -> Tensor:
    """``∂C/∂ℓᵢ`` times the incoming gradient: ``1/N`` for mean, 1 for sum and none."""
    return grad_output / count if reduction == "mean" else grad_output


def _weighted_reduce(error: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    """MAE/MSE reduction as torch defines it: a weighted mean divides by ``Σ wᵢ``, not ``N``."""
    if weight is None:
        return reduce(error, reduction)
    loss = error * weight
    return loss.sum() / weight.sum() if reduction == "mean" else reduce(loss, reduction)


def _save_difference(ctx: Any, inputs: tuple, output: tuple[Tensor, Tensor]) -> None:
    """``setup_context`` of MAE and MSE: keep ``d = ŷ − y`` (one tensor, as torch's MAE does).

    ``d`` is an output of ``forward`` rather than a tensor saved from inside it, so that a
    backward that uses it (MSE's ``2d``) can itself be differentiated (double backward): the
    gradient reaching ``d`` flows on through ``∂d/∂ŷ = 1`` and ``∂d/∂y = −1``.
    """
    _, _, weight, reduction = inputs
    loss, d = output
    ctx.set_materialize_grads(False)
    ctx.reduction = reduction
    keep_loss = ctx.needs_input_grad[2] and reduction == "mean"
    ctx.save_for_backward(d, weight, loss if keep_loss else None)


def _difference_backward(
    ctx: Any,
    grad_output: Tensor | None,
    grad_d: Tensor | None,
    slope: Callable[[Tensor], Tensor],
    error: Callable[[Tensor], Tensor],
) -> tuple[Tensor | None, ...]:
    """The chain rule of a loss ``C = reduce(w ⊙ ℓ(d))`` of ``d = ŷ − y``, shared by MAE and MSE.

    With ``g = ∂C/∂ℓᵢ`` times the incoming gradient (``1/N``, or ``1/Σ wᵢ`` for a weighted
    mean), ``slope`` = ``∂ℓ/∂d`` and ``error`` = ``ℓ``::

        ∂C/∂ŷ = g ⊙ w ⊙ ∂ℓ/∂d        ∂C/∂y = −∂C/∂ŷ           (since ∂d/∂y = −1)
        ∂C/∂wᵢ = g (ℓᵢ − C)          for a weighted mean (C = Σ wᵢℓᵢ / Σ wᵢ); g ℓᵢ otherwise

    ``grad_d``: a gradient reaching the output ``d`` itself (only in double backward).
    """
    d, weight, loss = ctx.saved_tensors
    needs_input, needs_target, needs_weight, _ = ctx.needs_input_grad
    dC_dw = None
    if grad_output is not None:
        g = _reduction_scale(
            grad_output, ctx.reduction, d.numel() if weight is None else weight.sum()
        )
        if needs_input or needs_target:
            dC_dd = g * slope(d) if weight is None else g * slope(d) * weight
            grad_d = dC_dd if grad_d is None else grad_d + dC_dd
        if needs_weight:
            dC_dw = g * (error(d) - loss) if ctx.reduction == "mean" else g * error(d)
    dC_dy = -grad_d if needs_target and grad_d is not None else None
    return grad_d if needs_input else None, dC_dy, dC_dw, None


def _twice(d: Tensor) -> Tensor:
    """``∂(d²)/∂d = 2d``, the power rule."""
    return 2 * d


class MAELossFunction(_fast.Function):
    r"""Mean absolute error, ``ℓᵢ = |ŷᵢ − yᵢ|`` (torch's ``l1_loss``), optionally weighted.

    Backward, with ``d = ŷ − y`` and ``g`` the incoming gradient scaled by the reduction::

        ∂C/∂ŷ = g ⊙ sign(d)        ∂C/∂y = −g ⊙ sign(d)

    ``sign(0) = 0``, as torch. Forward returns ``(C, d)``: ``d`` is the one tensor kept for
    backward (torch's ``abs`` keeps the same), handed over as an auxiliary output (the
    ``torch.func`` way to save an intermediate); :func:`gdtorch.functional.l1_loss` drops it.

    Complex ``ŷ`` and ``y`` are supported, as torch's ``l1_loss`` supports them: ``ℓ = |d|`` is
    real, and its gradient in torch's convention for a complex ``d = u + iv``
    (``∂ℓ/∂u + i ∂ℓ/∂v``) is ``sgn(d) = d/|d|``: ``torch.sgn``, which is ``sign`` on real numbers.
    """

    @staticmethod
    def forward(
        input: Tensor, target: Tensor, weight: Tensor | None, reduction: str
    ) -> tuple[Tensor, Tensor]:
        d = input - target  # d = ŷ − y
        return _weighted_reduce(d.abs(), weight, reduction), d  # C = reduce(|d|)

    setup_context = staticmethod(_save_difference)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor | None, grad_d: Tensor | None) -> tuple:
        return _difference_backward(ctx, grad_output, grad_d, torch.sgn, torch.abs)


class MSELossFunction(_fast.Function):
    r"""Mean squared error, ``ℓᵢ = (ŷᵢ − yᵢ)²``, optionally weighted.

    Backward, by the power rule, with ``d = ŷ − y``::

        ∂C/∂ŷ = g ⊙ 2d             ∂C/∂y = −g ⊙ 2d

    Keeps only ``d`` for backward (torch's ``mse_loss`` keeps both ``ŷ`` and ``y``).
    """

    @staticmethod
    def forward(
        input: Tensor, target: Tensor, weight: Tensor | None, reduction: str
    ) -> tuple[Tensor, Tensor]:
        d = input - target  # d = ŷ − y
        return _weighted_reduce(d.pow(2), weight, reduction), d  # C = reduce(d²)

    setup_context = staticmethod(_save_difference)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor | None, grad_d: Tensor | None) -> tuple:
        return _difference_backward(ctx, grad_output, grad_d, _twice, torch.square)


class BCELossFunction(_fast.Function):
    r"""Binary cross-entropy on probabilities, ``ℓᵢ = −wᵢ [yᵢ log ŷᵢ + (1 − yᵢ) log(1 − ŷᵢ)]``.

    Both logs are clamped at −100, as torch does, so ``ℓ`` stays finite at ``ŷ ∈ {0, 1}``. A
    weighted mean divides by ``N`` (torch's convention for BCE). Backward::

        ∂C/∂ŷ = g ⊙ w ⊙ (ŷ − y) / (ŷ(1 − ŷ))       (denominator floored at 1e-12)
        ∂C/∂y = g ⊙ w ⊙ (log(1 − ŷ) − log ŷ)

    ``weight`` is a constant rescaling (torch refuses a weight that requires grad).
    """

    @staticmethod
    def forward(input: Tensor, target: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
        log_p = torch.log(input).clamp_min(LOG_FLOOR)
        log_q = torch.log1p(-input).clamp_min(LOG_FLOOR)
        loss = -(target * log_p + (1 - target) * log_q)
        if weight is not None:
            loss = loss * weight
        return reduce(loss, reduction)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        input, target, weight, reduction = inputs
        ctx.reduction = reduction
        ctx.save_for_backward(input, target, weight)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        input, target, weight = ctx.saved_tensors
        needs_input, needs_target, _, _ = ctx.needs_input_grad
        g = _reduction_scale(grad_output, ctx.reduction, input.numel())
        if weight is not None:
            g = g * weight
        grad_input = grad_target = None
        if needs_input:
            grad_input = g * (input - target) / (input * (1 - input)).clamp_min(BCE_EPS)
        if needs_target:
            grad_target = g * (torch.log1p(-input) - torch.log(input))
        return grad_input, grad_target, None, None


class BCEWithLogitsLossFunction(_fast.Function):
    r"""Binary cross-entropy on logits ``z`` (``ŷ = σ(z)``), with optional ``pos_weight`` ``p``.

    ``ℓᵢ = −wᵢ [pᵢ yᵢ log σ(zᵢ) + (1 − yᵢ) log(1 − σ(zᵢ))]``. Since ``−log σ(z) = log(1 + e⁻ᶻ)``
    and ``−log(1 − σ(z)) = z + log(1 + e⁻ᶻ)``::

        ℓ = w [(1 − y) z + (1 + (p − 1) y) log(1 + e⁻ᶻ)]
          = w [log(1 + eᶻ) − y z]                                   when p = 1

    Each ``log(1 + eˣ) = log(e⁰ + eˣ)`` is evaluated by the log-sum-exp trick
    (``torch.logaddexp``: ``max(0, x) + log(1 + e^{−|x|})``), so no exponential overflows.

    Backward — the sigmoid and the log cancel into the famous ``σ(z) − y`` when ``p = 1``::

        ∂C/∂z = g ⊙ w ⊙ [(1 + (p − 1) y) σ(z) − p y]
        ∂C/∂y = g ⊙ w ⊙ [(p − 1) log(1 + e⁻ᶻ) − z]
    """

    @staticmethod
    def forward(
        input: Tensor,
        target: Tensor,
        weight: Tensor | None,
        pos_weight: Tensor | None,
        reduction: str,
    ) -> Tensor:
        if pos_weight is None:
            loss = torch.addcmul(log1p_exp(input), target, input, value=-1)  # log(1 + eᶻ) − y z
        else:
            log_weight = 1 + (pos_weight - 1) * target
            loss = (1 - target) * input + log_weight * log1p_exp(-input)
        if weight is not None:
            loss = loss * weight
        return reduce(loss, reduction)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        input, target, weight, pos_weight, reduction = inputs
        ctx.reduction = reduction
        ctx.save_for_backward(input, target, weight, pos_weight)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        input, target, weight, pos_weight = ctx.saved_tensors
        needs_input, needs_target, _, _, _ = ctx.needs_input_grad
        g = _reduction_scale(grad_output, ctx.reduction, input.numel())  # g ⊙ ∂C/∂ℓᵢ
        if weight is not None:
            g = g * weight
        grad_input = grad_target = None
        if needs_input:
            if pos_weight is None:
                dl_dz = torch.sigmoid(input) - target  # σ(z) − y
            else:
                dl_dz = (1 + (pos_weight - 1) * target) * torch.sigmoid(input) - pos_weight * target
            grad_input = dl_dz * g  # ∂C/∂z = g ⊙ ∂ℓ/∂z / N
        if needs_target:
            if pos_weight is None:
                dl_dy = -input  # −z
            else:
                dl_dy = (pos_weight - 1) * log1p_exp(-input) - input
            grad_target = dl_dy * g  # ∂C/∂y = g ⊙ ∂ℓ/∂y / N
        return grad_input, grad_target, None, None, None
