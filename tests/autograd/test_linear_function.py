"""LinearFunction: z = a Wᵀ + b with the hand-written ∂C/∂a = δW, ∂C/∂W = δᵀa, ∂C/∂b = Σδ."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from gdtorch.autograd import LinearFunction

INPUT_SHAPES = [
    ("vector", (4,), "contiguous"),
    ("batch", (6, 4), "contiguous"),
    ("leading_dims", (2, 3, 4), "contiguous"),
    ("nchw_channels_last", (2, 3, 5, 4), "channels_last"),
    ("non_contiguous", (6, 4), "non_contiguous"),
    ("empty", (0, 4), "contiguous"),
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(4,), (3, 4), (2, 3, 4)])
def test_gradcheck_and_gradgradcheck(make_tensor, shape, bias):
    input = make_tensor(shape)
    weight = make_tensor((2, 4))
    b = make_tensor((2,)) if bias else None
    assert gradcheck(LinearFunction.apply, (input, weight, b))
    assert gradgradcheck(LinearFunction.apply, (input, weight, b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("case", "shape", "layout"), INPUT_SHAPES)
def test_matches_torch_linear(make_tensor, case, shape, layout, dtype):
    input = make_tensor(shape, dtype, layout)
    weight = make_tensor((3, 4), dtype)
    bias = make_tensor((3,), dtype)
    output = LinearFunction.apply(input, weight, bias)
    assert isinstance(output.grad_fn, LinearFunction._backward_cls)

    ref_input, ref_weight, ref_bias = (
        t.detach().clone().requires_grad_() for t in (input, weight, bias)
    )
    reference = F.linear(ref_input, ref_weight, ref_bias)
    torch.testing.assert_close(output, reference)

    grad_output = torch.randn_like(reference)
    output.backward(grad_output)
    reference.backward(grad_output)
    torch.testing.assert_close(input.grad, ref_input.grad)
    torch.testing.assert_close(weight.grad, ref_weight.grad)
    torch.testing.assert_close(bias.grad, ref_bias.grad)


def test_first_layer_skips_input_gradient_and_does_not_save_weight(make_tensor, saved_bytes):
    """An input that needs no gradient (the data) means δW is never computed or stored for."""
    input = make_tensor((8, 4), grad=False)
    weight = make_tensor((3, 4))
    bias = make_tensor((3,))
    nbytes = saved_bytes(lambda: LinearFunction.apply(input, weight, bias))
    assert nbytes == input.numel() * input.element_size()

    output = LinearFunction.apply(input, weight, bias)
    output.sum().backward()
    assert input.grad is None
    torch.testing.assert_close(weight.grad, torch.ones(8, 3, dtype=torch.float64).t() @ input)
    torch.testing.assert_close(bias.grad, torch.full((3,), 8.0, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(4,), (3, 4), (2, 3, 4)])
def test_complex_gradients_use_the_conjugates(make_tensor, shape):
    # ∂C/∂a = δ W̄ and ∂C/∂W = δᵀ ā; gradcheck checks torch's convention for complex inputs
    args = [_complex(make_tensor, s) for s in (shape, (2, 4), (2,))]
    assert gradcheck(LinearFunction.apply, args)
    assert gradgradcheck(LinearFunction.apply, args)


def _complex(make_tensor, shape):
    real, imag = make_tensor(shape, grad=False), make_tensor(shape, grad=False)
    return torch.complex(real, imag).requires_grad_()
