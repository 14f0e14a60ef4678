"""The one place gdtorch reaches into torch's private APIs.

Each name below wraps one private torch symbol under a name that says what gdtorch asks of it,
and ``tests/test_compat.py`` checks each against torch's public behaviour. A torch upgrade that
moves or changes one of them breaks here and in that test, nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import FunctionMeta
from torch.nn import _reduction
from torch.nn.modules import module as _module
from torch.optim import optimizer as _optimizer
from torch.optim.optimizer import Optimizer, _default_to_fused_or_foreach

__all__ = [
    "FunctionMeta",
    "any_autocast_enabled",
    "default_foreach",
    "disable_dynamo",
    "foreach_add",
    "foreach_add_",
    "foreach_mul_",
    "foreach_neg",
    "foreach_norm",
    "functorch_transforms_active",
    "group_by_device_and_dtype",
    "has_hooks",
    "legacy_reduction",
    "profiler_enabled",
    "step_hooks",
]

# ``torch.autograd.Function``'s metaclass, which ``torch.compile`` recognises by exact type.
# :mod:`gdtorch.autograd._fast` makes classes with it.
FunctionMeta = FunctionMeta

functorch_transforms_active = torch._C._are_functorch_transforms_active
"""Whether a ``torch.func`` transform (``vmap``, ``grad``, ...) is running now."""

any_autocast_enabled = torch._C._is_any_autocast_enabled
"""Whether autocast is on for any device: ten times cheaper than asking per device."""

profiler_enabled = torch._C._autograd._profiler_enabled
"""Whether a profiler (``torch.profiler.profile``, ``emit_nvtx``, ...) records this thread."""

disable_dynamo = torch._disable_dynamo
"""Decorator: ``torch.compile`` runs the function eagerly instead of tracing it, as it does
``torch.optim.Optimizer.zero_grad``."""

# The multi-tensor kernels ``torch.optim.SGD`` uses for its ``foreach`` path.
foreach_add = torch._foreach_add
foreach_add_ = torch._foreach_add_
foreach_mul_ = torch._foreach_mul_
foreach_neg = torch._foreach_neg
foreach_norm = torch._foreach_norm


def legacy_reduction(size_average: bool | None, reduce: bool | None) -> str:
    """The ``reduction`` torch's losses read from the deprecated ``size_average`` and ``reduce``,
    with torch's deprecation warning."""
    return _reduction.legacy_get_string(size_average, reduce)


def default_foreach(params: Sequence[Tensor]) -> bool:
    """Whether ``torch.optim`` would take the multi-tensor path for ``params`` by default."""
    _, foreach = _default_to_fused_or_foreach(list(params), differentiable=False, use_fused=False)
    return foreach


def group_by_device_and_dtype(
    tensor_lists: list[list[Tensor | None]],
) -> dict[tuple[torch.device, torch.dtype], tuple[list[list[Tensor | None]], list[int]]]:
    """``tensor_lists`` split by device and dtype, with each group's indices, as SGD splits them."""
    return Optimizer._group_tensors_by_device_and_dtype(tensor_lists, with_indices=True)


def has_hooks(modules: Sequence[torch.nn.Module]) -> bool:
    """Whether a forward or backward hook could see any of ``modules`` run: one registered on
    it, or a global one (``torch.nn.modules.module.register_module_forward_hook`` and kin)."""
    if _module._has_any_global_hook():
        return True
    for module in modules:
        if (
            module._forward_hooks
            or module._forward_pre_hooks
            or module._backward_hooks
            or module._backward_pre_hooks
        ):
            return True
    return False


def step_hooks(optimizer: Optimizer) -> tuple[list, list]:
    """The step pre-hooks and post-hooks ``optimizer.step()`` runs, each list in torch's order:
    pre-hooks global first (``torch.optim.optimizer.register_optimizer_step_pre_hook``), then the
    optimizer's own; post-hooks the optimizer's own first, then global."""
    return (
        [
            *_optimizer._global_optimizer_pre_hooks.values(),
            *optimizer._optimizer_step_pre_hooks.values(),
        ],
        [
            *optimizer._optimizer_step_post_hooks.values(),
            *_optimizer._global_optimizer_post_hooks.values(),
        ],
    )
