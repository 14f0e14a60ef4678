"""The cost ``C(ŷ, y)`` as :class:`~gdtorch.lightning.CatClassifier` computes it, for the callbacks
that compute it again outside a training step (the gradient audit, the loss landscape)."""

from __future__ import annotations

import torch
from torch import Tensor


class TargetsLikeOutput(torch.nn.Module):
    """``C(ŷ, y)`` with ``y`` cast to ``ŷ``'s dtype and reshaped ``view_as(ŷ)``, as
    :class:`~gdtorch.lightning.CatClassifier` does before calling its loss.

    Args:
        loss_fn: the cost function ``C(output, target)``.
    """

    def __init__(self, loss_fn: torch.nn.Module) -> None:
        super().__init__()
        self.loss_fn = loss_fn

    def forward(self, output: Tensor, targets: Tensor) -> Tensor:
        return self.loss_fn(output, targets.to(output.dtype).view_as(output))
