"""The fully connected layer ``z = W a + b`` and its hand-written backward pass."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gdtorch.autograd import _fast


class LinearFunction(_fast.Function):
    r"""Affine map of one layer, ``z⁽ˡ⁾ = W⁽ˡ⁾ a⁽ˡ⁻¹⁾ + b⁽ˡ⁾``.

    Forward, for an input ``a`` of shape ``(*, n)``, weights ``W`` of shape ``(m, n)`` and biases
    ``b`` of shape ``(m,)`` (row-vector convention, as ``torch.nn.functional.linear``)::

        z = a Wᵀ + b                                       shape (*, m)

    Backward. With ``δ = ∂C/∂z``, the error of this layer, arriving from the layer above, the
    chain rule gives, summing over every leading (batch) index::

        ∂C/∂a = δ W                                         shape (*, n)
        ∂C/∂W = δᵀ a   (= δ aᵀ for one column-vector sample) shape (m, n)
        ∂C/∂b = Σ δ                                         shape (m,)

    Complex ``a``, ``W`` and ``b`` are supported as torch supports them. For a real cost ``C`` of a
    complex ``z = x + iy``, the gradient torch passes around is ``∂C/∂x + i ∂C/∂y = 2 ∂C/∂z̄``
    (Wirtinger calculus), and through a holomorphic map the chain rule multiplies it by the
    *conjugate* local derivative: ``∂C/∂a = δ W̄`` and ``∂C/∂W = δᵀ ā`` (the real case is the
    same with ``W̄ = W``, ``ā = a``).

    Only the gradients that ``ctx.needs_input_grad`` asks for are computed, and only the tensors
    they need are saved: ``a`` when ∂C/∂W is wanted, ``W`` when ∂C/∂a is wanted. The backward
    is plain tensor algebra, so it is itself differentiable (double backward works).
    """

    @staticmethod
    def forward(a: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
        if b is None:
            return a.matmul(W.t())  # z = a Wᵀ
        if a.dim() == 2:
            return torch.addmm(b, a, W.t())  # z = a Wᵀ + b, in one call
        return a.matmul(W.t()) + b  # z = a Wᵀ + b

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, z: Tensor) -> None:
        a, W, b = inputs
        needs_a, needs_W, _ = ctx.needs_input_grad
        ctx.save_for_backward(a if needs_W else None, W if needs_a else None)
        ctx.has_bias = b is not None

    @staticmethod
    def backward(ctx: Any, delta: Tensor) -> tuple[Tensor | None, ...]:
        a, W = ctx.saved_tensors
        needs_a, needs_W, needs_b = ctx.needs_input_grad
        dC_da = dC_dW = dC_db = None
        if needs_a:
            dC_da = delta.matmul(W.conj())  # ∂C/∂a = δ W̄
        if needs_W or (needs_b and ctx.has_bias):
            delta = delta.reshape(-1, delta.shape[-1])  # every sample's δ as one (N, m) matrix
            if needs_W:
                dC_dW = delta.t().mm(a.conj().reshape(-1, a.shape[-1]))  # ∂C/∂W = δᵀ ā
            if needs_b and ctx.has_bias:
                dC_db = delta.sum(0)  # ∂C/∂b = Σ δ
        return dC_da, dC_dW, dC_db
