"""Speed, not maths: the bookkeeping around each :class:`~gdtorch.optim.GradientDescent` call.

``torch.optim.Optimizer`` wraps every ``step`` (``Optimizer.profile_hook_step``) and every
``zero_grad`` in a profiler range, ``record_function``, which it opens and closes even when no
profiler is running; on a small network that bookkeeping costs more than the update itself.
:func:`profile_hook_step` and :func:`zero_grad` run torch's own code under a profiler, and
otherwise do the same work without the range: the same step hooks in the same order, the same
gradients left behind. ``scripts/benchmark.py`` (``--only tricks``) measures what this buys by
making :func:`profiler_running` always true.
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

    Under a profiler, torch's own wrapper runs: the range ``Optimizer.step#<class>.step``, the
    step hooks, and the profiler's ``_optimizer_step_code`` entry point. Otherwise the hooks run
    as torch runs them — pre-hooks, which may replace the arguments, then ``step``, then
    post-hooks, each in torch's order — without the range, which nothing would record.
    """
    hooked = Optimizer.profile_hook_step(step)

    @functools.wraps(step)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        optimizer = args[0]
        if profiler_running():
            return hooked(*args, **kwargs)
        pre_hooks, post_hooks = _compat.step_hooks(optimizer)
        for pre_hook in pre_hooks:
            result = pre_hook(optimizer, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(
                        f"{step} must return None or a tuple of (new_args, new_kwargs), but got "
                        f"{result}."
                    )
                args, kwargs = result
        out = step(*args, **kwargs)
        for post_hook in post_hooks:
            post_hook(optimizer, args, kwargs)
        return out

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
