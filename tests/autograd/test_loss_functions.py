"""The four cost Functions against torch.nn.functional's losses, values and gradients.

Gradients are checked for both ``input`` and ``target`` (a loss between two network outputs)
and, for MAE/MSE, the ``weight`` torch also differentiates.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.autograd import gradcheck, gradgradcheck

from gdtorch import functional as GF
from gdtorch.autograd import (
    BCELossFunction,
    BCEWithLogitsLossFunction,
    MAELossFunction,
    MSELossFunction,
    _fast,
)
from tests.cases import SHAPE_CASES

REDUCTIONS = ["none", "mean", "sum"]

# name → (gdtorch functional, Function, torch reference, input range, weight differentiable)
LOSSES = {
    "mae": (GF.l1_loss, MAELossFunction, F.l1_loss, (-2.0, 2.0), True),
    "mse": (GF.mse_loss, MSELossFunction, F.mse_loss, (-2.0, 2.0), True),
    "bce": (GF.binary_cross_entropy, BCELossFunction, F.binary_cross_entropy, (0.05, 0.95), False),
    "bce_logits": (
        GF.binary_cross_entropy_with_logits,
        BCEWithLogitsLossFunction,
        F.binary_cross_entropy_with_logits,
        (-4.0, 4.0),
        False,
    ),
}


def _inputs(make_tensor, name, shape, dtype=torch.float64, layout="contiguous"):
    _, _, _, (low, high), _ = LOSSES[name]
    input = make_tensor(shape, dtype, layout, low, high)
    target = make_tensor(shape, dtype, layout, 0.0, 1.0)
    if name == "mae":  # keep |ŷ − y| away from its kink at 0
        with torch.no_grad():
            input.add_(torch.where(input >= target, 0.1, -0.1))
    return input, target


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSSES)
def test_gradcheck_and_gradgradcheck(make_tensor, name, reduction):
    fn = LOSSES[name][0]
    input, target = _inputs(make_tensor, name, (3, 4))
    assert gradcheck(lambda a, y: fn(a, y, reduction=reduction), (input, target))
    assert gradgradcheck(lambda a, y: fn(a, y, reduction=reduction), (input, target))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["mae", "mse"])
def test_weighted_pointwise_gradcheck_including_weight(make_tensor, name, reduction):
    fn = LOSSES[name][0]
    input, target = _inputs(make_tensor, name, (3, 4))
    weight = make_tensor((3, 4), low=0.5, high=2.0)
    call = lambda a, y, w: fn(a, y, reduction=reduction, weight=w)  # noqa: E731
    assert gradcheck(call, (input, target, weight))
    assert gradgradcheck(call, (input, target, weight))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_pos_weight_gradcheck(make_tensor, reduction):
    input, target = _inputs(make_tensor, "bce_logits", (5, 3))
    weight = make_tensor((5, 3), low=0.5, high=2.0, grad=False)
    pos_weight = make_tensor((3,), low=0.5, high=3.0, grad=False)
    call = lambda a, y: GF.binary_cross_entropy_with_logits(  # noqa: E731
        a, y, weight=weight, pos_weight=pos_weight, reduction=reduction
    )
    assert gradcheck(call, (input, target))
    assert gradgradcheck(call, (input, target))


def _extras(make_tensor, name, variant, shape, dtype):
    """Keyword arguments for one variant: no weight, an element-wise weight, or pos_weight."""
    if variant == "plain":
        return {}
    differentiable = LOSSES[name][4]
    weight = make_tensor(shape, dtype, low=0.5, high=2.0, grad=differentiable)
    if variant == "weight":
        return {"weight": weight}
    last = shape[-1] if shape else 1
    pos_weight = make_tensor((last,) if shape else (), dtype, low=0.5, high=3.0, grad=False)
    return {"weight": weight, "pos_weight": pos_weight}


VARIANTS = [
    (name, variant)
    for name in LOSSES
    for variant in (
        ["plain", "weight", "pos_weight"] if name == "bce_logits" else ["plain", "weight"]
    )
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("case", "shape", "layout"), SHAPE_CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("name", "variant"), VARIANTS)
def test_matches_torch(make_tensor, name, variant, reduction, case, shape, layout, dtype):
    fn, function, reference, _, _ = LOSSES[name]
    input, target = _inputs(make_tensor, name, shape, dtype, layout)
    extras = _extras(make_tensor, name, variant, shape, dtype)
    ref_input, ref_target = (t.detach().clone().requires_grad_() for t in (input, target))
    ref_extras = {k: v.detach().clone().requires_grad_(v.requires_grad) for k, v in extras.items()}

    loss = fn(input, target, reduction=reduction, **extras)
    expected = reference(ref_input, ref_target, reduction=reduction, **ref_extras)
    assert isinstance(loss.grad_fn, function._backward_cls)
    assert loss.shape == expected.shape and loss.dtype == expected.dtype
    torch.testing.assert_close(loss, expected, equal_nan=True)

    grad_output = torch.rand_like(expected)
    loss.backward(grad_output)
    expected.backward(grad_output)
    torch.testing.assert_close(input.grad, ref_input.grad, equal_nan=True)
    torch.testing.assert_close(target.grad, ref_target.grad, equal_nan=True)
    if "weight" in extras and extras["weight"].requires_grad:
        torch.testing.assert_close(extras["weight"].grad, ref_extras["weight"].grad, equal_nan=True)


def test_bce_clamps_logs_at_minus_100_like_torch():
    input = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    loss = GF.binary_cross_entropy(input, target, reduction="none")
    torch.testing.assert_close(loss, torch.tensor([100.0, 100.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(loss, F.binary_cross_entropy(input, target, reduction="none"))
    loss.sum().backward()
    assert torch.isfinite(input.grad).all()


def test_bce_with_logits_is_stable_for_huge_logits():
    input = torch.tensor([-1000.0, 1000.0, 50.0], requires_grad=True)
    target = torch.tensor([1.0, 0.0, 1.0])
    loss = GF.binary_cross_entropy_with_logits(input, target, reduction="none")
    torch.testing.assert_close(loss, torch.tensor([1000.0, 1000.0, 0.0]))
    loss.sum().backward()
    torch.testing.assert_close(input.grad, torch.tensor([-1.0, 1.0, 0.0]))


@pytest.mark.parametrize("name", LOSSES)
def test_saves_no_more_than_torch(make_tensor, saved_bytes, name):
    fn, _, reference, _, _ = LOSSES[name]
    input, target = _inputs(make_tensor, name, (256, 1), torch.float32)
    target.requires_grad_(False)
    assert saved_bytes(lambda: fn(input, target)) <= saved_bytes(lambda: reference(input, target))


def test_bce_with_logits_shares_its_constants_and_never_an_inference_tensor(monkeypatch):
    monkeypatch.setattr(_fast, "_CONSTANTS", {})
    logits = torch.randn(5, dtype=torch.float64, requires_grad=True)
    target = torch.rand(5, dtype=torch.float64)
    with torch.inference_mode():
        GF.binary_cross_entropy_with_logits(logits.detach(), target)
    assert _fast._CONSTANTS == {}  # nothing made under inference mode is kept
    loss = GF.binary_cross_entropy_with_logits(logits, target)
    constants = {key[0]: value for key, value in _fast._CONSTANTS.items()}
    assert sorted(constants) == [0.0]  # e⁰ in log(e⁰ + eᶻ)
    for value, constant in constants.items():
        assert constant.dtype == torch.float64 and constant.shape == ()
        assert constant.item() == value and not constant.is_inference()
    (grad,) = torch.autograd.grad(loss, logits, create_graph=True)
    grad.sum().backward()  # double backward through the shared zero leaves it unchanged
    torch.testing.assert_close(grad, (torch.sigmoid(logits) - target) / 5)
    assert [c.item() for c in constants.values()] == list(constants)


def test_shared_constants_are_bounded_and_never_dropped(monkeypatch):
    monkeypatch.setattr(_fast, "_CONSTANTS", {})
    key = (1.0, torch.device("cpu"), torch.float32)
    first = None
    like = torch.rand(3)
    for n in range(1, 2 * _fast._MAX_CONSTANTS):
        constant = _fast.shared_constant(float(n), like)
        assert constant.item() == n and constant.dtype == like.dtype and constant.shape == ()
        assert len(_fast._CONSTANTS) <= _fast._MAX_CONSTANTS
        first = first if first is not None else _fast._CONSTANTS[key]
    assert _fast._CONSTANTS[key] is first  # still the one shared at n = 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mean_is_torch_mean_bit_for_bit(dtype):
    # the losses' mean is Tensor.mean, bit for bit
    torch.manual_seed(0)
    for n in [*range(1, 300), 1000, 4096, 12345]:
        input, target = torch.rand(n, 1, dtype=dtype), torch.rand(n, 1, dtype=dtype)
        assert torch.equal(GF.mse_loss(input, target), F.mse_loss(input, target))
        assert torch.equal(
            GF.binary_cross_entropy_with_logits(input, target),
            GF.binary_cross_entropy_with_logits(input, target, reduction="none").mean(),
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_mean_of_empty_and_half_losses_is_torch_mean(dtype):
    # an empty mean is NaN, as in torch; bfloat16 keeps Tensor.mean
    for n in (0, 1, 3, 1000):
        input, target = torch.rand(n, dtype=dtype), torch.rand(n, dtype=dtype)
        torch.testing.assert_close(
            GF.mse_loss(input, target), F.mse_loss(input, target), equal_nan=True
        )


def test_bce_with_logits_keeps_no_constant_made_for_fake_tensors(monkeypatch):
    monkeypatch.setattr(_fast, "_CONSTANTS", {})
    with FakeTensorMode():
        loss = BCEWithLogitsLossFunction.apply(torch.randn(3), torch.rand(3), None, None, "mean")
    assert loss.shape == () and _fast._CONSTANTS == {}
    real = GF.binary_cross_entropy_with_logits(torch.zeros(3), torch.ones(3))
    torch.testing.assert_close(real, torch.log(torch.tensor(2.0)))
