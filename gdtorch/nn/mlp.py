"""``MLP``: the tutorial's feed-forward network built from gdtorch layers."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch.nn.modules.module import _has_any_global_hook

from gdtorch.autograd import MLPFunction
from gdtorch.functional import _autocast_enabled
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

    A batch of rows runs through the whole network as one hand-written
    :class:`~gdtorch.autograd.MLPFunction` (forward propagation, then backpropagation layer by
    layer), which is faster than one autograd node per layer; when that could be told apart
    (hooks, replaced layers, autocast) the layers are called one by one.

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
        self._layers = tuple(layers)  # the structure the fused forward relies on
        self._linears = tuple(m for m in layers if isinstance(m, Linear))
        self._activations = tuple(
            activation if i < len(sizes) - 2 else output_activation for i in range(len(sizes) - 1)
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() > 2:
            input = input.flatten(1)
        params = self._fused_params(input) if input.dim() == 2 else None
        if params is None:
            return super().forward(input)
        # The layers were built here, so sizes and activations are valid: no need for the
        # argument checks of ``GF.mlp``.
        return MLPFunction.apply(input, self._activations, *params)[-1]

    def _fused_params(self, input: torch.Tensor) -> list[torch.Tensor] | None:
        """``[W⁽¹⁾, b⁽¹⁾, …, W⁽ᴸ⁾, b⁽ᴸ⁾]`` when one :class:`~gdtorch.autograd.MLPFunction` can
        stand in for the layers, else ``None``.

        It gives the same result with one autograd node instead of one per layer (the
        per-node cost dominates small networks). The layers are called one by one instead
        whenever that could be observed or differ: when any module hook is registered (e.g.
        by :func:`gdtorch.audit`), when the layers were replaced, a bias removed or a weight
        parametrized, and under autocast (where the layers cast per layer, as torch does). A
        complex input to a ReLU network also goes layer by layer, to meet
        :func:`gdtorch.functional.relu`'s error (ReLU takes no complex numbers, as in torch).
        """
        if _autocast_enabled(input) or _has_any_global_hook():
            return None
        if input.is_complex() and "relu" in self._activations:
            return None
        if tuple(self._modules.values()) != self._layers:
            return None
        for module in self._layers:
            if (
                module._forward_hooks
                or module._forward_pre_hooks
                or module._backward_hooks
                or module._backward_pre_hooks
            ):
                return None
        params = []
        for linear in self._linears:
            weight = linear._parameters.get("weight")
            bias = linear._parameters.get("bias")
            if weight is None or bias is None:
                return None
            params += (weight, bias)
        return params
