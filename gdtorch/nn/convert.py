"""``convert``: swap the ``torch.nn`` twins inside an existing model for gdtorch's."""

from __future__ import annotations

import torch

from gdtorch.nn.activation import ReLU, Sigmoid, Tanh
from gdtorch.nn.linear import Linear
from gdtorch.nn.loss import BCELoss, BCEWithLogitsLoss, MAELoss, MSELoss

TWINS: dict[type[torch.nn.Module], type[torch.nn.Module]] = {
    torch.nn.Linear: Linear,
    torch.nn.Sigmoid: Sigmoid,
    torch.nn.ReLU: ReLU,
    torch.nn.Tanh: Tanh,
    torch.nn.L1Loss: MAELoss,
    torch.nn.MSELoss: MSELoss,
    torch.nn.BCELoss: BCELoss,
    torch.nn.BCEWithLogitsLoss: BCEWithLogitsLoss,
}


def convert(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every ``torch.nn`` layer or loss that has a gdtorch twin, sharing its tensors.

    Like :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`, children are replaced in place
    and the (possibly new) top-level module is returned. Each twin holds the *same* Parameter and
    buffer objects as the module it replaces, so optimisers built before the call keep working
    and the model now trains through gdtorch's hand-written backward. Only exact types are
    swapped: subclasses of torch layers keep their own ``forward``.

    Args:
        module: any ``torch.nn.Module``.

    Returns:
        ``module`` with its twins swapped, or the twin itself when ``module`` is one.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Sigmoid())
        >>> convert(model)
        Sequential(
          (0): Linear(in_features=4, out_features=1, bias=True)
          (1): Sigmoid()
        )
    """
    twin = TWINS.get(type(module))
    if twin is not None:
        converted = twin.__new__(twin)
        converted.__dict__ = module.__dict__.copy()
        converted._parameters = module._parameters.copy()  # same Parameter objects, own dict
        converted._buffers = module._buffers.copy()
        return converted
    for name, child in module.named_children():
        new_child = convert(child)
        if new_child is not child:
            module._modules[name] = new_child
    return module
