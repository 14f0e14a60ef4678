"""Element-wise activations ``a = g(z)`` and their hand-written derivatives ``g'(z)``.

For every activation the chain rule through the layer is ``∂C/∂z = ∂C/∂a ⊙ g'(z)``: the
gradient arriving from above (δ) is multiplied element by element by the local slope.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gdtorch.autograd.function import Function


class SigmoidFunction(Function):
    r"""Logistic sigmoid ``a = σ(z) = 1 / (1 + e⁻ᶻ)``.

    Backward: ``σ'(z) = σ(z)(1 − σ(z))``, so ``∂C/∂z = δ ⊙ a ⊙ (1 − a)``. Only the output ``a``
    is saved, as torch's own sigmoid does.
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
        return grad_output * output * (1 - output)  # δ σ(1 − σ)


class TanhFunction(Function):
    r"""Hyperbolic tangent ``a = tanh(z)``.

    Backward: ``tanh'(z) = 1 − tanh²(z)``, so ``∂C/∂z = δ ⊙ (1 − a²)``. Only the output is saved.
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
        return grad_output * (1 - output * output)  # δ (1 − a²)


class ReLUFunction(Function):
    r"""Rectified linear unit ``a = max(z, 0)``.

    Backward: ``ReLU'(z) = 1 if z > 0 else 0``, so ``∂C/∂z = δ ⊙ [z > 0]``.

    Forward returns ``(a, mask)``: the mask ``[a ≠ 0]`` (``[z > 0]``, and NaN passes its gradient
    as in torch) is an intermediate result handed to ``setup_context`` (the ``torch.func`` way to
    save one) and marked non-differentiable. It is kept as ``uint8``: one byte per element, a
    quarter of the float output torch's ReLU keeps, and ``δ ⊙ mask`` with a ``uint8`` mask is a
    fast multiply (a ``bool`` operand takes a slow conversion path on CPU). Under
    ``torch.compile`` the mask is ``sign(a)`` in ``a``'s dtype instead: inductor converts a
    ``uint8`` mask element by element (its two backward kernels took 340 µs per step of
    ``[3072, 256, 128, 1] × 256``), while a float mask fuses into the multiply.
    :func:`gdtorch.functional.relu` returns ``a`` alone.
    """

    @staticmethod
    def forward(input: Tensor) -> tuple[Tensor, Tensor]:
        output = torch.relu(input)
        if torch.compiler.is_compiling():
            return output, output.sign()  # see the class docstring
        return output, output.bool().view(torch.uint8)

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
