"""``MLP``: the tutorial's feed-forward network built from gdtorch layers."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from gdtorch import _compat
from gdtorch.autograd import MLPFunction
from gdtorch.functional import _autocast_enabled
from gdtorch.nn.activation import ReLU, Sigmoid, Tanh
from gdtorch.nn.linear import Linear

ACTIVATION_MODULES: dict[str, type[torch.nn.Module]] = {
    "relu": ReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}


def _activation(argument: str, name: str) -> torch.nn.Module:
    if name not in ACTIVATION_MODULES:
        raise ValueError(
            f"MLP: unknown {argument}={name!r}; expected one of {sorted(ACTIVATION_MODULES)}"
        )
    return ACTIVATION_MODULES[name]()


class MLP(torch.nn.Sequential):
    """Fully connected network ``a⁽ˡ⁾ = g(W⁽ˡ⁾ a⁽ˡ⁻¹⁾ + b⁽ˡ⁾)``, layer by layer.

    ``MLP([12288, 20, 7, 5, 1])`` is the classic 4-layer cat/not-cat network on 64×64×3 images.
    Inputs with more than two dimensions (images ``(N, 3, H, W)``) are flattened to ``(N, -1)``
    first. Parameters are named like an ``nn.Sequential`` of ``Linear`` layers (``0.weight``,
    ``0.bias``, ``2.weight``, ...).

    Two paths give the same values and gradients:

    * ``fused=True`` (the default): a batch of rows runs through the whole network as one
      :class:`~gdtorch.autograd.MLPFunction`, forward propagation then backpropagation in one
      autograd node. It is faster because autograd's cost per node dominates small networks,
      and each layer keeps one tensor (its output ``a``) for both its own slope and the
      ``∂C/∂W`` of the layer above. What the fused node cannot show, it does not hide: when a
      module hook is registered (e.g. by :func:`gdtorch.audit`), a layer was replaced, a bias
      removed or a weight parametrized, under autocast (which casts per layer), or for a
      complex input to a ReLU network, the layers run one by one, as with ``fused=False``.
    * ``fused=False``: the layers run one by one, a
      :class:`~gdtorch.autograd.LinearFunction` then an activation Function per layer, as the
      tutorial draws the network.

    Args:
        sizes: layer widths ``[n⁽⁰⁾, n⁽¹⁾, ..., n⁽ᴸ⁾]``; at least an input and an output size.
        activation: hidden activation, ``"relu"``, ``"sigmoid"`` or ``"tanh"``.
        output_activation: ``None`` to output logits ``z⁽ᴸ⁾`` (for ``BCEWithLogitsLoss``), or an
            activation name, e.g. ``"sigmoid"`` to output probabilities ``ŷ``.
        fused: run the network as one ``MLPFunction`` (``True``) or layer by layer.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        output_activation: str | None = None,
        fused: bool = True,
    ) -> None:
        sizes = list(sizes)
        if len(sizes) < 2 or any(not isinstance(s, int) or s <= 0 for s in sizes):
            raise ValueError(
                f"MLP: sizes must list at least two positive integers (input and output widths), "
                f"got sizes={sizes}"
            )
        if not isinstance(fused, bool):
            raise TypeError(f"MLP: fused must be True or False, got fused={fused!r}")
        layers: list[torch.nn.Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(_activation("activation", activation))
        if output_activation is not None:
            layers.append(_activation("output_activation", output_activation))
        super().__init__(*layers)
        self.sizes = sizes
        self.fused = fused
        self._layers = tuple(layers)  # the structure the fused path relies on
        self._linears = tuple(m for m in layers if isinstance(m, Linear))
        self._activations = tuple(
            activation if i < len(sizes) - 2 else output_activation for i in range(len(sizes) - 1)
        )

    def extra_repr(self) -> str:
        return "" if self.fused else "fused=False"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() > 2:
            input = input.flatten(1)
        params = self._fused_params(input) if self.fused and input.dim() == 2 else None
        if params is None:
            return super().forward(input)  # layer by layer
        # The layers were built here, so sizes and activations are valid: no need for the
        # argument checks of ``GF.mlp``.
        return MLPFunction.apply(input, self._activations, *params)[-1]

    def _fused_params(self, input: torch.Tensor) -> list[torch.Tensor] | None:
        """``[W⁽¹⁾, b⁽¹⁾, …, W⁽ᴸ⁾, b⁽ᴸ⁾]`` when one ``MLPFunction`` gives what the layers would
        give, and nothing could tell them apart; else ``None`` (see the class docstring)."""
        if _autocast_enabled(input):
            return None
        if input.is_complex() and "relu" in self._activations:
            return None  # to meet gdtorch.functional.relu's error, as torch refuses it too
        if tuple(self._modules.values()) != self._layers:
            return None
        if _compat.has_hooks(self._layers):
            return None
        params = []
        for linear in self._linears:
            weight = linear._parameters.get("weight")
            bias = linear._parameters.get("bias")
            if weight is None or bias is None:
                return None
            params += (weight, bias)
        return params
