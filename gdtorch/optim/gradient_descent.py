"""Gradient descent, ``θ ← θ − η ∇C(θ)``, as a from-scratch :class:`torch.optim.Optimizer`.

:class:`GradientDescent` computes, step for step and bit for bit, what :class:`torch.optim.SGD`
computes (weight decay, momentum, dampening, Nesterov, maximize), so it can replace it by changing
one line. The arithmetic lives in :func:`gradient_descent`, a functional form, with a readable
single-tensor loop and a multi-tensor path on ``torch._foreach_*`` kernels; the class runs the same
arithmetic once per parameter group.

Hyper-parameters are range-checked where they enter (the constructor) and again at every
:meth:`GradientDescent.step`, where a group is re-checked only when one of its values changed: a
learning rate set by ``load_state_dict``, a scheduler or an assignment to ``param_groups`` is
checked before it is used.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from gdtorch import _compat
from gdtorch.optim import _fast

__all__ = ["GradientDescent", "gradient_descent"]

# The constructor's defaults for every option but ``lr``; ``__setstate__`` fills them into state
# saved before an option existed.
_OPTION_DEFAULTS: dict[str, Any] = {
    "momentum": 0,
    "dampening": 0,
    "weight_decay": 0,
    "nesterov": False,
    "maximize": False,
    "foreach": None,
}

# The hyper-parameters whose range is checked, as named in a parameter group.
_CHECKED_OPTIONS = ("lr", "momentum", "dampening", "weight_decay", "nesterov")
# How torch.optim.SGD's messages start for each (it has none for dampening; this follows suit).
_WORDING = {
    "lr": "Invalid learning rate",
    "momentum": "Invalid momentum value",
    "weight_decay": "Invalid weight_decay value",
    "dampening": "Invalid dampening value",
}


def _invalid_option(
    lr: float | Tensor, momentum: float, dampening: float, weight_decay: float, nesterov: bool
) -> tuple[str, str] | None:
    """Find the first out-of-range hyper-parameter.

    ``torch.optim.SGD``'s checks come first, in its order and with its wording, so that wherever
    ``SGD`` refuses a set of values (negatives, ``-inf`` included) the message is its own. Then
    NaN and ``+inf``, which ``SGD`` accepts silently, are refused for ``lr``, ``momentum``,
    ``weight_decay`` and ``dampening``, with the allowed range in the message. A finite
    ``dampening`` of any sign is accepted, as in ``SGD``.

    Args:
        lr: The learning rate η, a number or a 1-element tensor.
        momentum: The momentum factor μ.
        dampening: The dampening τ.
        weight_decay: The L2 penalty λ.
        nesterov: Whether Nesterov momentum is on.

    Returns:
        ``(name, message)`` for the first invalid option, or ``None`` when all are valid.
    """
    # torch.optim.SGD's checks, in its order and with its words.
    if isinstance(lr, Tensor) and lr.numel() != 1:
        return "lr", "Tensor lr must be 1-element"
    if lr < 0.0:
        return "lr", f"Invalid learning rate: {lr}"
    if momentum < 0.0:
        return "momentum", f"Invalid momentum value: {momentum}"
    if weight_decay < 0.0:
        return "weight_decay", f"Invalid weight_decay value: {weight_decay}"
    if nesterov and (momentum <= 0 or dampening != 0):
        return "nesterov", "Nesterov momentum requires a momentum and zero dampening"
    # gdtorch's: NaN and +inf, which SGD accepts.
    for name, value, allowed in (
        ("lr", lr, "lr must be a finite number >= 0"),
        ("momentum", momentum, "momentum must be a finite number >= 0"),
        ("weight_decay", weight_decay, "weight_decay must be a finite number >= 0"),
        ("dampening", dampening, "dampening must be a finite number"),
    ):
        if not math.isfinite(value):
            return name, f"{_WORDING[name]}: {float(value)} ({allowed})"
    return None


_checked_options = operator.itemgetter(*_CHECKED_OPTIONS)  # a group's checked options, in order
_NUMBERS = frozenset((float, int, bool))


def _all_numbers(values: tuple) -> bool:
    """Whether every value is a Python number, which stands for itself as a marker."""
    return _NUMBERS.issuperset(map(type, values))


def _unchanged_marker(value: Any) -> Any:
    """What stands for ``value`` when a step compares a group's options with those last checked.

    A number stands for itself. A tensor (e.g. a tensor ``lr``) stands for its identity and its
    version counter, since schedulers change it in place with ``fill_``; comparing the marker
    never reads the tensor's value, so it costs no device sync. An inference tensor, which has no
    version counter, gets a marker equal to nothing, so it is checked at every step.

    Args:
        value: One of a group's checked options.

    Returns:
        The value itself, ``(id, version)`` for a tensor, or a fresh ``object()``.
    """
    if isinstance(value, Tensor):
        try:
            return (id(value), value._version)
        except RuntimeError:
            return object()
    return value


class GradientDescent(Optimizer):
    """Gradient descent, ``θ ← θ − η ∇C(θ)``, optionally with weight decay and momentum.

    A drop-in replacement for :class:`torch.optim.SGD`: the same constructor, defaults, validation
    messages, per-group options, ``state_dict`` layout and closure semantics, and the same update,
    so every learning-rate scheduler, Lightning, and state saved from ``SGD`` work unchanged.
    Whether the gradient comes from the whole data set, one example or a mini-batch decides whether
    this is batch, stochastic or mini-batch gradient descent; the update is the same.

    With θ the parameters, η the learning rate, ∇C(θ) the gradient of the cost, λ the weight decay,
    μ the momentum, τ the dampening and b the momentum buffer, one :meth:`step` is::

        g ← −∇C(θ) if maximize else ∇C(θ)
        if λ ≠ 0:
            g ← g + λ θ
        if μ ≠ 0:
            b ← g (a detached copy)            on the first step
            b ← μ b + (1 − τ) g                on every later step
            g ← g + μ b if nesterov else b
        θ ← θ − η g

    With the defaults (λ = μ = 0) this is the tutorial's rule ``θ ← θ − η ∇C(θ)``.

    Like ``SGD``, the first momentum buffer is the gradient itself (not zeros, so dampening first
    acts on the second step), and η multiplies the whole buffer rather than each gradient as it is
    added. Parameters whose ``.grad`` is ``None`` are skipped and keep their buffer.

    Gradients are read, never written (``SGD``'s multi-tensor Nesterov path overwrites ``p.grad``
    with the update direction). Sparse gradients (e.g. from ``nn.Embedding(sparse=True)``) are
    supported as in ``SGD``, except together with weight decay, which raises a ``RuntimeError``
    naming the fix (``SGD`` fails there with a lower-level error). ``SGD``'s ``fused`` and
    ``differentiable`` options are not offered.

    Args:
        params: The parameters to optimise: an iterable of tensors, of ``(name, tensor)`` pairs, or
            of dicts defining parameter groups, whose keys override the options below per group.
        lr: The learning rate η: a float, or a 1-element tensor (read once per step). Must be
            finite and ``>= 0``.
        momentum: The momentum factor μ (finite, ``>= 0``); 0 turns momentum off.
        dampening: The dampening τ applied to each new gradient entering the momentum buffer
            (finite).
        weight_decay: The L2 penalty λ (finite, ``>= 0``), added to the gradient as ``λ θ``.
        nesterov: Use Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
        maximize: Climb the cost instead of descending it (uses ``−∇C(θ)``).
        foreach: Use the multi-tensor ``torch._foreach_*`` path. ``None`` chooses as
            ``torch.optim.SGD`` does: multi-tensor when every parameter is on an accelerator that
            supports it (e.g. CUDA), single-tensor otherwise.

    Raises:
        ValueError: If a hyper-parameter is out of range, with ``torch.optim.SGD``'s wording: a
            negative ``lr``, ``momentum`` or ``weight_decay``, or Nesterov without momentum or
            with dampening. A NaN or infinite value of any of ``lr``, ``momentum``, ``dampening``
            and ``weight_decay`` is refused too (``SGD`` accepts those silently). The constructor
            checks its arguments; :meth:`step` checks every group again, so a value that arrives
            later (``load_state_dict``, ``add_param_group``, a scheduler, an assignment to
            ``param_groups``) is refused before it is used, with the group and option named.

    Example:
        >>> model = torch.nn.Linear(3, 1)
        >>> optimizer = GradientDescent(model.parameters(), lr=0.1, momentum=0.9)
        >>> optimizer.zero_grad()
        >>> model(torch.ones(2, 3)).pow(2).mean().backward()
        >>> optimizer.step()
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        problem = _invalid_option(lr, momentum, dampening, weight_decay, nesterov)
        if problem is not None:
            raise ValueError(problem[1])
        # Per group index: the markers of the options last found valid there, and the values
        # themselves (held so that a tensor's id is not reused while its marker is kept).
        self._checked_options: list[tuple[tuple, tuple]] = []
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    # torch's step and zero_grad bookkeeping, skipped when nothing would see it (optim/_fast.py)
    profile_hook_step = staticmethod(_fast.profile_hook_step)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient, as ``torch.optim.Optimizer.zero_grad`` does.

        Args:
            set_to_none: Set each ``.grad`` to ``None`` (the default) rather than to zeros.
        """
        _fast.zero_grad(self, set_to_none)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore from a pickle or ``load_state_dict``, filling in options missing from old state.

        Args:
            state: The optimizer's ``__dict__`` entries (``state``, ``param_groups`` and, when
                unpickling, ``defaults``).
        """
        super().__setstate__(state)
        for options in (self.defaults, *self.param_groups):
            for key, value in _OPTION_DEFAULTS.items():
                options.setdefault(key, value)
        self._checked_options = []  # new groups: the next step checks them all

    def _check_param_groups(self) -> None:
        """Refuse an out-of-range hyper-parameter in any group before a step uses it.

        A group is checked only when one of its options differs from those last found valid at
        its index (compared through :func:`_unchanged_marker`), so a steady run pays a few
        comparisons per group and step, and a scheduler one check per group per change.

        Raises:
            ValueError: With the constructor's wording, followed by the group and option, e.g.
                ``Invalid learning rate: -0.1 in param_groups[0]['lr'] at step()``.
        """
        checked = self._checked_options
        for index, group in enumerate(self.param_groups):
            values = _checked_options(group)
            markers = values if _all_numbers(values) else tuple(map(_unchanged_marker, values))
            if index < len(checked) and checked[index][0] == markers:
                continue
            problem = _invalid_option(*values)
            if problem is not None:
                name, message = problem
                where = f"in param_groups[{index}]['{name}'] at step()"
                if name == "nesterov":
                    where += f" (momentum={group['momentum']}, dampening={group['dampening']})"
                raise ValueError(f"{message} {where}")
            if index < len(checked):
                checked[index] = (markers, values)
            else:
                checked.append((markers, values))

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        momentum_buffers: list[Tensor | None],
    ) -> None:
        """Collect a group's parameters that have a gradient, their gradients and buffers.

        Args:
            group: The parameter group.
            params: Filled with the parameters whose ``.grad`` is not ``None``.
            grads: Filled with those gradients.
            momentum_buffers: Filled with their momentum buffers (``None`` before the first
                update), only when the group uses momentum.
        """
        uses_momentum = group["momentum"] != 0
        for p in group["params"]:
            grad = p.grad
            if grad is not None:
                params.append(p)
                grads.append(grad)
                if uses_momentum:
                    momentum_buffers.append(self.state[p].get("momentum_buffer"))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Take one gradient-descent step on every parameter group.

        Args:
            closure: Optional. Re-evaluates the model and returns the loss; it is called with
                gradients enabled (even when ``step`` is called under ``torch.no_grad()``) before
                the update, and should call ``backward``.

        Returns:
            The closure's return value, or ``None`` without a closure.

        Raises:
            ValueError: If a group's hyper-parameter is out of range (see the class). Every group
                is checked, after the closure and before any update, so a refused step changes no
                parameter and no momentum buffer.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        self._check_param_groups()
        with torch.no_grad():
            for group in self.param_groups:
                params: list[Tensor] = []
                grads: list[Tensor] = []
                momentum_buffers: list[Tensor | None] = []
                self._init_group(group, params, grads, momentum_buffers)

                _gradient_descent_unchecked(
                    params,
                    grads,
                    momentum_buffers,
                    lr=group["lr"],
                    weight_decay=group["weight_decay"],
                    momentum=group["momentum"],
                    dampening=group["dampening"],
                    nesterov=group["nesterov"],
                    maximize=group["maximize"],
                    foreach=group["foreach"],
                )

                if group["momentum"] != 0:
                    for p, momentum_buffer in zip(params, momentum_buffers, strict=True):
                        self.state[p]["momentum_buffer"] = momentum_buffer

        return loss


def gradient_descent(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
    foreach: bool | None = None,
) -> None:
    """Apply one gradient-descent update to ``params`` in place (see :class:`GradientDescent`).

    The gradients are read, never written. Call it under ``torch.no_grad()``.

    Unlike ``torch.optim.sgd.sgd``, which checks nothing, it range-checks the hyper-parameters on
    every call, with :class:`GradientDescent`'s rules and wording. That costs a few comparisons of
    numbers: a tensor ``lr`` is read once per call, which the update needs anyway.

    Args:
        params: The parameters to update.
        grads: Their gradients ∇C(θ), one per parameter, dense or sparse.
        momentum_buffers: One momentum buffer b per parameter, ``None`` where there is none yet;
            new buffers are written into the list in place. Unused (may be empty) when
            ``momentum`` is 0.
        lr: The learning rate η, a float or a 1-element tensor.
        weight_decay: The L2 penalty λ.
        momentum: The momentum factor μ.
        dampening: The dampening τ.
        nesterov: Use Nesterov momentum.
        maximize: Climb the cost instead of descending it.
        foreach: Use the multi-tensor ``torch._foreach_*`` path; ``None`` chooses as
            ``torch.optim.SGD`` does.

    Raises:
        ValueError: If a hyper-parameter is out of range, worded as by :class:`GradientDescent`'s
            constructor.
        RuntimeError: If ``weight_decay`` is non-zero and a gradient is sparse.
    """
    if isinstance(lr, Tensor) and lr.numel() == 1:
        lr = lr.item()  # one read per call, for the check and the update
    problem = _invalid_option(lr, momentum, dampening, weight_decay, nesterov)
    if problem is not None:
        raise ValueError(problem[1])
    _gradient_descent_unchecked(
        params,
        grads,
        momentum_buffers,
        lr=lr,
        weight_decay=weight_decay,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        maximize=maximize,
        foreach=foreach,
    )


def _gradient_descent_unchecked(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
    foreach: bool | None,
) -> None:
    """:func:`gradient_descent` without the range checks, for callers that made them already.

    :meth:`GradientDescent.step` calls it once per group, after checking each group once per
    change of its options.
    """
    if foreach is None:
        foreach = _compat.default_foreach(params)
    if weight_decay != 0 and any(grad.is_sparse for grad in grads):
        raise RuntimeError(
            "GradientDescent: weight_decay is not supported with sparse gradients; use "
            "weight_decay=0 for the parameters with sparse gradients (a separate parameter group)"
        )
    if isinstance(lr, Tensor):
        lr = lr.item()  # one read per step, instead of one per parameter

    update = _multi_tensor_gradient_descent if foreach else _single_tensor_gradient_descent
    update(
        params,
        grads,
        momentum_buffers,
        lr=lr,
        weight_decay=weight_decay,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        maximize=maximize,
    )


def _single_tensor_gradient_descent(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """The update one parameter at a time: :class:`GradientDescent`'s pseudocode line by line."""
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)

        if momentum != 0:
            buf = momentum_buffers[i]
            if buf is None:
                buf = momentum_buffers[i] = grad.detach().clone()
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            grad = grad.add(buf, alpha=momentum) if nesterov else buf

        param.add_(grad, alpha=-lr)


def _multi_tensor_gradient_descent(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """The same update on all tensors of one device and dtype at once, with ``torch._foreach_*``."""
    if not params:
        return

    grouped_tensors = _compat.group_by_device_and_dtype([params, grads, momentum_buffers])
    for (device_params, device_grads, device_buffers), indices in grouped_tensors.values():
        # ``device_grads`` are the caller's gradients until an out-of-place op replaces them by
        # temporaries; only temporaries are updated in place (torch.optim.SGD's Nesterov path
        # overwrites p.grad here, which corrupts accumulated or logged gradients).
        grads_are_temporaries = maximize or weight_decay != 0
        if maximize:
            device_grads = _compat.foreach_neg(device_grads)
        if weight_decay != 0:
            if maximize:
                _compat.foreach_add_(device_grads, device_params, alpha=weight_decay)
            else:
                device_grads = _compat.foreach_add(device_grads, device_params, alpha=weight_decay)

        if momentum != 0:
            if any(buf is None for buf in device_buffers):
                for i, (buf, grad) in enumerate(zip(device_buffers, device_grads, strict=True)):
                    if buf is None:
                        new_buf = grad.detach().clone()
                        device_buffers[i] = momentum_buffers[indices[i]] = new_buf
                    else:
                        buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            else:
                _compat.foreach_mul_(device_buffers, momentum)
                _compat.foreach_add_(device_buffers, device_grads, alpha=1 - dampening)

            if not nesterov:
                device_grads = device_buffers
            elif grads_are_temporaries:
                _compat.foreach_add_(device_grads, device_buffers, alpha=momentum)
            else:
                device_grads = _compat.foreach_add(device_grads, device_buffers, alpha=momentum)

        _compat.foreach_add_(device_params, device_grads, alpha=-lr)
