"""Issue 16, item 5: complex tensors get torch's gradients or a clear refusal, never wrong ones.

gdtorch's maths follows a real-valued tutorial; per op, complex numbers are either supported as
torch supports them or refused as torch refuses them:

* supported: ``linear``/``nn.Linear``, ``sigmoid``, ``tanh``, the fused ``mlp``/``nn.MLP``
  without ReLU, and ``l1_loss`` (``|ŷ − y|`` is real). Their backwards multiply by conjugate
  local derivatives (``∂C/∂a = δ W̄``, ``∂C/∂W = δᵀ ā``, ``δ ⊙ conj(g')``, ``sgn(d)``), which
  ``gradcheck`` verifies on complex inputs (it checks torch's convention for complex
  gradients). Before the fix the forward was right and every gradient lacked the conjugate;
* refused: ``relu`` (``max(z, 0)`` needs an order; torch: "clamp is not supported for complex
  types"), ``mse_loss`` (``(ŷ − y)²`` would be complex; torch raises too — gdtorch used to return
  a complex "loss") and both BCEs (a real log-likelihood). The error is gdtorch's
  ``DtypeError``: a ``TypeError`` and an instance of the error torch raises, naming the
  argument and its dtype.
"""

from __future__ import annotations

import itertools
import re

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from gdtorch import functional as GF
from gdtorch import nn as gnn
from gdtorch.autograd import MLPFunction
from gdtorch.functional import DtypeError

pytestmark = pytest.mark.filterwarnings("ignore:Complex modules are a new feature")


def _complex(*shape: int, grad: bool = True) -> torch.Tensor:
    return (torch.randn(*shape, dtype=torch.cdouble) / 2).requires_grad_(grad)


# --------------------------------------------------------------------------- supported


@pytest.mark.parametrize(
    ("input_shape", "bias"),
    [((5, 4), True), ((2, 3, 4), True), ((4,), True), ((5, 4), False)],
    ids=["batch", "leading-dims", "one-sample", "no-bias"],
)
def test_linear_gradients_are_wirtinger_gradients(input_shape, bias):
    args = (_complex(*input_shape), _complex(3, 4), _complex(3) if bias else None)
    assert gradcheck(GF.linear, args)
    assert gradgradcheck(GF.linear, args)


@pytest.mark.parametrize("fn", [GF.sigmoid, GF.tanh], ids=["sigmoid", "tanh"])
def test_sigmoid_and_tanh_gradients_are_wirtinger_gradients(fn):
    assert gradcheck(fn, (_complex(3, 4),))
    assert gradgradcheck(fn, (_complex(3, 4),))


@pytest.mark.slow
@pytest.mark.parametrize("activations", [("tanh", "sigmoid", None), ("sigmoid", "tanh", "tanh")])
def test_fused_mlp_gradients_are_wirtinger_gradients(activations):
    widths = [4, 3, 2, 1]
    params = [_complex(*shape) for n, m in itertools.pairwise(widths) for shape in ((m, n), (m,))]

    def network(x, *p):
        return MLPFunction.apply(x, activations, *p)[-1]

    assert gradcheck(network, (_complex(5, 4), *params))
    assert gradgradcheck(network, (_complex(5, 4), *params))
    output = GF.mlp(_complex(5, 4), params[0::2], params[1::2], activations)
    assert isinstance(output.grad_fn, MLPFunction._backward_cls)


def _assert_same_gradients(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    theirs.load_state_dict(ours.state_dict())
    input = torch.randn(6, 4, dtype=torch.cfloat)
    target = torch.randn_like(theirs(input))
    for network in (ours, theirs):
        F.l1_loss(network(input), target).backward()  # a real cost of complex outputs
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert p.grad.dtype == torch.cfloat
        torch.testing.assert_close(p.grad, q.grad)


def test_complex_linear_module_trains_like_torch():
    ours = gnn.Linear(4, 3, dtype=torch.cfloat)
    _assert_same_gradients(ours, torch.nn.Linear(4, 3, dtype=torch.cfloat))


def test_complex_mlp_module_trains_like_torch_through_the_fused_node():
    ours = gnn.MLP([4, 3, 2], activation="tanh", output_activation="sigmoid").to(torch.cfloat)
    assert isinstance(
        ours(torch.randn(1, 4, dtype=torch.cfloat)).grad_fn, MLPFunction._backward_cls
    )
    theirs = torch.nn.Sequential(
        *[torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2), torch.nn.Sigmoid()]
    )
    _assert_same_gradients(ours, theirs.to(torch.cfloat))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_l1_loss_on_complex_numbers_is_torchs(reduction):
    input, target = _complex(5, 3), _complex(5, 3)
    weight = torch.rand(5, 3, dtype=torch.double)
    assert gradcheck(lambda a, y: GF.l1_loss(a, y, reduction=reduction), (input, target))
    assert gradcheck(
        lambda a, y: GF.l1_loss(a, y, reduction=reduction, weight=weight), (input, target)
    )
    loss, expected = (
        GF.l1_loss(input, target, reduction=reduction),
        F.l1_loss(input, target, reduction=reduction),
    )
    assert loss.dtype == expected.dtype == torch.float64
    torch.testing.assert_close(loss, expected)
    grads = torch.autograd.grad(loss.sum(), (input, target))
    for grad, expected_grad in zip(
        grads, torch.autograd.grad(expected.sum(), (input, target)), strict=True
    ):
        torch.testing.assert_close(grad, expected_grad)


def test_l1_loss_of_a_complex_prediction_and_a_real_target_is_torchs():
    input, target = _complex(4), torch.randn(4, dtype=torch.double)
    torch.testing.assert_close(GF.l1_loss(input, target), F.l1_loss(input, target))
    assert gradcheck(lambda a: GF.l1_loss(a, target), (input,))


# --------------------------------------------------------------------------- refused


def _torch_error(call) -> Exception:
    with pytest.raises(Exception) as caught:  # whatever torch raises
        call()
    return caught.value


REFUSED = {  # name: (gdtorch call, torch call or None where torch does not raise, argument)
    "relu": (lambda z: GF.relu(z), lambda z: F.relu(z), "input"),
    "ReLU module": (lambda z: gnn.ReLU()(z), lambda z: torch.nn.ReLU()(z), "input"),
    "mse_loss": (
        lambda z: GF.mse_loss(z, z.detach()),
        lambda z: F.mse_loss(z, z.detach()),
        "input",
    ),
    "mse_loss real target": (
        lambda z: GF.mse_loss(z, torch.rand(z.shape, dtype=torch.double)),
        lambda z: F.mse_loss(z, torch.rand(z.shape, dtype=torch.double)),
        "input",
    ),
    "mse_loss weighted": (  # torch returns a complex "loss" here; gdtorch refuses it too
        lambda z: GF.mse_loss(z, z.detach(), weight=torch.ones(z.shape)),
        None,
        "input",
    ),
    "MSELoss module": (
        lambda z: gnn.MSELoss()(z, z.detach()),
        lambda z: torch.nn.MSELoss()(z, z.detach()),
        "input",
    ),
    "binary_cross_entropy input": (
        lambda z: GF.binary_cross_entropy(z, torch.rand(z.shape, dtype=z.dtype)),
        lambda z: F.binary_cross_entropy(z, torch.rand(z.shape, dtype=z.dtype)),
        "input",
    ),
    "binary_cross_entropy target": (
        lambda z: GF.binary_cross_entropy(torch.rand(z.shape, dtype=torch.double), z),
        lambda z: F.binary_cross_entropy(torch.rand(z.shape, dtype=torch.double), z),
        "target",
    ),
    "binary_cross_entropy_with_logits input": (
        lambda z: GF.binary_cross_entropy_with_logits(z, torch.rand(z.shape, dtype=z.dtype)),
        lambda z: F.binary_cross_entropy_with_logits(z, torch.rand(z.shape, dtype=z.dtype)),
        "input",
    ),
    "binary_cross_entropy_with_logits target": (  # torch returns a complex "loss" here
        lambda z: GF.binary_cross_entropy_with_logits(torch.rand(z.shape, dtype=torch.double), z),
        None,
        "target",
    ),
    "mlp with relu": (
        lambda z: GF.mlp(z.reshape(1, -1), [_complex(2, 4)], [_complex(2)], ["relu"]),
        None,
        "input",
    ),
    "MLP module with relu": (
        lambda z: gnn.MLP([4, 3, 1]).to(torch.cdouble)(z.reshape(1, -1)),
        lambda z: torch.nn.Sequential(
            torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1)
        ).to(torch.cdouble)(z.reshape(1, -1)),
        "input",
    ),
}


@pytest.mark.parametrize("name", REFUSED)
def test_ops_without_a_complex_meaning_refuse_complex_tensors_clearly(name):
    ours, theirs, argument = REFUSED[name]
    z = _complex(4)
    with pytest.raises(DtypeError, match=rf"{argument} .*dtype torch\.complex128") as caught:
        ours(z)
    assert isinstance(caught.value, TypeError)
    if theirs is not None:  # torch raises too: gdtorch's error is an instance of torch's type
        assert isinstance(caught.value, type(_torch_error(lambda: theirs(z))))


def test_mse_loss_no_longer_returns_a_complex_loss():
    input, target = _complex(3), _complex(3, grad=False)
    with pytest.raises(TypeError, match=re.escape("(ŷ − y)² of complex numbers")):
        GF.mse_loss(input, target)
