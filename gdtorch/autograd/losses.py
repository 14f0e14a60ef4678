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

from gdtorch.autograd.function import Function

_LOG_FLOOR = -100.0  # torch's BCE clamps log(ŷ) and log(1 − ŷ) here, so C stays finite at 0 and 1
_BCE_EPS = 1e-12  # torch's floor for ŷ(1 − ŷ) in ∂C/∂ŷ


_CONSTANTS: dict[tuple[float, torch.device, torch.dtype], Tensor] = {}
_MAX_CONSTANTS = 64  # a handful of batch sizes × dtypes × devices; past it, constants are fresh
_DIVISOR_DTYPES = (torch.float32, torch.float64)  # whose mean is Σ ℓᵢ ÷ a shared N (see _reduce)


def _constant(value: float, like: Tensor) -> Tensor:
    """A 0-dim tensor holding ``value``, of ``like``'s dtype and device, made once and shared.

    On a small batch every tensor made per call counts (making a zero afresh cost 7 µs per
    training step at batch 1), so eager calls on plain tensors share one per value, dtype and
    device. ``torch.compile`` and ``torch.func`` get a fresh one, as they trace; so do tensor
    subclasses (fake tensors, for one, must not be kept), inference mode, whose tensors must not
    outlive it into autograd, and CUDA graph capture, whose memory only the graph fills. Once
    the cache is full, new values are made afresh: nothing shared is ever dropped.
    """
    if (
        type(like) is not Tensor
        or torch.compiler.is_compiling()
        or torch._C._are_functorch_transforms_active()
        or torch.is_inference_mode_enabled()
        or (like.is_cuda and torch.cuda.is_current_stream_capturing())
    ):
        return like.new_full((), value)
    key = (value, like.device, like.dtype)
    constant = _CONSTANTS.get(key)
    if constant is None:
        constant = like.new_full((), value)
        if len(_CONSTANTS) < _MAX_CONSTANTS:
            _CONSTANTS[key] = constant
    return constant


def _log1p_exp(x: Tensor) -> Tensor:
    """``log(1 + eˣ) = log(e⁰ + eˣ)`` by the log-sum-exp trick, finite for every ``x``."""
    return torch.logaddexp(_constant(0.0, x), x)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    """``C`` from the per-element errors ``ℓᵢ`` (already multiplied by any weight).

    The mean of a float32 or float64 loss is ``Σᵢ ℓᵢ`` divided by a shared 0-dim ``N``, which is
    what ``mean`` computes, bit for bit; ``mean`` itself divides by a scalar it wraps into a new
    tensor, which took 12 µs inside a batch-1 training step against 8 µs for this.
    Other dtypes, and empty losses (whose mean is NaN), keep ``mean``.
    """
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if loss.dtype in _DIVISOR_DTYPES and loss.numel():
        return loss.sum().div_(_constant(float(loss.numel()), loss))
    return loss.mean()


def _reduction_scale(grad_output: Tensor, reduction: str, count: Tensor | int) -> Tensor:
    """``∂C/∂ℓᵢ`` times the incoming gradient: 1 for sum and none, ``1/N`` for mean."""
    return grad_output / count if reduction == "mean" else grad_output


def _weighted_reduce(error: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    """MAE/MSE reduction as torch defines it: a weighted mean divides by ``Σ wᵢ``, not ``N``."""
    if weight is None:
        return _reduce(error, reduction)
    loss = error * weight
    return loss.sum() / weight.sum() if reduction == "mean" else _reduce(loss, reduction)


def _pointwise_setup(ctx: Any, inputs: tuple, output: tuple[Tensor, Tensor]) -> None:
    """Shared ``setup_context`` of MAE and MSE: keep ``d = ŷ − y`` (one tensor, as torch does)."""
    _, _, weight, reduction = inputs
    loss, diff = output
    # ``d`` stays a differentiable output: the backward's ``2d`` (MSE) must be differentiable
    # again for double backward, which flows through ``d``'s own gradient ``∂d/∂ŷ = 1``.
    ctx.set_materialize_grads(False)
    ctx.reduction = reduction
    keep_loss = ctx.needs_input_grad[2] and reduction == "mean"
    ctx.save_for_backward(diff, weight, loss if keep_loss else None)


def _pointwise_backward(
    ctx: Any,
    grad_output: Tensor | None,
    grad_diff: Tensor | None,
    slope: Callable[[Tensor], Tensor],
    error: Callable[[Tensor], Tensor],
) -> tuple[Tensor | None, ...]:
    """Chain rule shared by MAE and MSE, given ``d ↦ ∂ℓ/∂d`` (``slope``) and ``d ↦ ℓ`` (``error``).

    ``∂C/∂ŷ = g ⊙ w ⊙ ∂ℓ/∂d``, ``∂C/∂y = −∂C/∂ŷ`` (since ``d = ŷ − y``) and, for a weighted
    mean ``C = Σ wᵢℓᵢ / Σ wᵢ``, ``∂C/∂wᵢ = (ℓᵢ − C) / Σ wᵢ`` (``ℓᵢ`` for sum and none).
    ``grad_diff`` is the gradient reaching the auxiliary output ``d`` (only in double backward).
    """
    diff, weight, loss = ctx.saved_tensors
    needs_input, needs_target, needs_weight, _ = ctx.needs_input_grad
    grad_weight = None
    if grad_output is not None:
        count = diff.numel() if weight is None else weight.sum()
        g = _reduction_scale(grad_output, ctx.reduction, count)
        if needs_input or needs_target:
            grad_loss = g * slope(diff) if weight is None else g * slope(diff) * weight
            grad_diff = grad_loss if grad_diff is None else grad_diff + grad_loss
        if needs_weight:
            grad_weight = g * (error(diff) - loss) if ctx.reduction == "mean" else g * error(diff)
    grad_input = grad_diff if needs_input else None
    grad_target = -grad_diff if needs_target and grad_diff is not None else None
    return grad_input, grad_target, grad_weight, None


def _twice(diff: Tensor) -> Tensor:
    """``∂(d²)/∂d = 2d``, the power rule."""
    return 2 * diff


class MAELossFunction(Function):
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
        diff = input - target
        return _weighted_reduce(diff.abs(), weight, reduction), diff

    setup_context = staticmethod(_pointwise_setup)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor | None, grad_diff: Tensor | None) -> tuple:
        return _pointwise_backward(ctx, grad_output, grad_diff, torch.sgn, torch.abs)


class MSELossFunction(Function):
    r"""Mean squared error, ``ℓᵢ = (ŷᵢ − yᵢ)²``, optionally weighted.

    Backward, by the power rule, with ``d = ŷ − y``::

        ∂C/∂ŷ = g ⊙ 2d             ∂C/∂y = −g ⊙ 2d

    Keeps only ``d`` for backward (torch's ``mse_loss`` keeps both ``ŷ`` and ``y``).
    """

    @staticmethod
    def forward(
        input: Tensor, target: Tensor, weight: Tensor | None, reduction: str
    ) -> tuple[Tensor, Tensor]:
        diff = input - target
        return _weighted_reduce(diff.pow(2), weight, reduction), diff

    setup_context = staticmethod(_pointwise_setup)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor | None, grad_diff: Tensor | None) -> tuple:
        return _pointwise_backward(ctx, grad_output, grad_diff, _twice, torch.square)


class BCELossFunction(Function):
    r"""Binary cross-entropy on probabilities, ``ℓᵢ = −wᵢ [yᵢ log ŷᵢ + (1 − yᵢ) log(1 − ŷᵢ)]``.

    Both logs are clamped at −100, as torch does, so ``ℓ`` stays finite at ``ŷ ∈ {0, 1}``. A
    weighted mean divides by ``N`` (torch's convention for BCE). Backward::

        ∂C/∂ŷ = g ⊙ w ⊙ (ŷ − y) / (ŷ(1 − ŷ))       (denominator floored at 1e-12)
        ∂C/∂y = g ⊙ w ⊙ (log(1 − ŷ) − log ŷ)

    ``weight`` is a constant rescaling (torch refuses a weight that requires grad).
    """

    @staticmethod
    def forward(input: Tensor, target: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
        log_p = torch.log(input).clamp_min(_LOG_FLOOR)
        log_q = torch.log1p(-input).clamp_min(_LOG_FLOOR)
        loss = -(target * log_p + (1 - target) * log_q)
        if weight is not None:
            loss = loss * weight
        return _reduce(loss, reduction)

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
            grad_input = g * (input - target) / (input * (1 - input)).clamp_min(_BCE_EPS)
        if needs_target:
            grad_target = g * (torch.log1p(-input) - torch.log(input))
        return grad_input, grad_target, None, None


class BCEWithLogitsLossFunction(Function):
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
            loss = torch.addcmul(_log1p_exp(input), target, input, value=-1)  # log(1 + eᶻ) − y z
        else:
            log_weight = 1 + (pos_weight - 1) * target
            loss = (1 - target) * input + log_weight * _log1p_exp(-input)
        if weight is not None:
            loss = loss * weight
        return _reduce(loss, reduction)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        input, target, weight, pos_weight, reduction = inputs
        ctx.reduction = reduction
        ctx.save_for_backward(input, target, weight, pos_weight)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        input, target, weight, pos_weight = ctx.saved_tensors
        needs_input, needs_target, _, _, _ = ctx.needs_input_grad
        grad_input = grad_target = None
        if needs_input and weight is None and pos_weight is None:  # the common case, 3 kernels
            scale = 1 / max(input.numel(), 1) if ctx.reduction == "mean" else 1  # ∂C/∂ℓᵢ
            error = torch.sigmoid(input) - target  # σ(z) − y
            grad_input = torch.addcmul(_constant(0.0, error), error, grad_output, value=scale)
            if not needs_target:
                return grad_input, None, None, None, None
        g = _reduction_scale(grad_output, ctx.reduction, input.numel())
        if weight is not None:
            g = g * weight
        if needs_input and grad_input is None:
            if pos_weight is None:
                grad_input = g * (torch.sigmoid(input) - target)  # σ(z) − y
            else:
                log_weight = 1 + (pos_weight - 1) * target
                grad_input = g * (log_weight * torch.sigmoid(input) - pos_weight * target)
        if needs_target:
            if pos_weight is None:
                grad_target = -g * input
            else:
                grad_target = g * ((pos_weight - 1) * _log1p_exp(-input) - input)
        return grad_input, grad_target, None, None, None
