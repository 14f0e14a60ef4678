"""``Linear``: ``torch.nn.Linear`` with the hand-written backward of ``z = W a + b``."""

from __future__ import annotations

import torch
from torch import Tensor

from gdtorch import functional as GF


class Linear(torch.nn.Linear):
    """Fully connected layer ``z = W a + b``, backpropagated by ``LinearFunction``.

    Same signature, parameters (``weight`` of shape ``(out_features, in_features)``, ``bias``),
    ``state_dict`` keys and initialisation as :class:`torch.nn.Linear`.

    Args:
        in_features: size ``n`` of each input sample.
        out_features: size ``m`` of each output sample.
        bias: whether the layer learns an additive bias ``b``.
        device: where to create the parameters.
        dtype: the parameters' dtype: real, or complex as in torch (e.g. ``torch.cfloat``; the
            backward then uses the conjugates, ``∂C/∂a = δ W̄``, ``∂C/∂W = δᵀ ā``).
    """

    def forward(self, input: Tensor) -> Tensor:
        return GF.linear(input, self.weight, self.bias)
