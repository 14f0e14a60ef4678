"""Activation modules: ``torch.nn.Sigmoid``, ``ReLU`` and ``Tanh`` with hand-written backwards."""

from __future__ import annotations

import torch
from torch import Tensor

from gdtorch import functional as GF


class Sigmoid(torch.nn.Sigmoid):
    """``a = σ(z)``, with ``σ' = σ(1 − σ)`` in :class:`~gdtorch.autograd.SigmoidFunction`."""

    def forward(self, input: Tensor) -> Tensor:
        return GF.sigmoid(input)


class Tanh(torch.nn.Tanh):
    """``a = tanh(z)``, with ``tanh' = 1 − tanh²`` in :class:`~gdtorch.autograd.TanhFunction`."""

    def forward(self, input: Tensor) -> Tensor:
        return GF.tanh(input)


class ReLU(torch.nn.ReLU):
    """``a = max(z, 0)``, with ``ReLU' = [z > 0]`` in :class:`~gdtorch.autograd.ReLUFunction`.

    Args:
        inplace: accepted for compatibility with :class:`torch.nn.ReLU`; the output is always a
            new tensor (see :func:`gdtorch.functional.relu`).
    """

    def forward(self, input: Tensor) -> Tensor:
        return GF.relu(input)
