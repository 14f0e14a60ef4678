"""The Function base: its eager positional form gives what torch's own ``apply`` gives."""

from __future__ import annotations

import pytest
import torch

from gdtorch.autograd import BCEWithLogitsLossFunction, LinearFunction, MLPFunction, ReLUFunction
from gdtorch.autograd._fast import Function


def _torch_apply(function: type[Function], *args):
    """``torch.autograd.Function.apply``: the ``forward`` + ``setup_context`` path."""
    return super(Function, function).apply(*args)


def _cases():
    torch.manual_seed(0)
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b1 = torch.randn(3, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(1, 3, dtype=torch.float64, requires_grad=True)
    b2 = torch.randn(1, dtype=torch.float64, requires_grad=True)
    y = torch.rand(5, 1, dtype=torch.float64)
    return [
        (LinearFunction, (x, w1, b1), 0),
        (ReLUFunction, (x,), 0),  # (a, mask)
        (MLPFunction, (x, ("relu", None), w1, b1, w2, b2), -1),  # (a⁽¹⁾, a⁽²⁾)
        (BCEWithLogitsLossFunction, (x[:, :1], y, None, None, "mean"), 0),
    ]


@pytest.mark.parametrize("case", range(4))
def test_eager_positional_form_matches_torch_apply(case):
    function, args, main = _cases()[case]
    tensors = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    results = []
    for apply in (function.apply, lambda *a: _torch_apply(function, *a)):
        output = apply(*args)
        outputs = output if isinstance(output, tuple) else (output,)
        assert type(outputs[main].grad_fn) is function._backward_cls
        grads = torch.autograd.grad(outputs[main].sum(), tensors, allow_unused=True)
        results.append((outputs, grads))
    (eager_out, eager_grads), (torch_out, torch_grads) = results
    for ours, theirs in zip(eager_out, torch_out, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    for ours, theirs in zip(eager_grads, torch_grads, strict=True):
        assert (ours is None) == (theirs is None)
        if ours is not None:
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_eager_positional_form_keeps_what_setup_context_saves():
    _, args, _ = _cases()[2]
    saved: dict[str, list] = {"eager": [], "torch": []}
    for key, apply in (
        ("eager", MLPFunction.apply),
        ("torch", lambda *a: _torch_apply(MLPFunction, *a)),
    ):
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t, key=key: saved[key].append((t.shape, t.dtype)) or t, lambda t: t
        ):
            apply(*args)
    assert saved["eager"] == saved["torch"]
    assert len(saved["eager"]) == 4  # x, W⁽¹⁾ (x requires grad), W⁽²⁾ and a⁽¹⁾


def test_keyword_calls_take_torch_apply():
    x = torch.randn(4, 1, requires_grad=True)
    y = torch.rand(4, 1)
    by_keyword = BCEWithLogitsLossFunction.apply(
        x, y, weight=None, pos_weight=None, reduction="sum"
    )
    positional = BCEWithLogitsLossFunction.apply(x, y, None, None, "sum")
    torch.testing.assert_close(by_keyword, positional, rtol=0, atol=0)
    assert type(by_keyword.grad_fn) is BCEWithLogitsLossFunction._backward_cls


def test_positional_eager_calls_take_the_positional_form():
    functions = (LinearFunction, ReLUFunction, MLPFunction, BCEWithLogitsLossFunction)
    for function, (_, args, _) in zip(functions, _cases(), strict=True):
        function.apply(*args)
        positional = function.__dict__["_eager_apply"].__self__
        assert positional is not function and positional.__name__ == function.__name__
        assert positional._backward_cls is function._backward_cls


class _Scale(Function):
    """``forward(ctx, …)`` with no ``setup_context``: torch's older form."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x * factor

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


class _Shift(Function):
    """A ``forward`` with a default value, which torch's ``apply`` fills in."""

    @staticmethod
    def forward(x, shift=1.0):
        return x + shift

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, ctx.shift = inputs

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def test_other_forms_keep_torch_apply():
    x = torch.randn(3, requires_grad=True)
    torch.testing.assert_close(_Scale.apply(x, 2.0), x * 2)
    torch.testing.assert_close(_Shift.apply(x), x + 1)
    torch.testing.assert_close(_Shift.apply(x, 3.0), x + 3)
    (grad,) = torch.autograd.grad(_Scale.apply(x, 2.0).sum(), x)
    torch.testing.assert_close(grad, torch.full_like(x, 2.0))
    for function in (_Scale, _Shift):
        assert function.__dict__["_eager_apply"].__self__ is function  # torch's own apply
