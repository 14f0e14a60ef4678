"""Element-wise activations ``a = g(z)`` and their hand-written derivatives ``g'(z)``.

For every activation the chain rule through the layer is ``∂C/∂z = ∂C/∂a ⊙ g'(z)``: the
gradient arriving from above (δ) is multiplied element by element by the local slope.

Complex numbers: the sigmoid and tanh are holomorphic and take complex ``z`` as torch's do. For
a real cost of a complex ``z = x + iy`` the gradient torch passes around is ``∂C/∂x + i ∂C/∂y``
(``2 ∂C/∂z̄``, Wirtinger calculus), which the chain rule multiplies by the *conjugate* slope:
``∂C/∂z = δ ⊙ conj(g'(z))``, the same line for real ``z``. ReLU needs an order (``max(z, 0)``)
that complex numbers lack: it refuses them, as torch does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gdtorch.autograd.function import Function


class SigmoidFunction(Function):
    r"""Logistic sigmoid ``a = σ(z) = 1 / (1 + e⁻ᶻ)``.

    Backward: ``σ'(z) = σ(z)(1 − σ(z))``, so ``∂C/∂z = δ ⊙ a ⊙ (1 − a)`` (``δ ⊙ ā ⊙ (1 − ā)``
    for complex ``z``). Only the output ``a`` is saved, as torch's own sigmoid does.
    """

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.sigmoid(input)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> Tensor:
        (output,) = ctx.saved_tensors
        if output.is_complex():  # the conjugate slope (module docstring)
            output = output.conj()
        return grad_output * output * (1 - output)  # δ σ(1 − σ)


class TanhFunction(Function):
    r"""Hyperbolic tangent ``a = tanh(z)``.

    Backward: ``tanh'(z) = 1 − tanh²(z)``, so ``∂C/∂z = δ ⊙ (1 − a²)`` (``δ ⊙ (1 − ā²)`` for
    complex ``z``). Only the output is saved.
    """

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.tanh(input)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> Tensor:
        (output,) = ctx.saved_tensors
        if output.is_complex():  # the conjugate slope (module docstring)
            output = output.conj()
        return grad_output * (1 - output * output)  # δ (1 − a²)


def relu_slope(output: Tensor) -> Tensor:
    r"""``ReLU'(z)`` read off the output ``a = max(z, 0)``: ``[a ≠ 0]``, 1 where ``z > 0`` or ``z``
    is NaN, else 0.

    torch's ReLU backward passes δ wherever ``a ≤ 0`` is false, and ``NaN ≤ 0`` is false: a NaN
    pre-activation (whose output is NaN) passes its gradient. ``[a ≠ 0]`` does the same, where
    ``sign(a)`` would not (``sign(NaN) = 0`` in torch). One difference remains: torch *selects*
    (0 where ``a ≤ 0``) and gdtorch *multiplies* (``δ ⊙ mask``), so a non-finite δ at a unit with
    ``a = 0`` gives ``∞·0 = NaN`` where torch gives 0. Such a δ only arrives once the forward or
    the incoming gradient is already non-finite; a select costs about five multiplies on CPU
    (comparisons and ``where`` on ``bool`` take a slow path).

    Kept as ``uint8``: one byte per element, a quarter of the float output torch's ReLU keeps,
    and ``δ ⊙ mask`` with a ``uint8`` mask is a fast multiply (a ``bool`` operand takes a slow
    conversion path on CPU). Under ``torch.compile`` the mask is in ``a``'s dtype instead:
    inductor converts a ``uint8`` mask element by element (its two backward kernels took 340 µs
    per step of ``[3072, 256, 128, 1] × 256``), while a float mask fuses into the multiply.
    """
    if torch.compiler.is_compiling():
        return (output != 0).to(output.dtype)
    return output.bool().view(torch.uint8)


class ReLUFunction(Function):
    r"""Rectified linear unit ``a = max(z, 0)``.

    Backward: ``ReLU'(z) = 1 if z > 0 else 0``, so ``∂C/∂z = δ ⊙ [z > 0]``, the mask read off the
    output as ``[a ≠ 0]`` (:func:`relu_slope`: a NaN ``z`` passes its gradient, as in torch).

    Forward returns ``(a, mask)``: the mask is an intermediate result handed to
    ``setup_context`` (the ``torch.func`` way to save one) and marked non-differentiable.
    :func:`gdtorch.functional.relu` returns ``a`` alone. Complex ``z`` is refused by
    ``torch.relu`` (``clamp is not supported for complex types``).
    """

    @staticmethod
    def forward(input: Tensor) -> tuple[Tensor, Tensor]:
        output = torch.relu(input)
        return output, relu_slope(output)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple[Tensor, Tensor]) -> None:
        _, mask = output
        ctx.mark_non_differentiable(mask)
        ctx.set_materialize_grads(False)  # no zeros for the mask's (absent) gradient
        ctx.save_for_backward(mask)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor | None, _grad_mask: None) -> Tensor | None:
        if grad_output is None:
            return None
        (mask,) = ctx.saved_tensors
        return grad_output * mask  # δ [z > 0]
