"""Gradient audit: gdtorch's hand-written backward against torch autograd, in float64.

Backpropagation is only as right as each layer's hand-written ``backward``. :func:`audit` checks
them on a real batch: it computes ``∇C(θ)`` twice, once through gdtorch's layers and once through
their ``torch.nn`` twins (whose backward is torch autograd's), and reports where they differ. A
model written with functional calls (``F.linear``, ``F.relu``, ...) is audited as it runs under
:class:`gdtorch.handwritten`: each call that context takes over gets its own row.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from gdtorch import handwritten_mode
from gdtorch.handwritten_mode import take_over
from gdtorch.nn.convert import TWINS

# gdtorch class -> the torch.nn class it subclasses and whose forward it overrides.
TORCH_TWINS: dict[type[torch.nn.Module], type[torch.nn.Module]] = {
    gdtorch_class: torch_class for torch_class, gdtorch_class in TWINS.items()
}


@dataclass(frozen=True)
class AuditRow:
    """One line of the audit: how far gdtorch's gradient is from torch autograd's.

    With ``g`` gdtorch's gradient and ``r`` autograd's (both float64), ``max_abs_diff`` is
    ``max |g − r|`` and ``max_rel_diff`` is ``max |g − r| / max |r|``: the largest error relative
    to the gradient's largest entry (not entry by entry, which blows up where ``r ≈ 0``).

    Attributes:
        kind: ``"parameter"``: ``∂C/∂θ`` of one parameter after the whole backward pass, the
            gradient the optimiser sees. ``"layer"``: one gdtorch layer's own ``backward``, fed
            autograd's ``δ = ∂C/∂(output)`` and autograd's inputs, so the row measures only that
            layer's error; it covers ``∂C/∂(input)`` and the layer's own parameters. Under
            ``handwritten``, also one functional call that context takes over, fed the same way;
            it covers ``∂C/∂(each tensor argument that requires grad)``.
        name: the parameter's name, or the layer's name and class, e.g. ``"1 (Sigmoid)"``; for a
            functional call, the module whose own ``forward`` made it (``"loss"`` outside the
            model) and the op, numbered when the module makes several, e.g.
            ``"model (Net): linear #2"``.
        max_abs_diff: ``max |g − r|``.
        max_rel_diff: ``max |g − r| / max |r|``.
    """

    kind: Literal["parameter", "layer"]
    name: str
    max_abs_diff: float
    max_rel_diff: float

    def exceeds(self, tolerance: float) -> bool:
        """Whether the row differs by more than ``tolerance``, both absolutely and relatively."""
        return self.max_abs_diff > tolerance and self.max_rel_diff > tolerance


@dataclass(frozen=True)
class AuditReport:
    """The rows of an :func:`audit`, printable as a table (``str(report)``).

    Attributes:
        rows: one :class:`AuditRow` per parameter (in ``named_parameters`` order), then one per
            gdtorch layer of the model and of the loss (in ``named_modules`` order), then, under
            ``handwritten``, one per functional call taken over (in call order).
    """

    rows: tuple[AuditRow, ...] = field(default_factory=tuple)

    @property
    def max_abs_diff(self) -> float:
        """The largest ``max_abs_diff`` over all rows."""
        return max((row.max_abs_diff for row in self.rows), default=0.0)

    @property
    def max_rel_diff(self) -> float:
        """The largest ``max_rel_diff`` over all rows."""
        return max((row.max_rel_diff for row in self.rows), default=0.0)

    def worst(self, kind: Literal["parameter", "layer"] | None = None) -> AuditRow | None:
        """The row of ``kind`` (any kind if ``None``) with the largest relative difference.

        ``worst("layer")`` localises a broken backward: layer rows are fed autograd's ``δ``, so
        only the faulty layer differs, while every parameter beneath it inherits the error.
        """
        rows = [row for row in self.rows if kind is None or row.kind == kind]
        return max(rows, key=lambda row: (row.max_rel_diff, row.max_abs_diff), default=None)

    def __str__(self) -> str:
        header = ("kind", "name", "max |g − r|", "max |g − r| / max |r|")
        lines = [
            (row.kind, row.name, f"{row.max_abs_diff:.3e}", f"{row.max_rel_diff:.3e}")
            for row in self.rows
        ]
        widths = [max(len(line[i]) for line in [header, *lines]) for i in range(4)]
        return "\n".join(
            "  ".join(
                cell.ljust(width) if i < 2 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
            for line in [header, *lines]
        )


@dataclass
class _Call:
    """One forward call of a reference layer: its inputs, and later ``δ = ∂C/∂(output)``."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    differentiable: tuple[bool, ...]
    delta: Tensor | None = None

    def set_delta(self, grad: Tensor) -> None:
        self.delta = grad


def audit(
    model: torch.nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    *,
    handwritten: bool | None = None,
) -> AuditReport:
    """Compare gdtorch's hand-written gradients with torch autograd's on one batch, in float64.

    The model and the loss are deep-copied to float64; a second copy has every gdtorch layer
    swapped for its ``torch.nn`` twin (the inverse of :func:`gdtorch.nn.convert`). Both copies
    compute ``C(f(x; θ), y)`` and ``∇C(θ)``: the parameter rows compare the two ``∇C(θ)``. Forward
    hooks on the twins record each layer's inputs ``a`` and ``δ = ∂C/∂(output)``; each gdtorch
    layer's ``backward`` is then run on autograd's ``a`` and ``δ`` and compared with its twin's,
    giving the layer rows. The input ``x`` is made to require a gradient so that the first
    layer's ``∂C/∂x`` is checked as well. Both copies run in the model's current mode, random
    layers (dropout) drawing the same numbers in each; the global random state is restored.

    With ``handwritten``, the gdtorch copy runs under :class:`gdtorch.handwritten`, as the model
    runs in a training loop under that context, and the torch copy runs as plain torch. Every
    functional call (``F.linear``, ``F.relu``, ``torch.sigmoid``, a functional loss, ...) that the
    context takes over is recorded in the torch pass with its inputs and ``δ``, and gdtorch's
    function is run on them and compared with torch's: one row per call (calls inside a gdtorch
    layer's own ``forward`` are its layer row already). Calls that fall through to torch (in-place
    ReLU, say) have no hand-written backward and no row; the parameter rows still cover them.

    Cost: two float64 copies of the model, and about two float64 forward+backward passes of each
    (the whole batch once, then layer by layer or call by call).

    The user's model, its dtype, its gradients and the random state are left untouched, and the
    audit's own calls are not counted in the reports of ``handwritten()`` contexts around it.

    Args:
        model: any module; its gdtorch layers (also those put in by ``convert``) are audited.
        loss_fn: the cost ``C(output, targets)`` returning a scalar: a module (a gdtorch loss in
            it is audited like a layer) or a function such as
            ``torch.nn.functional.binary_cross_entropy_with_logits``.
        inputs: a batch ``x`` for ``model``.
        targets: the targets ``y``, as ``loss_fn`` expects them.
        handwritten: run the gdtorch copy under ``gdtorch.handwritten()`` and audit the calls it
            takes over; ``None`` (the default): whether ``audit`` is called inside such a
            context.

    Returns:
        The report: ``max_abs_diff``, ``max_rel_diff``, ``rows`` and a printable table.

    Raises:
        ValueError: ``loss_fn`` does not return a scalar.
    """
    if handwritten is None:
        handwritten = handwritten_mode.inside()
    with handwritten_mode.torch_only():  # the torch pass is torch's, even inside handwritten()
        return _audit(model, loss_fn, inputs, targets, handwritten)


def _audit(
    model: torch.nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    handwritten: bool,
) -> AuditReport:
    gdtorch_model, gdtorch_loss = _float64_copy(model), _float64_copy(loss_fn)
    torch_model, torch_loss = _torch_twin(gdtorch_model), _torch_twin(gdtorch_loss)
    layers = list(_gdtorch_layers(gdtorch_model, gdtorch_loss))
    twins = dict(_gdtorch_layers(torch_model, torch_loss, twins=True))
    calls = {name: [] for name, _ in layers}
    hooks = [_record_calls(twins[name], calls[name]) for name, _ in layers]
    recorder = _FunctionalCalls(torch_model, torch_loss, {id(twins[name]) for name, _ in layers})
    cuda = sorted({p.device.index for p in model.parameters() if p.is_cuda})
    with (
        torch.random.fork_rng(devices=cuda),
        torch.enable_grad(),
        torch.autocast(inputs.device.type, enabled=False),
    ):
        torch.manual_seed(0)
        # _isolated: the audit's calls do not count in the reports of contexts around it
        context = handwritten_mode.handwritten(_isolated=True) if handwritten else _no_context()
        with context:
            gdtorch_grads = _parameter_grads(gdtorch_model, gdtorch_loss, inputs, targets)
        torch.manual_seed(0)
        with recorder if handwritten else _no_context():
            torch_grads = _parameter_grads(torch_model, torch_loss, inputs, targets)
        recorder.remove_hooks()
        for hook in hooks:
            hook.remove()
        rows = [
            AuditRow("parameter", name, *_difference(grad, torch_grads[name]))
            for name, grad in gdtorch_grads.items()
        ]
        for name, layer in layers:
            differences = [
                _difference(grad, reference)
                for call in calls[name]
                if call.delta is not None  # the call's output reached C
                for grad, reference in zip(
                    _local_grads(layer, call), _local_grads(twins[name], call), strict=True
                )
            ]
            if differences:
                label = f"{name} ({type(layer).__name__})"
                rows.append(AuditRow("layer", label, *map(max, zip(*differences, strict=True))))
        rows += recorder.rows()
    return AuditReport(tuple(rows))


_no_context = contextlib.nullcontext


class _FunctionalCalls(TorchFunctionMode):
    """Records, in the torch pass, each functional call ``handwritten()`` would take over.

    Each call is kept with the module whose own ``forward`` made it (read off a stack kept by
    forward hooks on every module of the torch copy), its arguments and, once backward reaches
    it, ``δ = ∂C/∂(output)``. Calls made inside a twin of a gdtorch layer are left out: that
    layer has its own row.
    """

    def __init__(
        self, model: torch.nn.Module, loss_fn: Callable[..., Tensor], skipped: set[int]
    ) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any, _Call]] = []  # (module label, op, call)
        self.stack: list[tuple[str, torch.nn.Module]] = []
        self.hooks: list[RemovableHandle] = []
        self.skipped = skipped
        roots = [(model, "")]
        if isinstance(loss_fn, torch.nn.Module):
            roots.append((loss_fn, "loss"))
        for root, prefix in roots:
            for name, module in root.named_modules(prefix=prefix):
                label = f"{name or 'model'} ({type(module).__name__})"
                self.hooks += [
                    module.register_forward_pre_hook(self._entering(label, module)),
                    module.register_forward_hook(self._leaving, always_call=True),
                ]

    def _entering(self, label: str, module: torch.nn.Module) -> Callable[..., None]:
        def hook(_module: torch.nn.Module, _args: tuple) -> None:
            self.stack.append((label, module))

        return hook

    def _leaving(self, _module: torch.nn.Module, _args: tuple, _output: Any) -> None:
        self.stack.pop()

    def remove_hooks(self) -> None:
        for hook in self.hooks:
            hook.remove()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        op, verdict = take_over(func, types, args, kwargs)
        result = func(*args, **(kwargs or {}))
        if verdict.__class__ is not tuple:  # not taken over: no hand-written backward to audit
            return result
        label, module = self.stack[-1] if self.stack else ("loss", None)
        if id(module) in self.skipped:
            return result
        call = _Call(
            args=tuple(_detached(a) for a in verdict),
            kwargs={},
            differentiable=tuple(isinstance(a, Tensor) and a.requires_grad for a in verdict),
        )
        if isinstance(result, Tensor) and result.requires_grad:
            result.register_hook(call.set_delta)
        self.calls.append((label, op, call))
        return result

    def rows(self) -> list[AuditRow]:
        """One row per recorded call that reached ``C``: gdtorch's function against torch's."""
        totals: dict[tuple[str, str], int] = {}
        for label, op, _ in self.calls:
            totals[label, op.name] = totals.get((label, op.name), 0) + 1
        seen: dict[tuple[str, str], int] = {}
        rows = []
        for label, op, call in self.calls:
            key = (label, op.name)
            seen[key] = seen.get(key, 0) + 1
            if call.delta is None:  # the call's output did not reach C
                continue
            number = f" #{seen[key]}" if totals[key] > 1 else ""
            differences = [
                _difference(grad, reference)
                for grad, reference in zip(
                    _call_grads(op.gdtorch, call), _call_grads(op.torch, call), strict=True
                )
            ]
            rows.append(
                AuditRow(
                    "layer",
                    f"{label}: {op.name}{number}",
                    *map(max, zip(*differences, strict=True)),
                )
            )
        return rows


def _call_grads(function: Callable[..., Tensor], call: _Call) -> tuple[Tensor | None, ...]:
    """``function``'s backward on the recorded call: ``∂C/∂(each argument that requires grad)``."""
    args = [
        a.detach().requires_grad_() if flag else a
        for a, flag in zip(call.args, call.differentiable, strict=True)
    ]
    wrt = [a for a, flag in zip(args, call.differentiable, strict=True) if flag]
    return torch.autograd.grad(function(*args), wrt, call.delta, allow_unused=True)


def _float64_copy(module: Any) -> Any:
    """A float64 deep copy of a module; a loss given as a function, as it is."""
    if not isinstance(module, torch.nn.Module):
        return module
    return copy.deepcopy(module).to(torch.float64)


def _to_float64(tensor: Tensor) -> Tensor:
    tensor = tensor.detach()
    return tensor.to(torch.float64) if tensor.is_floating_point() else tensor


def _torch_twin(module: Any) -> Any:
    """A copy of ``module`` with each gdtorch layer's class swapped back to its torch twin.

    gdtorch layers subclass their twins and only override ``forward``, so the swap is exact. An
    in-place twin (``ReLU(inplace=True)``) is made out-of-place: the value and gradient are the
    same, and the recorded inputs stay intact.
    """
    if not isinstance(module, torch.nn.Module):
        return module
    twin = copy.deepcopy(module)
    for submodule in twin.modules():
        torch_class = TORCH_TWINS.get(type(submodule))
        if torch_class is not None:
            submodule.__class__ = torch_class
            if getattr(submodule, "inplace", False):
                submodule.inplace = False
    return twin


def _gdtorch_layers(
    model: torch.nn.Module, loss_fn: Any, *, twins: bool = False
) -> Iterator[tuple[str, torch.nn.Module]]:
    """``(name, layer)`` for each gdtorch layer (or, with ``twins``, each swapped-back twin)."""
    classes = set(TORCH_TWINS.values()) if twins else set(TORCH_TWINS)
    roots = [(model, ""), (loss_fn, "loss")]
    for root, prefix in roots if isinstance(loss_fn, torch.nn.Module) else roots[:1]:
        for name, module in root.named_modules(prefix=prefix):
            if type(module) in classes:
                yield name or "model", module


def _record_calls(layer: torch.nn.Module, calls: list[_Call]) -> RemovableHandle:
    """Append every forward call of ``layer`` to ``calls``: inputs now, ``δ`` once backward does."""

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict, output: Tensor) -> None:
        call = _Call(
            args=tuple(_detached(a) for a in args),
            kwargs={key: _detached(value) for key, value in kwargs.items()},
            differentiable=tuple(isinstance(a, Tensor) and a.requires_grad for a in args),
        )
        if output.requires_grad:
            output.register_hook(call.set_delta)  # δ for this value, even if later changed in place
        calls.append(call)

    return layer.register_forward_hook(hook, with_kwargs=True)


def _detached(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, Tensor) else value


def _parameter_grads(
    model: torch.nn.Module, loss_fn: Callable[..., Tensor], inputs: Tensor, targets: Tensor
) -> dict[str, Tensor | None]:
    """``∂C/∂θ`` for each trainable parameter, with ``x`` requiring a gradient too."""
    x = _to_float64(inputs)
    if x.is_floating_point():
        x.requires_grad_()
    cost = loss_fn(model(x), _to_float64(targets))
    if cost.dim() != 0:
        raise ValueError(
            f"audit: loss_fn must return a scalar cost C, got a tensor of shape "
            f"{tuple(cost.shape)}; use reduction='mean' or 'sum'"
        )
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    leaves = [p for _, p in named] + ([x] if x.requires_grad else [])
    grads = torch.autograd.grad(cost, leaves, allow_unused=True)[: len(named)]
    return {name: grad for (name, _), grad in zip(named, grads, strict=True)}


def _local_grads(layer: torch.nn.Module, call: _Call) -> tuple[Tensor | None, ...]:
    """The layer's own backward on the recorded call: ``∂C/∂(input)`` and its parameters' grads."""
    args = [
        a.detach().requires_grad_() if flag else a
        for a, flag in zip(call.args, call.differentiable, strict=True)
    ]
    wrt = [a for a, flag in zip(args, call.differentiable, strict=True) if flag]
    wrt += [p for p in layer.parameters(recurse=False) if p.requires_grad]
    output = layer(*args, **call.kwargs)
    return torch.autograd.grad(output, wrt, call.delta, allow_unused=True)


def _difference(grad: Tensor | None, reference: Tensor | None) -> tuple[float, float]:
    """``(max |g − r|, max |g − r| / max |r|)``, a missing gradient counting as zeros."""
    if grad is None and reference is None:
        return 0.0, 0.0
    if grad is None:
        grad = torch.zeros_like(reference)
    if reference is None:
        reference = torch.zeros_like(grad)
    if reference.numel() == 0:
        return 0.0, 0.0
    abs_diff = (grad - reference).abs().max()
    scale = reference.abs().max().clamp_min(torch.finfo(reference.dtype).tiny)
    return abs_diff.item(), (abs_diff / scale).item()
