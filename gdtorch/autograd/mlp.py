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

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gdtorch.autograd.activations import relu_slope
from gdtorch.autograd.function import Function

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {  # applied in place over z = a Wᵀ + b
    "relu": torch.relu_,
    "sigmoid": torch.sigmoid_,
    "tanh": torch.tanh_,
}


def _times_slope(name: str | None, grad: Tensor, output: Tensor, owned: bool) -> Tensor:
    """``∂C/∂a ⊙ g'(z)``, with ``g'`` written in terms of the activation's output ``a``.

    ``owned``: ``grad`` was made by this backward, so ReLU may mask it in place (one
    temporary fewer; nothing else reads it). Not under ``torch.func``: there ``grad`` may be
    unbatched while ``a`` is batched, which ``vmap`` cannot write in place.
    """
    if name is None:
        return grad
    if name == "relu":  # [z > 0] = [a ≠ 0], as a = max(z, 0) ≥ 0 (NaN passes, as in torch)
        mask = relu_slope(output)
        return grad.mul_(mask) if owned else grad * mask
    if name == "sigmoid":
        return grad * output * (1 - output)  # σ(1 − σ)
    return grad * (1 - output * output)  # 1 − tanh²


def _conj(tensor: Tensor | None) -> Tensor | None:
    """``t̄``, the complex conjugate (a lazy view), or ``None``."""
    return None if tensor is None else tensor.conj()


class MLPFunction(Function):
    r"""Forward and backward propagation through ``L`` fully connected layers at once.

    ``MLPFunction.apply(x, activations, W⁽¹⁾, b⁽¹⁾, …, W⁽ᴸ⁾, b⁽ᴸ⁾)`` takes a batch ``x`` of
    shape ``(N, n⁽⁰⁾)``, one activation name per layer (``"relu"``, ``"sigmoid"``, ``"tanh"`` or
    ``None`` for none) and each layer's weights and biases, and returns every layer's output
    ``(a⁽¹⁾, …, a⁽ᴸ⁾)``; ``a⁽ᴸ⁾`` is the network's output, the others are kept for backward
    (and are differentiable, so the backward — plain tensor algebra — can be differentiated
    again). See the module docstring for the equations.
    """

    @staticmethod
    def forward(input: Tensor, activations: tuple[str | None, ...], *params: Tensor) -> tuple:
        outputs = []
        a = input
        for weight, bias, name in zip(params[0::2], params[1::2], activations, strict=True):
            a = F.linear(a, weight, bias)  # z = a Wᵀ + b (torch.addmm(b, a, Wᵀ) in one call)
            if name is not None:
                a = ACTIVATIONS[name](a)  # a = g(z), over z: z itself is not kept
            outputs.append(a)
        return tuple(outputs)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        input, activations, *params = inputs
        ctx.activations = activations
        ctx.is_complex = input.is_complex()
        ctx.set_materialize_grads(False)
        needs = ctx.needs_input_grad
        kept_outputs = list(output)
        if activations[-1] is None:
            kept_outputs[-1] = None  # an identity output layer needs no slope
        weights = list(params[0::2])
        if not needs[0]:
            weights[0] = None  # W⁽¹⁾ only hands δ down to the input, which wants no gradient
        ctx.save_for_backward(input if needs[2] else None, *weights, *kept_outputs)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor | None) -> tuple[Tensor | None, ...]:
        activations = ctx.activations
        n_layers = len(activations)
        input, *saved = ctx.saved_tensors
        weights, outputs = saved[:n_layers], saved[n_layers:]
        if ctx.is_complex:  # ā, W̄ and conj(g') (module docstring): every saved factor conjugated
            input = _conj(input)
            weights, outputs = [_conj(w) for w in weights], [_conj(a) for a in outputs]
        needs = ctx.needs_input_grad
        grads: list[Tensor | None] = [None] * (2 + 2 * n_layers)  # as the inputs: x, names, W, b…
        grad_a = grad_outputs[-1]  # ∂C/∂a⁽ᴸ⁾
        in_place = not torch._C._are_functorch_transforms_active()
        for layer in range(n_layers - 1, -1, -1):
            if grad_a is not None:
                owned = in_place and grad_a is not grad_outputs[layer]
                delta = _times_slope(activations[layer], grad_a, outputs[layer], owned)  # δ⁽ˡ⁾
                if needs[2 + 2 * layer]:
                    a_below = outputs[layer - 1] if layer else input
                    grads[2 + 2 * layer] = delta.t().mm(a_below)  # ∂C/∂W = δᵀ a
                if needs[3 + 2 * layer]:
                    grads[3 + 2 * layer] = delta.sum(0)  # ∂C/∂b = Σ δ
                grad_a = delta.mm(weights[layer]) if layer or needs[0] else None
            if layer and grad_outputs[layer - 1] is not None:  # a⁽ˡ⁻¹⁾ also used directly
                extra = grad_outputs[layer - 1]
                grad_a = extra if grad_a is None else grad_a + extra
        grads[0] = grad_a
        return tuple(grads)
