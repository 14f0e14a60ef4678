"""Layer 2: the functional API, ``torch.nn.functional``'s signatures over gdtorch's Functions.

Each function checks its arguments, prepares dtypes the way torch does (autocast, promotion) and
calls the hand-written :mod:`gdtorch.autograd` Function. Stricter than torch only where torch
silently gives a wrong answer: input/target shapes that differ raise instead of broadcasting, and
BCE probabilities or targets outside [0, 1] and NaN targets raise. Those value checks read tensor
values (a device sync) and can be turned off with :func:`gdtorch.set_validation`; they are also
skipped while ``torch.compile`` traces and inside ``torch.func`` transforms, where data-dependent
errors cannot be raised.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import _reduction

from gdtorch._validation import validation_enabled
from gdtorch.autograd import (
    BCELossFunction,
    BCEWithLogitsLossFunction,
    LinearFunction,
    MAELossFunction,
    MLPFunction,
    MSELossFunction,
    ReLUFunction,
    SigmoidFunction,
    TanhFunction,
)
from gdtorch.autograd.mlp import ACTIVATIONS

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "l1_loss",
    "linear",
    "mae_loss",
    "mlp",
    "mse_loss",
    "relu",
    "sigmoid",
    "tanh",
]

_REDUCTIONS = ("none", "mean", "sum")


# --------------------------------------------------------------------------- layers


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``z = a Wᵀ + b`` through :class:`~gdtorch.autograd.LinearFunction`.

    Under ``torch.autocast`` the operands are cast to the autocast dtype first, as torch does
    for ``linear``, and the gradient flows back through those casts to the float32 parameters.

    Args:
        input: activations ``a`` of shape ``(*, in_features)``.
        weight: ``W`` of shape ``(out_features, in_features)``.
        bias: ``b`` of shape ``(out_features,)``, or ``None``.
    """
    if _autocast_enabled(input):
        device_type = input.device.type
        dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            return LinearFunction.apply(
                input.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)
            )
    return LinearFunction.apply(input, weight, bias)


def sigmoid(input: Tensor) -> Tensor:
    """``σ(z) = 1 / (1 + e⁻ᶻ)`` through :class:`~gdtorch.autograd.SigmoidFunction`."""
    return SigmoidFunction.apply(input)


def tanh(input: Tensor) -> Tensor:
    """``tanh(z)`` through :class:`~gdtorch.autograd.TanhFunction`."""
    return TanhFunction.apply(input)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """``max(z, 0)`` through :class:`~gdtorch.autograd.ReLUFunction`.

    Args:
        input: pre-activations ``z``.
        inplace: accepted for signature compatibility with ``torch.nn.functional.relu``. The
            result is always a new tensor: the hand-written backward keeps a one-byte mask, so an
            in-place variant would save no memory for backward.
    """
    output, _ = ReLUFunction.apply(input)
    return output


def mlp(
    input: Tensor,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    activations: Sequence[str | None],
) -> Tensor:
    """A fully connected network in one hand-written forward and backward pass.

    ``a⁽ˡ⁾ = g⁽ˡ⁾(a⁽ˡ⁻¹⁾ W⁽ˡ⁾ᵀ + b⁽ˡ⁾)`` for each layer, through
    :class:`~gdtorch.autograd.MLPFunction`: one autograd node for the whole network instead of
    one per layer, with the same result as chaining :func:`linear` and the activations.

    Args:
        input: a batch ``x`` of shape ``(N, n⁽⁰⁾)``.
        weights: ``W⁽ˡ⁾`` of shape ``(n⁽ˡ⁾, n⁽ˡ⁻¹⁾)``, one per layer.
        biases: ``b⁽ˡ⁾`` of shape ``(n⁽ˡ⁾,)``, one per layer.
        activations: ``"relu"``, ``"sigmoid"``, ``"tanh"`` or ``None``, one per layer.

    Raises:
        ValueError: the lists differ in length, an activation is unknown, or ``input`` is not
            a batch of rows.
    """
    if not len(weights) == len(biases) == len(activations) > 0:
        raise ValueError(
            f"mlp: weights, biases and activations need one entry per layer, got "
            f"{len(weights)}, {len(biases)} and {len(activations)}"
        )
    unknown = [a for a in activations if a is not None and a not in ACTIVATIONS]
    if unknown:
        raise ValueError(
            f"mlp: unknown activation {unknown[0]!r}; expected one of {sorted(ACTIVATIONS)} or None"
        )
    if input.dim() != 2:
        raise ValueError(f"mlp: input must have shape (N, features), got {tuple(input.shape)}")
    params = [p for pair in zip(weights, biases, strict=True) for p in pair]
    return MLPFunction.apply(input, tuple(activations), *params)[-1]


# --------------------------------------------------------------------------- losses


def l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """Mean absolute error ``C = mean |ŷ − y|`` (torch's ``l1_loss``; the tutorial's MAE).

    Args:
        input: predictions ``ŷ``.
        target: targets ``y``, the same shape as ``input``.
        size_average: deprecated, as in torch (use ``reduction``).
        reduce: deprecated, as in torch (use ``reduction``).
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        weight: optional per-element weights, the same shape as ``input``; a weighted mean
            divides by their sum.

    Raises:
        ValueError: shapes differ, ``reduction`` is unknown, or ``target`` holds NaN.
    """
    reduction = _check_reduction(reduction, size_average, reduce)
    input, target, weight = _prepare_pointwise("l1_loss", input, target, weight)
    loss, _ = MAELossFunction.apply(input, target, weight, reduction)
    return loss


mae_loss = l1_loss


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """Mean squared error ``C = mean (ŷ − y)²``. Arguments and errors as :func:`l1_loss`."""
    reduction = _check_reduction(reduction, size_average, reduce)
    input, target, weight = _prepare_pointwise("mse_loss", input, target, weight)
    loss, _ = MSELossFunction.apply(input, target, weight, reduction)
    return loss


def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy ``C = −mean [y log ŷ + (1 − y) log(1 − ŷ)]`` on probabilities.

    Args:
        input: predicted probabilities ``ŷ`` in [0, 1].
        target: targets ``y`` in [0, 1], the same shape as ``input``.
        weight: optional rescaling broadcastable to ``input``'s shape (not differentiable).
        size_average: deprecated, as in torch (use ``reduction``).
        reduce: deprecated, as in torch (use ``reduction``).
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Raises:
        ValueError: shapes differ, ``reduction`` is unknown, or ``input`` or ``target`` holds
            a value outside [0, 1] or NaN.
        TypeError: ``target`` is not a floating-point tensor.
    """
    name = "binary_cross_entropy"
    reduction = _check_reduction(reduction, size_average, reduce)
    input, target, weight, _ = _prepare_bce(name, input, target, weight, None)
    if _checking_values():
        _check_in_unit_interval(
            name,
            "input",
            input,
            "probabilities; pass logits to binary_cross_entropy_with_logits instead",
        )
    return BCELossFunction.apply(input, target, weight, reduction)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """Binary cross-entropy on logits, ``C = BCE(σ(z), y)``, computed stably.

    Args:
        input: logits ``z`` (any real values).
        target: targets ``y`` in [0, 1], the same shape as ``input``.
        weight: optional rescaling broadcastable to ``input``'s shape (not differentiable).
        size_average: deprecated, as in torch (use ``reduction``).
        reduce: deprecated, as in torch (use ``reduction``).
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        pos_weight: optional weight of the positive class, broadcastable to ``input``'s shape
            (one value per class along the last dimension).

    Raises:
        ValueError: shapes differ, ``reduction`` is unknown, or ``target`` holds a value
            outside [0, 1] or NaN.
        TypeError: ``target`` is not a floating-point tensor.
    """
    name = "binary_cross_entropy_with_logits"
    reduction = _check_reduction(reduction, size_average, reduce)
    input, target, weight, pos_weight = _prepare_bce(name, input, target, weight, pos_weight)
    return BCEWithLogitsLossFunction.apply(input, target, weight, pos_weight, reduction)


# --------------------------------------------------------------------------- argument checks


def _checking_values() -> bool:
    """Whether to run checks that read tensor values (each costs a device sync).

    Off when switched off, and inside ``torch.compile`` tracing and ``torch.func`` transforms
    (vmap, grad), where data-dependent Python control flow cannot run.
    """
    return (
        validation_enabled()
        and not torch.compiler.is_compiling()
        and not torch._C._are_functorch_transforms_active()
    )


def _check_reduction(reduction: str, size_average: bool | None, reduce: bool | None) -> str:
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"{reduction} is not a valid value for reduction: got reduction={reduction!r}, "
            f"expected one of {', '.join(repr(r) for r in _REDUCTIONS)}"
        )
    return reduction


def _check_same_shape(name: str, input: Tensor, target: Tensor) -> None:
    for argument, value in (("input", input), ("target", target)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name}: {argument} must be a Tensor, got {type(value).__name__}")
    if input.shape != target.shape:
        raise ValueError(
            f"{name}: Using a target size ({target.size()}) that is different to the input "
            f"size ({input.size()}) is not allowed: torch would broadcast them and silently "
            f"compute the wrong loss. Give target the shape {tuple(input.shape)}, "
            f"e.g. target.view_as(input)."
        )


def _check_no_nan_target(name: str, target: Tensor) -> None:
    if torch.isnan(target).any():
        raise ValueError(f"{name}: target contains NaN; every target must be a number")


def _check_in_unit_interval(name: str, argument: str, tensor: Tensor, what: str) -> None:
    tensor = tensor.detach() if tensor.requires_grad else tensor
    if tensor.numel() == 1:  # one value (stochastic GD): read it, one device sync
        if 0 <= tensor.item() <= 1:  # False for NaN too
            return
    elif torch.equal(tensor.clamp(0, 1), tensor):  # one device sync; NaN ≠ NaN fails too
        return
    low, high = (bound.item() for bound in torch.aminmax(tensor))
    raise ValueError(
        f"{name}: all elements of {argument} should be between 0 and 1 ({what}); "
        f"got values from {low} to {high}"
    )


def _broadcasts_to(shape: torch.Size, target_shape: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, target_shape) == target_shape
    except RuntimeError:
        return False


def _autocast_enabled(tensor: Tensor) -> bool:
    """Whether autocast is on for ``tensor``'s device.

    ``torch._C._is_any_autocast_enabled()`` (as ``torch.nn.RNN`` uses) answers the common case,
    autocast off everywhere, in a tenth of the time of ``torch.is_autocast_enabled(device)``.
    """
    return torch._C._is_any_autocast_enabled() and torch.is_autocast_enabled(tensor.device.type)


def _autocast_to_float32(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """Under autocast, losses run in float32, as torch's autocast does for its losses."""
    if not _autocast_enabled(tensors[0]):
        return tensors
    return tuple(None if t is None else t.float() for t in tensors)


def _prepare_pointwise(
    name: str, input: Tensor, target: Tensor, weight: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Checks for MAE/MSE, then torch's type promotion of ``input`` and ``target``."""
    _check_same_shape(name, input, target)
    if weight is not None and weight.shape != input.shape:
        raise ValueError(
            f"{name}: Weights and input must have the same size: got weight of shape "
            f"{tuple(weight.shape)} for input of shape {tuple(input.shape)}"
        )
    if _checking_values() and target.is_floating_point():
        _check_no_nan_target(name, target)
    input, target, weight = _autocast_to_float32(input, target, weight)
    if input.dtype != target.dtype:
        dtype = torch.result_type(input, target)
        input, target = input.to(dtype), target.to(dtype)
    return input, target, weight


def _prepare_bce(
    name: str, input: Tensor, target: Tensor, weight: Tensor | None, pos_weight: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Checks shared by both BCE forms: shapes, target dtype and range, constant weights."""
    _check_same_shape(name, input, target)
    if not target.is_floating_point():
        raise TypeError(
            f"{name}: target must be a floating-point tensor of values in [0, 1], got dtype "
            f"{target.dtype}; convert it with target.float()"
        )
    if weight is not None or pos_weight is not None:
        _check_constant_weights(name, input, weight, pos_weight)
    if _checking_values():
        _check_in_unit_interval(name, "target", target, "targets are probabilities")
    input, target, weight, pos_weight = _autocast_to_float32(input, target, weight, pos_weight)
    if target.dtype != input.dtype:
        target = target.to(input.dtype)
    return input, target, weight, pos_weight


def _check_constant_weights(
    name: str, input: Tensor, weight: Tensor | None, pos_weight: Tensor | None
) -> None:
    """BCE's ``weight`` and ``pos_weight`` take no gradient and broadcast to ``input``."""
    for argument, extra in (("weight", weight), ("pos_weight", pos_weight)):
        if extra is None:
            continue
        if extra.requires_grad:
            raise RuntimeError(
                f"The function '{name}' is not differentiable with respect to argument "
                f"'{argument}'. This input cannot have requires_grad True."
            )
        if not _broadcasts_to(extra.shape, input.shape):
            raise ValueError(
                f"{name}: {argument} of shape {tuple(extra.shape)} must be broadcastable to "
                f"the input shape {tuple(input.shape)}"
            )
