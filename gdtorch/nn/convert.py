"""``convert``: swap the ``torch.nn`` twins inside an existing model for gdtorch's, and say so."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from gdtorch.nn.activation import ReLU, Sigmoid, Tanh
from gdtorch.nn.linear import Linear
from gdtorch.nn.loss import BCELoss, BCEWithLogitsLoss, MAELoss, MSELoss

log = logging.getLogger(__name__)

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
# The forwards that only call the children: a module running one of them adds no code of its own.
_CONTAINER_FORWARDS = (torch.nn.Module.forward, torch.nn.Sequential.forward)


def convert(
    module: torch.nn.Module,
    inplace: bool = True,
    *,
    report: bool | Callable[[str], Any] = False,
) -> torch.nn.Module:
    """Replace every ``torch.nn`` layer or loss that has a gdtorch twin, sharing its tensors.

    Like :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`, children are replaced in place
    and the (possibly new) top-level module is returned. Each twin holds the *same* Parameter and
    buffer objects as the module it replaces, so optimisers built before the call keep working
    and the model now trains through gdtorch's hand-written backward. Only exact types are
    swapped: subclasses of torch layers keep their own ``forward``. Twins print as their torch
    namesakes do (a drop-in replacement); :func:`convert_summary` tells them apart.

    What it cannot reach: functional calls (``F.relu``, ``torch.sigmoid``, ...) in a module's own
    ``forward``, which keep torch's backward. The summary names the modules that have such code;
    :class:`gdtorch.handwritten` takes those calls over.

    The summary (e.g. ``Linear ×1, ReLU ×9 converted; Conv2d ×20, BatchNorm2d ×20, ... stay
    torch; ...``) is logged at INFO on the ``gdtorch.nn.convert`` logger.

    Args:
        module: any ``torch.nn.Module``.
        inplace: ``True`` (the default) swaps the children of ``module`` itself; ``False``
            converts a deep copy and leaves ``module`` untouched (the copy's twins share the
            copy's tensors, not the original's).
        report: ``True`` also prints the summary; a callable is given its text instead.

    Returns:
        ``module`` (or its copy) with its twins swapped, or the twin itself when ``module`` is
        one.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Sigmoid())
        >>> convert(model)
        Sequential(
          (0): Linear(in_features=4, out_features=1, bias=True)
          (1): Sigmoid()
        )
        >>> print(convert_summary(model))
        Linear ×1, Sigmoid ×1 converted
    """
    if not inplace:
        module = copy.deepcopy(module)
    converted = _swap(module)
    summary = convert_summary(converted)
    log.info("convert: %s", summary)
    if report is True:
        print(summary)
    elif report:
        report(str(summary))
    return converted


def _swap(module: torch.nn.Module) -> torch.nn.Module:
    twin = TWINS.get(type(module))
    if twin is not None:
        converted = twin.__new__(twin)
        converted.__dict__ = module.__dict__.copy()
        converted._parameters = module._parameters.copy()  # same Parameter objects, own dict
        converted._buffers = module._buffers.copy()
        return converted
    for name, child in module.named_children():
        new_child = _swap(child)
        if new_child is not child:
            module._modules[name] = new_child
    return module


@dataclass(frozen=True)
class ConvertSummary:
    """Which modules of a model run gdtorch's hand-written backward, and which torch's.

    Each mapping counts modules by class name, in the order they first appear in
    ``named_modules()``; ``str(summary)`` is one line.

    Attributes:
        converted: gdtorch layers and losses (the twins ``convert`` puts in, or any gdtorch
            module): their backward is hand-written.
        stay_torch: other modules without children (``Conv2d``, ``BatchNorm2d``, ``Dropout``, a
            subclass of a torch layer, ...): torch's backward.
        own_forward: modules with children and a ``forward`` of their own (``ResNet``,
            ``BasicBlock``, a user's model class): functional calls in that code (``F.relu``,
            ``x + y``, ...) keep torch's backward unless run under :class:`gdtorch.handwritten`.
    """

    converted: Mapping[str, int]
    stay_torch: Mapping[str, int]
    own_forward: Mapping[str, int]

    def __str__(self) -> str:
        parts = [f"{_counts(self.converted)} converted" if self.converted else "nothing converted"]
        if self.stay_torch:
            parts.append(f"{_counts(self.stay_torch)} stay torch")
        if self.own_forward:
            parts.append(
                f"{_counts(self.own_forward)} run their own forward, whose functional calls stay "
                f"torch (gdtorch.handwritten() takes them over)"
            )
        return "; ".join(parts)


def convert_summary(module: torch.nn.Module) -> ConvertSummary:
    """What runs gdtorch's hand-written backward in ``module``, and what stays on torch's.

    Read off the module as it is now, converted or not.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
        >>> print(convert_summary(convert(model)))
        ReLU ×1 converted; Conv2d ×1 stay torch
    """
    converted: dict[str, int] = {}
    stay_torch: dict[str, int] = {}
    own_forward: dict[str, int] = {}
    for submodule in module.modules():
        cls = type(submodule)
        gdtorch_class = cls.__module__.startswith("gdtorch.")
        if next(submodule.children(), None) is None:
            counts = converted if gdtorch_class else stay_torch
        elif gdtorch_class or cls.forward in _CONTAINER_FORWARDS:
            continue
        else:
            counts = own_forward
        counts[cls.__name__] = counts.get(cls.__name__, 0) + 1
    return ConvertSummary(converted, stay_torch, own_forward)


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} ×{n}" for name, n in counts.items())
