"""A classifier's parts rebuilt from the run config a checkpoint carries — torch's and gdtorch's
classes only, so that loading a checkpoint never runs code named in it."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from hydra.utils import instantiate

from gdtorch.lightning.checkpoint_io import CheckpointError

# Where a checkpoint's ``_target_`` may point, and what it must be there.
ALLOWED_MODULES = ("gdtorch.nn", "gdtorch.optim", "torch.nn", "torch.optim")
ALLOWED_BASES = (
    torch.nn.Module,
    torch.optim.Optimizer,
    torch.optim.lr_scheduler.LRScheduler,
    torch.optim.lr_scheduler.ReduceLROnPlateau,
)


def parts_from_config(config: Mapping[str, Any], **given: Any) -> tuple[Any, Any, Any, Any]:
    """``(net, loss, optimizer, scheduler)`` as the run config ``config`` made them.

    ``net`` and ``loss`` are modules, ``optimizer`` and ``scheduler`` the partial factories
    :class:`~gdtorch.lightning.CatClassifier` takes (``scheduler`` is ``None`` without one).

    Args:
        config: a gdtorch-train run config as plain containers (a checkpoint's
            ``hyper_parameters["config"]``), with ``model``, ``loss``, ``optimizer`` and
            optionally ``scheduler`` entries.
        **given: parts already at hand (``net=``, ``loss=``, ``optimizer=``, ``scheduler=``),
            kept as they are: their entries are neither checked nor built.

    Raises:
        CheckpointError: an entry needed is missing, or a ``_target_`` in it is not a class of
            ``torch.nn``, ``torch.optim``, ``gdtorch.nn`` or ``gdtorch.optim`` (a network of your
            own: pass it, ``CatClassifier.load_from_checkpoint(path, net=MyNet(...))``).
    """
    entries = {"net": "model", "loss": "loss", "optimizer": "optimizer", "scheduler": "scheduler"}
    needed = {part: key for part, key in entries.items() if given.get(part) is None}
    missing = [key for part, key in needed.items() if part != "scheduler" and not config.get(key)]
    if missing:
        raise CheckpointError(
            f"the checkpoint's run config has no {', '.join(missing)}: it was not written by "
            f"gdtorch-train; pass them, e.g. CatClassifier.load_from_checkpoint(path, net=..., "
            f"loss=..., optimizer=...)"
        )
    for key in needed.values():
        for target in _targets(config.get(key)):
            _check_target(target)
    built = {
        part: None if config.get(key) is None else instantiate(config[key])
        for part, key in needed.items()
    }
    parts = {**{part: given.get(part) for part in entries}, **built}
    return parts["net"], parts["loss"], parts["optimizer"], parts["scheduler"]


def _targets(node: Any) -> Iterator[Any]:
    """Every ``_target_`` in a config tree."""
    if isinstance(node, Mapping):
        if "_target_" in node:
            yield node["_target_"]
        for value in node.values():
            yield from _targets(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _targets(value)


def _check_target(target: Any) -> None:
    module_name, _, name = str(target).rpartition(".")
    allowed_module = any(
        module_name == allowed or module_name.startswith(f"{allowed}.")
        for allowed in ALLOWED_MODULES
    )
    found = None
    if allowed_module:
        try:
            found = getattr(importlib.import_module(module_name), name, None)
        except ImportError:
            found = None
    if not (inspect.isclass(found) and issubclass(found, ALLOWED_BASES)):
        raise CheckpointError(
            f"the checkpoint's run config names _target_ {target!r}, which is not a module, "
            f"optimizer or scheduler class of {', '.join(ALLOWED_MODULES)}: a checkpoint may "
            f"only rebuild those. For a network of your own, pass it: "
            f"CatClassifier.load_from_checkpoint(path, net=MyNet(...))"
        )
