"""Each private torch symbol gdtorch uses, through ``gdtorch._compat``, against torch's public
behaviour: a torch upgrade that changes one fails here, by name."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from gdtorch import _compat


def test_function_meta_is_the_metaclass_of_autograd_functions():
    assert type(torch.autograd.Function) is _compat.FunctionMeta

    made = _compat.FunctionMeta(
        "Double",
        (torch.autograd.Function,),
        {
            "forward": staticmethod(lambda ctx, x: 2 * x),
            "backward": staticmethod(lambda ctx, g: 2 * g),
        },
    )
    x = torch.ones(2, requires_grad=True)
    made.apply(x).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]


def test_functorch_transforms_active_is_true_only_inside_a_transform():
    seen = []

    def f(x):
        seen.append(_compat.functorch_transforms_active())
        return x.sin()

    torch.func.vmap(f)(torch.ones(3))
    torch.func.grad(lambda x: f(x).sum())(torch.ones(3))
    assert seen == [True, True] and _compat.functorch_transforms_active() is False


def test_any_autocast_enabled_follows_torch_autocast():
    assert _compat.any_autocast_enabled() is False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _compat.any_autocast_enabled() is True
    assert _compat.any_autocast_enabled() is False


@pytest.mark.parametrize(
    ("size_average", "reduce", "expected"),
    [(None, None, "mean"), (False, None, "sum"), (True, True, "mean"), (None, False, "none")],
)
def test_legacy_reduction_reads_the_deprecated_arguments_as_torch_does(
    size_average, reduce, expected
):
    with pytest.warns(UserWarning, match="deprecated"):
        assert _compat.legacy_reduction(size_average, reduce) == expected
    x, y = torch.rand(4), torch.rand(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = torch.nn.functional.mse_loss(x, y, size_average, reduce)
    assert torch.equal(reference, torch.nn.functional.mse_loss(x, y, reduction=expected))


def test_default_foreach_is_off_for_cpu_tensors_as_sgd_chooses():
    params = [torch.zeros(2)]
    assert _compat.default_foreach(params) is False  # torch's default on CPU: the for loop
    optimizer = torch.optim.SGD(params, lr=0.1)
    assert optimizer.defaults["foreach"] is None  # SGD decides at step time, as gdtorch does


def test_group_by_device_and_dtype_splits_and_keeps_indices():
    a, b, c = torch.zeros(1), torch.zeros(1, dtype=torch.float64), torch.ones(1)
    groups = _compat.group_by_device_and_dtype([[a, b, c], [a, b, c]])
    assert sorted(str(key[1]) for key in groups) == ["torch.float32", "torch.float64"]
    (tensors, indices) = groups[(torch.device("cpu"), torch.float32)]
    assert indices == [0, 2] and tensors[0][0] is a and tensors[0][1] is c


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "reference"),
    [
        ("foreach_add", (True,), {"alpha": 2.0}, lambda x, y: x + 2 * y),
        ("foreach_add_", (True,), {"alpha": 2.0}, lambda x, y: x + 2 * y),
        ("foreach_mul_", (False,), {}, lambda x: x * 3.0),
        ("foreach_neg", (False,), {}, lambda x: -x),
        ("foreach_norm", (False,), {}, torch.linalg.vector_norm),
    ],
)
def test_foreach_kernels_match_their_one_tensor_ops(name, args, kwargs, reference):
    xs = [torch.randn(3), torch.randn(2, 2)]
    ys = [torch.randn(3), torch.randn(2, 2)]
    expected = [reference(x, y) if args[0] else reference(x) for x, y in zip(xs, ys, strict=True)]
    fn = getattr(_compat, name)
    if name == "foreach_mul_":
        result = fn(xs, 3.0) or xs
    elif args[0]:
        result = fn(xs, ys, **kwargs) or xs
    else:
        result = fn(xs)
    for ours, theirs in zip(result, expected, strict=True):
        torch.testing.assert_close(ours, theirs)


def test_has_hooks_sees_module_hooks_and_global_hooks():
    layers = [torch.nn.Linear(2, 2), torch.nn.ReLU()]
    assert _compat.has_hooks(layers) is False
    handle = layers[1].register_forward_pre_hook(lambda module, args: None)
    assert _compat.has_hooks(layers) is True
    handle.remove()
    handle = layers[0].register_full_backward_hook(lambda module, gi, go: None)
    assert _compat.has_hooks(layers) is True
    handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, a, o: None)
    try:
        assert _compat.has_hooks(layers) is True
    finally:
        handle.remove()
    assert _compat.has_hooks(layers) is False


def test_profiler_enabled_is_true_only_while_a_profiler_records():
    assert _compat.profiler_enabled() is False
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        assert _compat.profiler_enabled() is True
    with torch.autograd.profiler.profile():
        assert _compat.profiler_enabled() is True
    assert _compat.profiler_enabled() is False


def test_disable_dynamo_makes_compile_run_the_function_eagerly():
    seen = []

    @_compat.disable_dynamo
    def eager(x):
        seen.append(torch.compiler.is_compiling())
        return x + 1

    compiled = torch.compile(lambda x: eager(x) * 2, backend="eager")
    assert compiled(torch.ones(2)).tolist() == [4.0, 4.0]
    assert seen == [False]


def test_step_hooks_lists_an_optimizers_hooks_and_global_ones_in_torchs_order():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    assert _compat.step_hooks(optimizer) == ([], [])
    calls = []

    def hook(name):
        return lambda opt, args, kwargs: calls.append(name)

    handles = [
        optimizer.register_step_pre_hook(hook("pre")),
        optimizer.register_step_post_hook(hook("post")),
        register_optimizer_step_pre_hook(hook("global pre")),
        register_optimizer_step_post_hook(hook("global post")),
    ]
    try:
        pre_hooks, post_hooks = _compat.step_hooks(optimizer)
        for h in (*pre_hooks, *post_hooks):
            h(optimizer, (), {})
        listed, calls[:] = list(calls), []
        optimizer.step()  # torch's own order, through torch's own wrapper
        assert listed == calls == ["global pre", "pre", "post", "global post"]
    finally:
        for handle in handles:
            handle.remove()
    assert _compat.step_hooks(optimizer) == ([], [])
