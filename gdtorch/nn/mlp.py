"""``MLP``: the tutorial's feed-forward network built from gdtorch layers."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from gdtorch.nn.activation import ReLU, Sigmoid, Tanh
from gdtorch.nn.linear import Linear

ACTIVATIONS: dict[str, type[torch.nn.Module]] = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}


def _activation(argument: str, name: str) -> torch.nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"MLP: unknown {argument}={name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(torch.nn.Sequential):
    """Fully connected network ``a⁽ˡ⁾ = g(W⁽ˡ⁾ a⁽ˡ⁻¹⁾ + b⁽ˡ⁾)``, layer by layer.

    ``MLP([12288, 20, 7, 5, 1])`` is the classic 4-layer cat/not-cat network on 64×64×3 images.
    Inputs with more than two dimensions (images ``(N, 3, H, W)``) are flattened to ``(N, -1)``
    first. Parameters are named like an ``nn.Sequential`` of ``Linear`` layers (``0.weight``,
    ``0.bias``, ``2.weight``, ...).

    Args:
        sizes: layer widths ``[n⁽⁰⁾, n⁽¹⁾, ..., n⁽ᴸ⁾]``; at least an input and an output size.
        activation: hidden activation, ``"relu"``, ``"sigmoid"`` or ``"tanh"``.
        output_activation: ``None`` to output logits ``z⁽ᴸ⁾`` (for ``BCEWithLogitsLoss``), or an
            activation name, e.g. ``"sigmoid"`` to output probabilities ``ŷ``.
    """

    def __init__(
        self, sizes: Sequence[int], activation: str = "relu", output_activation: str | None = None
    ) -> None:
        sizes = list(sizes)
        if len(sizes) < 2 or any(not isinstance(s, int) or s <= 0 for s in sizes):
            raise ValueError(
                f"MLP: sizes must list at least two positive integers (input and output widths), "
                f"got sizes={sizes}"
            )
        layers: list[torch.nn.Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(_activation("activation", activation))
        if output_activation is not None:
            layers.append(_activation("output_activation", output_activation))
        super().__init__(*layers)
        self.sizes = sizes

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() > 2:
            input = input.flatten(1)
        return super().forward(input)
