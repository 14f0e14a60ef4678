"""Loss modules with torch's signatures over gdtorch's hand-written cost functions."""

from __future__ import annotations

import torch
from torch import Tensor

from gdtorch import functional as GF


class MAELoss(torch.nn.L1Loss):
    """Mean absolute error, the tutorial's MAE: ``C = mean |ŷ − y|``. ``L1Loss`` is its torch name.

    Args:
        size_average: deprecated, as in torch.
        reduce: deprecated, as in torch.
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return GF.l1_loss(input, target, reduction=self.reduction)


L1Loss = MAELoss


class MSELoss(torch.nn.MSELoss):
    """Mean squared error: ``C = mean (ŷ − y)²``. Arguments as :class:`MAELoss`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return GF.mse_loss(input, target, reduction=self.reduction)


class BCELoss(torch.nn.BCELoss):
    """Binary cross-entropy on probabilities: ``C = −mean [y log ŷ + (1 − y) log(1 − ŷ)]``.

    Args:
        weight: optional rescaling of each element, kept as the buffer ``weight``.
        size_average: deprecated, as in torch.
        reduce: deprecated, as in torch.
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return GF.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    """Binary cross-entropy on logits, ``C = BCE(σ(z), y)``, with ``∂C/∂z = σ(z) − y``.

    Args:
        weight: optional rescaling of each element, kept as the buffer ``weight``.
        size_average: deprecated, as in torch.
        reduce: deprecated, as in torch.
        reduction: ``"none"``, ``"mean"`` (default) or ``"sum"``.
        pos_weight: optional weight of positive examples per class, the buffer ``pos_weight``.
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return GF.binary_cross_entropy_with_logits(
            input, target, weight=self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )
