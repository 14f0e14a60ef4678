"""Layer 1, the maths: ``torch.autograd.Function`` subclasses with hand-written backward passes.

Every ``backward`` here is the tutorial's chain rule written out: it receives δ = ∂C/∂(output) and
returns ∂C/∂(each input) built from plain tensor operations, never a call back into autograd.
Most users want :mod:`gdtorch.functional` or :mod:`gdtorch.nn`, which validate arguments first.
"""

from gdtorch.autograd.activations import ReLUFunction, SigmoidFunction, TanhFunction
from gdtorch.autograd.linear import LinearFunction
from gdtorch.autograd.losses import (
    BCELossFunction,
    BCEWithLogitsLossFunction,
    MAELossFunction,
    MSELossFunction,
)
from gdtorch.autograd.mlp import MLPFunction

__all__ = [
    "BCELossFunction",
    "BCEWithLogitsLossFunction",
    "LinearFunction",
    "MAELossFunction",
    "MLPFunction",
    "MSELossFunction",
    "ReLUFunction",
    "SigmoidFunction",
    "TanhFunction",
]
