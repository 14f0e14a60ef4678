"""Speed, not maths: the bookkeeping around each :class:`~gdtorch.optim.GradientDescent` call.

``torch.optim.Optimizer`` wraps every ``step`` (``Optimizer.profile_hook_step``) and every
``zero_grad`` in a profiler range, ``record_function``, which it opens and closes even when no
profiler is running; on a small network that bookkeeping costs more than the update itself.
:func:`profile_hook_step` and :func:`zero_grad` run torch's own code whenever anything could
see the difference — a profiler recording, a step hook registered, gradients zeroed rather than
dropped — and otherwise go straight to the work. ``scripts/benchmark.py`` (``--only tricks``)
measures what this buys by making :func:`profiler_running` always true.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch.optim import Optimizer

from gdtorch import _compat

profiler_running = _compat.profiler_enabled


def profile_hook_step(step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` as ``Optimizer.profile_hook_step`` wraps it, the range opened only when recorded.

    Under a profiler, or with a step pre- or post-hook registered, torch's wrapper runs:
    the range ``Optimizer.step#<class>.step``, the hooks in torch's order, and the profiler's
    ``_optimizer_step_code`` entry point. Otherwise none of them has anything to do, and
    ``step`` runs alone.
    """
    hooked = Optimizer.profile_hook_step(step)

    @functools.wraps(step)
    def wrapper(self: Optimizer, *args: Any, **kwargs: Any) -> Any:
        if profiler_running() or _compat.has_step_hooks(self):
            return hooked(self, *args, **kwargs)
        return step(self, *args, **kwargs)

    return wrapper


@_compat.disable_dynamo
def zero_grad(optimizer: Optimizer, set_to_none: bool = True) -> None:
    """``Optimizer.zero_grad``: every gradient set to ``None``, without a range when unrecorded.

    Zeroing in place (``set_to_none=False``), or under a profiler, runs torch's own
    ``zero_grad``, range and all.
    """
    if not set_to_none or profiler_running():
        Optimizer.zero_grad(optimizer, set_to_none)
        return
    for group in optimizer.param_groups:
        for param in group["params"]:
            param.grad = None
