"""Property tests: gdtorch's losses and layers agree with torch on random shapes and options.

For every loss (MAE, MSE, BCE, BCE with logits) and layer (Linear, Sigmoid, ReLU, Tanh):
shapes of 0 to 3 dimensions with sizes 0 to 4 (empty tensors included), float32 and float64,
every reduction, with and without ``weight`` / ``pos_weight`` (broadcast as torch allows), and
edge values (exact 0 and 1 probabilities, exact 0 pre-activations). Values and the gradients
with respect to every differentiable argument must match ``torch.nn.functional``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdtorch import functional as GF

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

shapes = st.lists(st.integers(0, 4), max_size=3).map(tuple)
dtypes = st.sampled_from([torch.float32, torch.float64])
reductions = st.sampled_from(["none", "mean", "sum"])
seeds = st.integers(0, 2**31 - 1)


@st.composite
def broadcastable_to(draw, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """``None`` or a shape that broadcasts to ``shape`` without changing it (suffix, some 1s)."""
    if not draw(st.booleans()):
        return None
    suffix = shape[len(shape) - draw(st.integers(0, len(shape))) :]
    return tuple(1 if draw(st.booleans()) else size for size in suffix)


def _tensors(seed: int, dtype: torch.dtype, *shapes_and_kinds):
    """Seeded random tensors; kinds: "normal", "unit" (in [0, 1]), "edge01" (with 0s and 1s)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for shape, kind in shapes_and_kinds:
        if shape is None:
            out.append(None)
            continue
        if kind == "normal":
            t = torch.randn(shape, generator=generator, dtype=torch.float64) * 2
        else:
            t = torch.rand(shape, generator=generator, dtype=torch.float64)
            if kind == "edge01":
                pick = torch.rand(shape, generator=generator, dtype=torch.float64)
                t = torch.where(pick < 0.15, 0.0, torch.where(pick > 0.85, 1.0, t))
        out.append(t.to(dtype))
    return out


def _compare(ours_fn, theirs_fn, inputs: list[torch.Tensor], differentiable: list[int], seed: int):
    """Forward values, then gradients w.r.t. ``inputs[i]`` for ``i`` in ``differentiable``."""
    ours_in = [None if t is None else t.clone() for t in inputs]
    theirs_in = [None if t is None else t.clone() for t in inputs]
    for i in differentiable:
        ours_in[i].requires_grad_()
        theirs_in[i].requires_grad_()
    output, expected = ours_fn(*ours_in), theirs_fn(*theirs_in)
    assert output.shape == expected.shape and output.dtype == expected.dtype
    torch.testing.assert_close(output, expected, equal_nan=True)
    grad_output = torch.randn(
        expected.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64
    ).to(expected.dtype)
    wrt_ours = [ours_in[i] for i in differentiable]
    wrt_theirs = [theirs_in[i] for i in differentiable]
    grads = torch.autograd.grad(output, wrt_ours, grad_output, allow_unused=True)
    references = torch.autograd.grad(expected, wrt_theirs, grad_output, allow_unused=True)
    for i, grad, reference in zip(differentiable, grads, references, strict=True):
        if reference is None:
            reference = torch.zeros_like(inputs[i])
        if grad is None:
            grad = torch.zeros_like(inputs[i])
        torch.testing.assert_close(grad, reference, equal_nan=True, msg=f"gradient {i}")


@pytest.mark.slow
@pytest.mark.parametrize(("ours", "theirs"), [(GF.l1_loss, F.l1_loss), (GF.mse_loss, F.mse_loss)])
@SETTINGS
@given(shape=shapes, dtype=dtypes, reduction=reductions, weighted=st.booleans(), seed=seeds)
def test_mae_and_mse_match_torch(ours, theirs, shape, dtype, reduction, weighted, seed):
    input, target, weight = _tensors(
        seed, dtype, (shape, "normal"), (shape, "unit"), (shape if weighted else None, "unit")
    )

    def call(fn):
        return lambda x, y, w: fn(x, y, reduction=reduction, weight=w)

    differentiable = [0, 1, 2] if weighted else [0, 1]
    _compare(call(ours), call(theirs), [input, target, weight], differentiable, seed)


@pytest.mark.slow
@SETTINGS
@given(data=st.data(), shape=shapes, dtype=dtypes, reduction=reductions, seed=seeds)
def test_binary_cross_entropy_matches_torch(data, shape, dtype, reduction, seed):
    weight_shape = data.draw(broadcastable_to(shape), label="weight shape")
    edges = data.draw(st.booleans(), label="exact 0s and 1s")
    input, target, weight = _tensors(
        seed,
        dtype,
        (shape, "edge01" if edges else "unit"),
        (shape, "edge01"),
        (weight_shape, "unit"),
    )
    if edges:  # keep ŷ = y where ŷ hits 0 or 1: the gradient is 0/0 there (torch: ±huge)
        input = torch.where((input == 0) | (input == 1), target, input)

    def call(fn):
        return lambda x, y, w: fn(x, y, weight=w, reduction=reduction)

    ours, theirs = GF.binary_cross_entropy, F.binary_cross_entropy
    _compare(call(ours), call(theirs), [input, target, weight], [0, 1], seed)


@pytest.mark.slow
@SETTINGS
@given(data=st.data(), shape=shapes, dtype=dtypes, reduction=reductions, seed=seeds)
def test_binary_cross_entropy_with_logits_matches_torch(data, shape, dtype, reduction, seed):
    weight_shape = data.draw(broadcastable_to(shape), label="weight shape")
    pos_weight_shape = data.draw(broadcastable_to(shape), label="pos_weight shape")
    input, target, weight, pos_weight = _tensors(
        seed,
        dtype,
        (shape, "normal"),
        (shape, "edge01"),
        (weight_shape, "unit"),
        (pos_weight_shape, "unit"),
    )
    if pos_weight is not None:
        pos_weight = pos_weight * 3  # weights above and below 1

    def call(fn):
        return lambda x, y, w, p: fn(x, y, weight=w, pos_weight=p, reduction=reduction)

    ours, theirs = GF.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits
    _compare(call(ours), call(theirs), [input, target, weight, pos_weight], [0, 1], seed)


@SETTINGS
@given(
    batch=st.lists(st.integers(0, 4), max_size=2).map(tuple),
    in_features=st.integers(1, 4),
    out_features=st.integers(1, 4),
    bias=st.booleans(),
    dtype=dtypes,
    seed=seeds,
)
def test_linear_matches_torch(batch, in_features, out_features, bias, dtype, seed):
    input, weight, b = _tensors(
        seed,
        dtype,
        ((*batch, in_features), "normal"),
        ((out_features, in_features), "normal"),
        ((out_features,) if bias else None, "normal"),
    )
    differentiable = [0, 1, 2] if bias else [0, 1]
    _compare(GF.linear, F.linear, [input, weight, b], differentiable, seed)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(GF.sigmoid, torch.sigmoid), (GF.relu, F.relu), (GF.tanh, torch.tanh)],
    ids=["sigmoid", "relu", "tanh"],
)
@SETTINGS
@given(shape=shapes, dtype=dtypes, zeros=st.booleans(), seed=seeds)
def test_activations_match_torch(ours, theirs, shape, dtype, zeros, seed):
    (input,) = _tensors(seed, dtype, (shape, "normal"))
    if zeros:  # exact zeros: ReLU's kink, where torch's gradient is 0
        input = torch.where(input.abs() < 1, torch.zeros_like(input), input)
    _compare(ours, theirs, [input], [0], seed)
