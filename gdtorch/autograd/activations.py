"""Element-wise activations ``a = g(z)`` and their hand-written derivatives ``g'(z)``.

Backward receives ``∂C/∂a`` from the layer above and returns the error of the layer,
``δ = ∂C/∂z = ∂C/∂a ⊙ g'(z)``: the chain rule through an element-wise function is a product,
element by element, with the local slope.

Complex numbers: the sigmoid and tanh are holomorphic and take complex ``z`` as torch's do. For
a real cost of a complex ``z = x + iy`` the gradient torch passes around is ``∂C/∂x + i ∂C/∂y``
(Wirtinger calculus), which the chain rule multiplies by the *conjugate* slope:
``δ = ∂C/∂a ⊙ conj(g'(z))``, the same line for real ``z``. ReLU needs an order (``max(z, 0)``)
that complex numbers lack: it refuses them, as torch does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gdtorch.autograd import _fast


class SigmoidFunction(_fast.Function):
    r"""Logistic sigmoid ``a = σ(z) = 1 / (1 + e⁻ᶻ)``.

    Backward: ``σ'(z) = σ(z)(1 − σ(z)) = a(1 − a)``, so ``δ = ∂C/∂a ⊙ a ⊙ (1 − a)``.
    Only the output ``a`` is saved, as torch's own sigmoid does.
    """

    @staticmethod
    def forward(z: Tensor) -> Tensor:
        return torch.sigmoid(z)  # a = σ(z)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, a: Tensor) -> None:
        ctx.save_for_backward(a)

    @staticmethod
    def backward(ctx: Any, dC_da: Tensor) -> Tensor:
        (a,) = ctx.saved_tensors
        a = a.conj()  # ā: the conjugate slope (module docstring); a itself when real
        return dC_da * a * (1 - a)  # δ = ∂C/∂a ⊙ σ(z)(1 − σ(z))


class TanhFunction(_fast.Function):
    r"""Hyperbolic tangent ``a = tanh(z)``.

    Backward: ``tanh'(z) = 1 − tanh²(z) = 1 − a²``, so ``δ = ∂C/∂a ⊙ (1 − a²)``.
    Only the output ``a`` is saved.
    """

    @staticmethod
    def forward(z: Tensor) -> Tensor:
        return torch.tanh(z)  # a = tanh(z)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, a: Tensor) -> None:
        ctx.save_for_backward(a)

    @staticmethod
    def backward(ctx: Any, dC_da: Tensor) -> Tensor:
        (a,) = ctx.saved_tensors
        a = a.conj()  # ā: the conjugate slope (module docstring); a itself when real
        return dC_da * (1 - a * a)  # δ = ∂C/∂a ⊙ (1 − tanh²(z))


class ReLUFunction(_fast.Function):
    r"""Rectified linear unit ``a = max(z, 0)``.

    Backward: ``ReLU'(z) = [z > 0]`` (1 where ``z > 0``, else 0), so ``δ = ∂C/∂a ⊙ [z > 0]``.
    The slope is read off the output as ``[a ≠ 0]``, which also passes the gradient of a NaN
    ``z`` (whose output is NaN), as torch does; torch *selects* where gdtorch multiplies, so a
    non-finite ``∂C/∂a`` at a unit with ``a = 0`` gives ``∞·0 = NaN`` where torch gives 0.

    Forward returns ``(a, [z > 0])``: the mask is an intermediate result handed to
    ``setup_context`` (the ``torch.func`` way to save one) and marked non-differentiable;
    :func:`gdtorch.functional.relu` returns ``a`` alone. Complex ``z`` is refused by
    ``torch.relu`` (``clamp is not supported for complex types``).
    """

    @staticmethod
    def forward(z: Tensor) -> tuple[Tensor, Tensor]:
        a = torch.relu(z)  # a = max(z, 0)
        return a, _fast.relu_mask(a)  # [z > 0], read off a as [a ≠ 0]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple[Tensor, Tensor]) -> None:
        _, slope = output
        ctx.mark_non_differentiable(slope)
        ctx.set_materialize_grads(False)  # no zeros for the mask's (absent) gradient
        ctx.save_for_backward(slope)

    @staticmethod
    def backward(ctx: Any, dC_da: Tensor | None, _: None) -> Tensor | None:
        if dC_da is None:
            return None
        (slope,) = ctx.saved_tensors
        return dC_da * slope  # δ = ∂C/∂a ⊙ [z > 0]
