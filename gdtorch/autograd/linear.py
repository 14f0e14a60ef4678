"""The fully connected layer ``z = W a + b`` and its hand-written backward pass."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gdtorch.autograd.function import Function


def _conj(tensor: Tensor | None) -> Tensor | None:
    """``t̄``, the complex conjugate (a lazy view), or ``None``."""
    return None if tensor is None else tensor.conj()


class LinearFunction(Function):
    r"""Affine map of one layer, ``z⁽ˡ⁾ = W⁽ˡ⁾ a⁽ˡ⁻¹⁾ + b⁽ˡ⁾``.

    Forward, for an input ``a`` of shape ``(*, n)``, weights ``W`` of shape ``(m, n)`` and biases
    ``b`` of shape ``(m,)`` (row-vector convention, as ``torch.nn.functional.linear``)::

        z = a Wᵀ + b                                       shape (*, m)

    Backward. With ``δ = ∂C/∂z`` arriving from the layer above, the chain rule gives, summing
    over every leading (batch) index::

        ∂C/∂a = δ W                                         shape (*, n)
        ∂C/∂W = δᵀ a   (= δ aᵀ for one column-vector sample) shape (m, n)
        ∂C/∂b = Σ δ                                         shape (m,)

    Complex ``a``, ``W`` and ``b`` are supported as torch supports them. For a real cost ``C`` of a
    complex ``z = x + iy``, the gradient torch passes around is ``∂C/∂x + i ∂C/∂y = 2 ∂C/∂z̄``
    (Wirtinger calculus), and through a holomorphic map the chain rule multiplies it by the
    *conjugate* local derivative: ``z = a Wᵀ`` gives ``∂C/∂a = δ W̄`` and ``∂C/∂W = δᵀ ā`` (the
    real case is the same with ``W̄ = W``, ``ā = a``).

    Only the gradients that ``ctx.needs_input_grad`` asks for are computed, and only the tensors
    they need are saved: the input ``a`` when ∂C/∂W is wanted, ``W`` when ∂C/∂a is wanted. The
    backward is plain tensor algebra, so it is itself differentiable (double backward works).
    """

    @staticmethod
    def forward(input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if input.dim() == 2 and bias is not None:
            return torch.addmm(bias, input, weight.t())
        output = input.matmul(weight.t())
        if bias is not None:
            output = output + bias
        return output

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        input, weight, bias = inputs
        needs_input, needs_weight, _ = ctx.needs_input_grad
        ctx.save_for_backward(input if needs_weight else None, weight if needs_input else None)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        input, weight = ctx.saved_tensors
        if grad_output.is_complex():  # ā and W̄ (see the class docstring); lazy views, no copy
            input, weight = _conj(input), _conj(weight)
        needs_input, needs_weight, needs_bias = ctx.needs_input_grad
        grad_input = grad_weight = grad_bias = None
        if needs_input:
            grad_input = grad_output.matmul(weight)  # ∂C/∂a = δ W̄
        if needs_weight or needs_bias:
            delta = grad_output  # δ over all samples as an (N, m) matrix
            if delta.dim() != 2:
                delta = delta.reshape(-1, delta.shape[-1])
                input = None if input is None else input.reshape(-1, input.shape[-1])
            if needs_weight:
                grad_weight = delta.t().mm(input)  # ∂C/∂W = δᵀ ā
            if needs_bias and ctx.has_bias:
                grad_bias = delta.sum(0)  # ∂C/∂b = Σ δ
        return grad_input, grad_weight, grad_bias
