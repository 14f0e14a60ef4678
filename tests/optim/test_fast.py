"""GradientDescent's step and zero_grad bookkeeping (gdtorch/optim/_fast.py) against SGD's:
the same profiler ranges under a profiler, the same hooks in the same order, the same gradients
afterwards, and no range opened when nothing records it."""

from __future__ import annotations

import pytest
import torch
from torch.optim import SGD
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from gdtorch.optim import GradientDescent


def _optimizer(cls: type[torch.optim.Optimizer]) -> torch.optim.Optimizer:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(3))]
    for param in params:
        param.grad = torch.ones_like(param)
    return cls(params, lr=0.1)


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return optimizer.param_groups[0]["params"]


def _step_and_zero(optimizer: torch.optim.Optimizer) -> None:
    optimizer.step()
    optimizer.zero_grad()


@pytest.mark.parametrize("cls", [GradientDescent, SGD])
def test_a_profiler_sees_the_step_and_zero_grad_ranges_as_it_sees_sgds(cls):
    optimizer = _optimizer(cls)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        _step_and_zero(optimizer)
    names = {event.name for event in profiler.events()}
    assert f"Optimizer.step#{cls.__name__}.step" in names
    assert f"Optimizer.zero_grad#{cls.__name__}.zero_grad" in names


@pytest.mark.parametrize(("cls", "ranges"), [(GradientDescent, 0), (SGD, 2)])
@pytest.mark.parametrize("with_hook", [False, True])
def test_no_range_is_opened_when_nothing_records_it(cls, ranges, with_hook, monkeypatch):
    opened = []
    record_function = torch.autograd.profiler.record_function

    def counting(name, *args):
        opened.append(name)
        return record_function(name, *args)

    monkeypatch.setattr(torch.autograd.profiler, "record_function", counting)
    optimizer = _optimizer(cls)
    stepped = []
    if with_hook:  # as TensorBoardExtras hooks every step
        optimizer.register_step_post_hook(lambda opt, args, kwargs: stepped.append(opt))
    _step_and_zero(optimizer)
    assert len(opened) == ranges  # SGD opens both ranges anyway: the reference really counts
    assert stepped == ([optimizer] if with_hook else [])


def _hooked_run(cls: type[torch.optim.Optimizer]) -> tuple[list[str], list[torch.Tensor]]:
    """Calls of every kind of step hook, in order, and the parameters after one step."""
    optimizer = _optimizer(cls)
    calls: list[str] = []

    def pre(opt, args, kwargs):
        calls.append(f"pre {type(opt).__name__} {args[1:]} {sorted(kwargs)}")
        return args, {}  # replaces the arguments, as torch allows: drops the closure below

    handles = [
        optimizer.register_step_pre_hook(pre),
        optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append("post")),
        register_optimizer_step_pre_hook(lambda opt, args, kwargs: calls.append("global pre")),
        register_optimizer_step_post_hook(lambda opt, args, kwargs: calls.append("global post")),
    ]
    try:
        result = optimizer.step(closure=lambda: calls.append("closure"))
    finally:
        for handle in handles:
            handle.remove()
    calls.append(f"returned {result}")
    return calls, [p.detach().clone() for p in _params(optimizer)]


def test_step_hooks_run_as_they_do_around_sgd():
    calls, params = _hooked_run(GradientDescent)
    sgd_calls, sgd_params = _hooked_run(SGD)
    assert sgd_calls == [c.replace("GradientDescent", "SGD") for c in calls]
    # torch's order; the closure never ran: the step took the pre-hook's replacement arguments
    assert calls == [
        "global pre",
        "pre GradientDescent () ['closure']",
        "post",
        "global post",
        "returned None",
    ]
    for ours, torchs in zip(params, sgd_params, strict=True):
        assert torch.equal(ours, torchs)


def test_a_pre_hook_returning_something_else_is_refused_as_torch_refuses_it():
    for cls in (GradientDescent, SGD):
        optimizer = _optimizer(cls)
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: "no")
        with pytest.raises(RuntimeError, match="must return None or a tuple"):
            optimizer.step()


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_leaves_what_sgds_leaves(set_to_none):
    results = []
    for cls in (GradientDescent, SGD):
        optimizer = _optimizer(cls)
        grads = [p.grad for p in _params(optimizer)]
        optimizer.zero_grad(set_to_none=set_to_none)
        after = [p.grad for p in _params(optimizer)]
        if set_to_none:
            results.append(after)
        else:  # zeroed in place: the same tensors, now zeros
            assert all(a is g for a, g in zip(after, grads, strict=True))
            results.append([a.tolist() for a in after])
    assert results[0] == results[1]
    if set_to_none:
        assert results[0] == [None, None]


def test_schedulers_still_count_the_steps():
    optimizer = _optimizer(GradientDescent)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.05
    assert optimizer._opt_called  # LRScheduler's step counter saw the step
