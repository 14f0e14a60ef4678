"""Layer 2: the functional API, ``torch.nn.functional``'s signatures over gdtorch's Functions.

Each function checks its arguments, prepares dtypes the way torch does (autocast, promotion) and
calls the hand-written :mod:`gdtorch.autograd` Function. Stricter than torch only where torch
silently gives a wrong answer: input/target shapes that differ raise instead of broadcasting, and
BCE probabilities or targets outside [0, 1] and NaN targets raise. Those value checks read tensor
values (a device sync) and can be turned off with :func:`gdtorch.set_validation`; they are also
skipped while ``torch.compile`` traces and inside ``torch.func`` transforms, where data-dependent
errors cannot be raised.

Dtypes follow torch, pair by pair (``tests/reliability/test_dtypes.py`` walks every pair of
float16, bfloat16, float32, float64, int64 and bool): the same result dtype, or an error where
torch raises one. A refused dtype raises :class:`DtypeError`, a
``TypeError`` that is also the ``NotImplementedError``/``RuntimeError`` torch raises, naming the
argument, its dtype and what is allowed. Complex tensors: ``linear``, ``sigmoid``, ``tanh``,
``mlp`` (without ReLU) and ``l1_loss`` support them as torch does (Wirtinger gradients); ``relu``,
``mse_loss`` and both BCEs refuse them, since ``max(z, 0)`` needs an order and a squared error
or a log-likelihood of complex numbers is no real cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from gdtorch import _compat
from gdtorch._validation import DtypeError, validation_enabled
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
    "DtypeError",
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
_REAL_FLOATS = frozenset((torch.float16, torch.bfloat16, torch.float32, torch.float64))


# --------------------------------------------------------------------------- layers


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``z = a Wᵀ + b`` through :class:`~gdtorch.autograd.LinearFunction`.

    Under ``torch.autocast`` the floating-point operands are cast to the autocast dtype first, as
    torch does for ``linear``, and the gradient flows back through those casts to the float32
    parameters. Complex operands are supported (see :class:`~gdtorch.autograd.LinearFunction`)
    and, as in torch, left uncast.

    Args:
        input: activations ``a`` of shape ``(*, in_features)``.
        weight: ``W`` of shape ``(out_features, in_features)``.
        bias: ``b`` of shape ``(out_features,)``, or ``None``.
    """
    if _autocast_enabled(input):
        device_type = input.device.type
        dtype = torch.get_autocast_dtype(device_type)
        input, weight, bias = (_autocast_cast(t, dtype) for t in (input, weight, bias))
        with torch.autocast(device_type, enabled=False):
            return LinearFunction.apply(input, weight, bias)
    return LinearFunction.apply(input, weight, bias)


def sigmoid(input: Tensor) -> Tensor:
    """``σ(z) = 1 / (1 + e⁻ᶻ)`` through :class:`~gdtorch.autograd.SigmoidFunction`.

    Real or complex ``z``, as torch (the backward multiplies by the conjugate slope for complex).
    """
    return SigmoidFunction.apply(input)


def tanh(input: Tensor) -> Tensor:
    """``tanh(z)`` through :class:`~gdtorch.autograd.TanhFunction`.

    Real or complex ``z``, as torch (the backward multiplies by the conjugate slope for complex).
    """
    return TanhFunction.apply(input)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """``max(z, 0)`` through :class:`~gdtorch.autograd.ReLUFunction`.

    Args:
        input: pre-activations ``z``.
        inplace: accepted for signature compatibility with ``torch.nn.functional.relu``. The
            result is always a new tensor: the hand-written backward keeps a one-byte mask, so an
            in-place variant would save no memory for backward.

    Raises:
        DtypeError: ``input`` is complex: ``max(z, 0)`` needs an order, and torch refuses it too.
    """
    if input.is_complex():
        _refuse_complex_relu("relu", input)
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

    Complex networks are supported without ReLU (see :class:`~gdtorch.autograd.MLPFunction`).

    Raises:
        ValueError: the lists differ in length, an activation is unknown, or ``input`` is not
            a batch of rows.
        DtypeError: ``input`` is complex and an activation is ``"relu"``.
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
    if input.is_complex() and "relu" in activations:
        _refuse_complex_relu("mlp", input)
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

    ``input`` and ``target`` are promoted to their common dtype (``torch.result_type``), as in
    torch; complex tensors are supported (``|ŷ − y|`` is real), as in torch.

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
        DtypeError: ``input`` or ``target`` is a bool tensor (``ŷ − y`` is not defined for
            bools; torch refuses them too).
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
    """Mean squared error ``C = mean (ŷ − y)²``. Arguments and errors as :func:`l1_loss`, and:

    Raises:
        DtypeError: ``input`` or ``target`` is complex (``(ŷ − y)²`` would be a complex number,
            not a cost to minimise; torch raises too), or, without ``weight``, neither is a
            floating-point tensor (torch: ``"mse_cpu" not implemented for 'Long'``).
    """
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

    Dtypes as torch: ``input`` and ``target`` share one real floating-point dtype, which the loss
    takes; ``weight`` is cast to it.

    Raises:
        ValueError: shapes differ, ``reduction`` is unknown, or ``input`` or ``target`` holds
            a value outside [0, 1] or NaN.
        DtypeError: ``input`` or ``target`` is not a real floating-point tensor, or their dtypes
            differ (torch: ``Found dtype Double but expected Float``). A ``TypeError``.
    """
    name = "binary_cross_entropy"
    reduction = _check_reduction(reduction, size_average, reduce)
    input, target, weight, _ = _prepare_bce(name, input, target, weight, None, same_dtype=True)
    if weight is not None and weight.dtype != input.dtype:
        weight = weight.to(input.dtype)  # torch's loss keeps the input's dtype
    if _checking_values(input):
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

    Dtypes as torch: ``input`` and ``target`` may be any two real floating-point dtypes, and the
    loss has ``target``'s dtype (torch builds it in place from ``1 − y``), e.g. float32 for
    float16 logits and float32 targets. gdtorch computes in the wider of the two dtypes, with
    ``weight`` and ``pos_weight`` cast to it, and rounds the loss to ``target``'s dtype.

    Raises:
        ValueError: shapes differ, ``reduction`` is unknown, or ``target`` holds a value
            outside [0, 1] or NaN.
        DtypeError: ``input`` or ``target`` is not a real floating-point tensor (complex
            included: torch would return a complex "loss" for a complex target). A
            ``TypeError``.
    """
    name = "binary_cross_entropy_with_logits"
    reduction = _check_reduction(reduction, size_average, reduce)
    input, target, weight, pos_weight = _prepare_bce(name, input, target, weight, pos_weight)
    loss_dtype = target.dtype  # torch's loss has the target's dtype
    promoted = input.dtype != loss_dtype
    if promoted:
        dtype = torch.promote_types(input.dtype, loss_dtype)
        input, target = input.to(dtype), target.to(dtype)
    if weight is not None and weight.dtype != input.dtype:
        weight = weight.to(input.dtype)
    if pos_weight is not None and pos_weight.dtype != input.dtype:
        pos_weight = pos_weight.to(input.dtype)
    loss = BCEWithLogitsLossFunction.apply(input, target, weight, pos_weight, reduction)
    return loss.to(loss_dtype) if promoted else loss


# --------------------------------------------------------------------------- argument checks


def _checking_values(*tensors: Tensor) -> bool:
    """Whether to run checks that read the values of ``tensors`` (each costs a device sync).

    Off when switched off, inside ``torch.compile`` tracing and ``torch.func`` transforms (vmap,
    grad), where data-dependent Python control flow cannot run, and for meta tensors, which
    have shapes and dtypes but no values (torch's losses compute their meta result then too).
    """
    if not validation_enabled() or torch.compiler.is_compiling():
        return False
    if _compat.functorch_transforms_active():
        return False
    for tensor in tensors:
        if tensor.is_meta:
            return False
    return True


def _refuse_complex_relu(name: str, input: Tensor) -> None:
    raise DtypeError(
        f"{name}: input has dtype {input.dtype}, and ReLU's max(z, 0) needs an order that "
        f"complex numbers lack (torch: clamp is not supported for complex types); allowed: real "
        f"floating-point tensors, or sigmoid/tanh, which take complex ones"
    )


def _check_reduction(reduction: str, size_average: bool | None, reduce: bool | None) -> str:
    if size_average is not None or reduce is not None:
        reduction = _compat.legacy_reduction(size_average, reduce)
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

    :func:`gdtorch._compat.any_autocast_enabled` answers the common case, autocast off
    everywhere, first.
    """
    return _compat.any_autocast_enabled() and torch.is_autocast_enabled(tensor.device.type)


def _autocast_cast(tensor: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """``tensor`` in ``dtype`` if it is a floating-point tensor: what autocast casts."""
    if tensor is None or not tensor.is_floating_point() or tensor.dtype == dtype:
        return tensor
    return tensor.to(dtype)


def _autocast_to_float32(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """Under autocast, losses run in float32, as torch's autocast does for its losses.

    Like autocast, it casts floating-point tensors only: integer, bool and complex ones keep
    their dtype (and meet the same dtype rules as outside autocast).
    """
    if not _autocast_enabled(tensors[0]):
        return tensors
    return tuple(_autocast_cast(t, torch.float32) for t in tensors)


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
    if _checking_values(target) and target.is_floating_point():
        _check_no_nan_target(name, target)
    input, target, weight = _autocast_to_float32(input, target, weight)
    if input.dtype != target.dtype or input.dtype not in _REAL_FLOATS:
        input, target = _promote_pointwise(name, input, target, weight)
    return input, target, weight


def _promote_pointwise(
    name: str, input: Tensor, target: Tensor, weight: Tensor | None
) -> tuple[Tensor, Tensor]:
    """torch's dtype rules for MAE and MSE, off the common path (two equal real float dtypes).

    Both are promoted to ``torch.result_type(input, target)``. Refused, as torch refuses them:
    a bool operand where torch subtracts ``ŷ − y`` itself (``l1_loss``, weighted ``mse_loss``);
    an unweighted ``mse_loss`` with no floating-point operand (torch's kernel takes floats
    only). Refused by gdtorch alone: complex ``mse_loss`` (torch raises without ``weight`` but
    returns a complex "loss" with one).
    """
    for argument, tensor in (("input", input), ("target", target)):
        if tensor.dtype == torch.bool and (name == "l1_loss" or weight is not None):
            raise DtypeError(
                f"{name}: {argument} has dtype torch.bool, and ŷ − y is not defined for bool "
                f"tensors (torch: Subtraction, the `-` operator, with a bool tensor is not "
                f"supported); allowed: floating-point, complex or integer tensors. Convert it "
                f"with {argument}.float()"
            )
    dtype = torch.result_type(input, target)
    if name == "mse_loss" and dtype.is_complex:
        raise DtypeError(
            f"{name}: input has dtype {input.dtype} and target {target.dtype}: the squared "
            f"error (ŷ − y)² of complex numbers is itself complex, not a cost to minimise (torch's "
            f'unweighted mse_loss refuses it too: "mse" not implemented for {dtype}). Allowed: '
            f"real dtypes; for complex data use l1_loss, whose |ŷ − y| is real"
        )
    if name == "mse_loss" and weight is None and not dtype.is_floating_point:
        raise DtypeError(
            f"{name}: input has dtype {input.dtype} and target {target.dtype}, whose common "
            f'dtype {dtype} is not floating point (torch: "mse" not implemented for '
            f"{dtype}); allowed: a floating-point input or target. Convert with input.float()"
        )
    return input.to(dtype), target.to(dtype)


def _prepare_bce(
    name: str,
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    pos_weight: Tensor | None,
    same_dtype: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Checks shared by both BCE forms: shapes, dtypes, target range, constant weights.

    Dtypes are checked after autocast's casts, and only off the common path (two equal real
    float dtypes). ``same_dtype``: ``input`` and ``target`` must share their dtype (BCE on
    probabilities, as torch's kernel demands).
    """
    _check_same_shape(name, input, target)
    input, target, weight, pos_weight = _autocast_to_float32(input, target, weight, pos_weight)
    if input.dtype != target.dtype or input.dtype not in _REAL_FLOATS:
        _check_bce_dtypes(name, input, target, same_dtype)
    if weight is not None or pos_weight is not None:
        _check_constant_weights(name, input, weight, pos_weight)
    if _checking_values(target):
        _check_in_unit_interval(name, "target", target, "targets are probabilities")
    return input, target, weight, pos_weight


def _check_bce_dtypes(name: str, input: Tensor, target: Tensor, same_dtype: bool) -> None:
    """Refuse what torch refuses: a non-float ``input`` or ``target``, or differing dtypes where
    ``same_dtype``. torch raises ``NotImplementedError`` or ``RuntimeError`` for these (its
    wording is quoted); :class:`DtypeError` is both, and a ``TypeError``.
    """
    for argument, tensor in (("input", input), ("target", target)):
        if not tensor.is_floating_point():
            what = "logits" if argument == "input" and not same_dtype else "values in [0, 1]"
            fix = f"convert it with {argument}.float()"
            if tensor.is_complex():
                fix = "complex numbers are not allowed (BCE is a real log-likelihood)"
            raise DtypeError(
                f"{name}: {argument} must be a floating-point tensor of {what}, got dtype "
                f"{tensor.dtype}; {fix}"
            )
    if same_dtype and target.dtype != input.dtype:
        raise DtypeError(
            f"{name}: target has dtype {target.dtype} but input has dtype {input.dtype}; they "
            f"must be the same, as in torch (Found dtype {target.dtype} but expected "
            f"{input.dtype}). Convert with target.to(input.dtype)"
        )


def _check_constant_weights(
    name: str, input: Tensor, weight: Tensor | None, pos_weight: Tensor | None
) -> None:
    """BCE's ``weight`` and ``pos_weight`` take no gradient, broadcast to ``input`` and are real
    numbers (not bool for ``pos_weight``, whose ``p − 1`` torch refuses for bools)."""
    for argument, extra in (("weight", weight), ("pos_weight", pos_weight)):
        if extra is None:
            continue
        if extra.is_complex() or (argument == "pos_weight" and extra.dtype == torch.bool):
            raise DtypeError(
                f"{name}: {argument} has dtype {extra.dtype}; allowed: real floating-point or "
                f"integer tensors{'' if argument == 'pos_weight' else ' or bool masks'}"
            )
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
