"""A whole fully connected network as one Function: forward propagation, then backpropagation.

This is the tutorial's algorithm in one place. Forward propagation, layer by layer::

    z⁽ˡ⁾ = a⁽ˡ⁻¹⁾ W⁽ˡ⁾ᵀ + b⁽ˡ⁾,   a⁽ˡ⁾ = g⁽ˡ⁾(z⁽ˡ⁾),   a⁽⁰⁾ = x

Backpropagation, from the last layer down, with ``∂C/∂a⁽ᴸ⁾`` arriving from the cost::

    δ⁽ˡ⁾ = ∂C/∂a⁽ˡ⁾ ⊙ g⁽ˡ⁾'(z⁽ˡ⁾)                 the error of layer l
    ∂C/∂W⁽ˡ⁾ = δ⁽ˡ⁾ᵀ a⁽ˡ⁻¹⁾,   ∂C/∂b⁽ˡ⁾ = Σ δ⁽ˡ⁾
    ∂C/∂a⁽ˡ⁻¹⁾ = δ⁽ˡ⁾ W⁽ˡ⁾                        handed down to layer l − 1

Every activation's slope is read off its output ``a`` (``[a ≠ 0]`` for ReLU, which passes a NaN
``z``'s gradient as torch does, ``a(1 − a)`` for the sigmoid, ``1 − a²`` for tanh), so one tensor
per layer serves both ``∂C/∂W`` of the layer above and ``g'`` of its own: less memory than the
layers kept one by one.

Complex networks (sigmoid, tanh or no activation; ReLU refuses complex numbers) follow the same
equations with every saved factor conjugated, as Wirtinger calculus has it for the gradient
``∂C/∂x + i ∂C/∂y`` of a real cost that torch passes around (see
:class:`~gdtorch.autograd.LinearFunction`)::

    δ⁽ˡ⁾ = ∂C/∂a⁽ˡ⁾ ⊙ conj(g⁽ˡ⁾'(z⁽ˡ⁾)),   ∂C/∂W⁽ˡ⁾ = δ⁽ˡ⁾ᵀ ā⁽ˡ⁻¹⁾,   ∂C/∂a⁽ˡ⁻¹⁾ = δ⁽ˡ⁾ W̄⁽ˡ⁾
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from gdtorch.autograd import _fast

ACTIVATIONS = ("relu", "sigmoid", "tanh")  # the names a layer's g may take (None: no activation)


def times_slope(dC_da: Tensor, g: str | None, a: Tensor, may_overwrite: bool) -> Tensor:
    """``δ = ∂C/∂a ⊙ g'(z)``, with ``g'`` read off the activation's output ``a``.

    ``may_overwrite``: ``dC_da`` is a temporary of this backward, which ReLU's mask may
    overwrite (:func:`~gdtorch.autograd._fast.may_write_in_place`).
    """
    if g is None:
        return dC_da  # a = z: g' = 1
    if g == "relu":
        slope = _fast.relu_mask(a)  # [z > 0] = [a ≠ 0]
        return dC_da.mul_(slope) if may_overwrite else dC_da * slope
    if g == "sigmoid":
        return dC_da * a * (1 - a)  # σ' = σ(1 − σ)
    return dC_da * (1 - a * a)  # tanh' = 1 − tanh²


class MLPFunction(_fast.Function):
    r"""Forward and backward propagation through ``L`` fully connected layers at once.

    ``MLPFunction.apply(x, activations, W⁽¹⁾, b⁽¹⁾, …, W⁽ᴸ⁾, b⁽ᴸ⁾)`` takes a batch ``x`` of
    shape ``(N, n⁽⁰⁾)``, one activation name per layer (``"relu"``, ``"sigmoid"``, ``"tanh"`` or
    ``None`` for none) and each layer's weights and biases, and returns every layer's output
    ``(a⁽¹⁾, …, a⁽ᴸ⁾)``; ``a⁽ᴸ⁾`` is the network's output, the others are kept for backward
    (and are differentiable, so the backward — plain tensor algebra — can be differentiated
    again). See the module docstring for the equations.
    """

    @staticmethod
    def forward(x: Tensor, activations: tuple[str | None, ...], *params: Tensor) -> tuple:
        a = x  # a⁽⁰⁾ = x
        outputs = []
        for W, b, g in zip(params[0::2], params[1::2], activations, strict=True):
            z = F.linear(a, W, b)  # z⁽ˡ⁾ = a⁽ˡ⁻¹⁾ W⁽ˡ⁾ᵀ + b⁽ˡ⁾
            a = z if g is None else _fast.activate_(g, z)  # a⁽ˡ⁾ = g(z⁽ˡ⁾)
            outputs.append(a)
        return tuple(outputs)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, outputs: tuple) -> None:
        x, activations, *params = inputs
        ctx.activations = activations
        ctx.is_complex = x.is_complex()
        ctx.set_materialize_grads(False)
        needs_x, _, needs_W1, *_ = ctx.needs_input_grad
        kept = list(outputs)
        if activations[-1] is None:
            kept[-1] = None  # an identity output layer needs no slope
        weights = list(params[0::2])
        if not needs_x:
            weights[0] = None  # W⁽¹⁾ only hands δ down to x, which wants no gradient
        ctx.save_for_backward(x if needs_W1 else None, *weights, *kept)

    @staticmethod
    def backward(ctx: Any, *dC_douts: Tensor | None) -> tuple[Tensor | None, ...]:
        activations = ctx.activations
        L = len(activations)
        saved = ctx.saved_tensors
        if ctx.is_complex:  # x̄, W̄ and ā: every saved factor conjugated (module docstring)
            saved = [None if t is None else t.conj() for t in saved]
        a, W = [saved[0], *saved[L + 1 :]], saved[1 : L + 1]  # a[l] = a⁽ˡ⁾ (a⁽⁰⁾ = x), W[l − 1]
        needs_x, _, *needs_params = ctx.needs_input_grad
        dC_dW: list[Tensor | None] = [None] * L
        dC_db: list[Tensor | None] = [None] * L
        overwrite = _fast.may_write_in_place()
        dC_da = dC_douts[-1]  # ∂C/∂a⁽ᴸ⁾, from the cost
        for l in range(L, 0, -1):  # noqa: E741 (the tutorial's layer index)
            if dC_da is not None:
                mine = overwrite and dC_da is not dC_douts[l - 1]  # made here, not handed in
                delta = times_slope(dC_da, activations[l - 1], a[l], mine)  # δ⁽ˡ⁾ = ∂C/∂z⁽ˡ⁾
                if needs_params[2 * l - 2]:
                    dC_dW[l - 1] = delta.t().mm(a[l - 1])  # ∂C/∂W⁽ˡ⁾ = δ⁽ˡ⁾ᵀ a⁽ˡ⁻¹⁾
                if needs_params[2 * l - 1]:
                    dC_db[l - 1] = delta.sum(0)  # ∂C/∂b⁽ˡ⁾ = Σ δ⁽ˡ⁾
                below_wanted = l > 1 or needs_x
                dC_da = delta.mm(W[l - 1]) if below_wanted else None  # ∂C/∂a⁽ˡ⁻¹⁾ = δ⁽ˡ⁾ W⁽ˡ⁾
            if l > 1 and dC_douts[l - 2] is not None:  # a⁽ˡ⁻¹⁾ is also an output of its own
                dC_da = dC_douts[l - 2] if dC_da is None else dC_da + dC_douts[l - 2]
        grads = [p for pair in zip(dC_dW, dC_db, strict=True) for p in pair]
        return (dC_da, None, *grads)
