"""Sigmoid, Tanh and ReLU Functions against torch: σ' = σ(1 − σ), tanh' = 1 − tanh², [z > 0]."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from gdtorch import functional as GF
from gdtorch.autograd import ReLUFunction, SigmoidFunction, TanhFunction
from gdtorch.autograd._fast import relu_mask
from tests.cases import SHAPE_CASES

# (gdtorch functional, its Function, torch reference)
ACTIVATIONS = [
    (GF.sigmoid, SigmoidFunction, torch.sigmoid),
    (GF.tanh, TanhFunction, torch.tanh),
    (GF.relu, ReLUFunction, torch.relu),
]
IDS = ["sigmoid", "tanh", "relu"]


def _away_from_kink(tensor: torch.Tensor) -> torch.Tensor:
    """Move values off ReLU's kink at 0, where finite differences are meaningless."""
    with torch.no_grad():
        tensor.add_(torch.where(tensor >= 0, 0.1, -0.1))
    return tensor


@pytest.mark.parametrize(("fn", "function", "reference"), ACTIVATIONS, ids=IDS)
def test_gradcheck_and_gradgradcheck(make_tensor, fn, function, reference):
    input = _away_from_kink(make_tensor((3, 4)))
    assert gradcheck(fn, (input,))
    assert gradgradcheck(fn, (input,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("case", "shape", "layout"), SHAPE_CASES)
@pytest.mark.parametrize(("fn", "function", "reference"), ACTIVATIONS, ids=IDS)
def test_matches_torch(make_tensor, fn, function, reference, case, shape, layout, dtype):
    input = make_tensor(shape, dtype, layout)
    ref_input = input.detach().clone().requires_grad_()
    output, expected = fn(input), reference(ref_input)
    assert isinstance(output.grad_fn, function._backward_cls)
    assert output.shape == expected.shape and output.dtype == expected.dtype
    torch.testing.assert_close(output, expected)

    grad_output = torch.randn_like(expected)
    output.backward(grad_output)
    expected.backward(grad_output)
    torch.testing.assert_close(input.grad, ref_input.grad)


@pytest.mark.parametrize(("fn", "function", "reference"), ACTIVATIONS, ids=IDS)
def test_saves_no_more_than_torch(make_tensor, saved_bytes, fn, function, reference):
    input = make_tensor((64, 32), torch.float32)
    assert saved_bytes(lambda: fn(input)) <= saved_bytes(lambda: reference(input))


def test_relu_keeps_a_one_byte_mask(make_tensor, saved_bytes):
    input = make_tensor((64, 32), torch.float32)
    assert saved_bytes(lambda: GF.relu(input)) == input.numel()


@pytest.mark.parametrize("function", [SigmoidFunction, TanhFunction], ids=["sigmoid", "tanh"])
def test_complex_gradients_use_the_conjugate_slope(make_tensor, function):
    real, imag = make_tensor((3, 4), grad=False), make_tensor((3, 4), grad=False)
    input = torch.complex(real, imag).div(2).requires_grad_()  # |z| small: away from the poles
    assert gradcheck(function.apply, (input,))
    assert gradgradcheck(function.apply, (input,))


def test_relu_mask_is_one_where_the_output_is_positive_or_nan():
    # torch's ReLU backward zeroes δ where a ≤ 0; NaN ≤ 0 is false, so a NaN passes δ
    output = torch.relu(torch.tensor([float("nan"), -1.0, -0.0, 0.0, 1e-40, 3.0]))
    assert relu_mask(output).tolist() == [1, 0, 0, 0, 1, 1]
    assert relu_mask(output).dtype == torch.uint8  # one byte per element
