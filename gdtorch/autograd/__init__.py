"""Layer 1, the maths: ``torch.autograd.Function`` subclasses with hand-written backward passes.

Every ``backward`` here is the tutorial's chain rule written out: it receives ∂C/∂(output) and
returns ∂C/∂(each input) built from plain tensor operations, never a call back into autograd.
Throughout, ``δ = ∂C/∂z`` is the error of a layer: the gradient of the cost with respect to the
layer's weighted input ``z``. The files read as the tutorial: ``linear.py``, ``activations.py``,
``losses.py`` and ``mlp.py``. What exists only for speed or for torch's machinery is in
``_fast.py``, and the private torch APIs it needs are in :mod:`gdtorch._compat`.
Most users want :mod:`gdtorch.functional` or :mod:`gdtorch.nn`, which validate arguments first.
"""

from gdtorch.autograd._fast import Function
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
    "Function",
    "LinearFunction",
    "MAELossFunction",
    "MLPFunction",
    "MSELossFunction",
    "ReLUFunction",
    "SigmoidFunction",
    "TanhFunction",
]
