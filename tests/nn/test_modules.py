"""gdtorch.nn modules are drop-in twins of torch.nn: signatures, state_dicts, init and results."""

from __future__ import annotations

import inspect
import itertools

import pytest
import torch

from gdtorch import autograd as GA
from gdtorch import nn as gnn

# gdtorch class → (torch twin, the Function its forward must run)
TWINS = {
    gnn.Linear: (torch.nn.Linear, GA.LinearFunction),
    gnn.Sigmoid: (torch.nn.Sigmoid, GA.SigmoidFunction),
    gnn.ReLU: (torch.nn.ReLU, GA.ReLUFunction),
    gnn.Tanh: (torch.nn.Tanh, GA.TanhFunction),
    gnn.MAELoss: (torch.nn.L1Loss, GA.MAELossFunction),
    gnn.MSELoss: (torch.nn.MSELoss, GA.MSELossFunction),
    gnn.BCELoss: (torch.nn.BCELoss, GA.BCELossFunction),
    gnn.BCEWithLogitsLoss: (torch.nn.BCEWithLogitsLoss, GA.BCEWithLogitsLossFunction),
}
IDS = [cls.__name__ for cls in TWINS]


def test_l1loss_is_maeloss():
    assert gnn.L1Loss is gnn.MAELoss


@pytest.mark.parametrize("cls", TWINS, ids=IDS)
def test_same_constructor_and_forward_signatures(cls):
    twin, _ = TWINS[cls]
    assert inspect.signature(cls.__init__) == inspect.signature(twin.__init__)
    ours = list(inspect.signature(cls.forward).parameters)
    theirs = list(inspect.signature(twin.forward).parameters)
    assert ours == theirs


def test_linear_init_state_dict_and_repr_match_torch():
    torch.manual_seed(3)
    ours = gnn.Linear(5, 3, dtype=torch.float64)
    torch.manual_seed(3)
    theirs = torch.nn.Linear(5, 3, dtype=torch.float64)
    assert ours.state_dict().keys() == theirs.state_dict().keys() == {"weight", "bias"}
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=0, atol=0)
    assert repr(ours) == repr(theirs)
    assert gnn.Linear(5, 3, bias=False).bias is None
    ours.load_state_dict(theirs.state_dict())  # checkpoints move both ways


def test_loss_buffers_keep_torch_names():
    weight, pos_weight = torch.rand(3), torch.rand(3)
    ours = gnn.BCEWithLogitsLoss(weight=weight, pos_weight=pos_weight, reduction="sum")
    theirs = torch.nn.BCEWithLogitsLoss(weight=weight, pos_weight=pos_weight, reduction="sum")
    assert ours.state_dict().keys() == theirs.state_dict().keys() == {"weight", "pos_weight"}
    assert ours.reduction == theirs.reduction == "sum"
    assert gnn.BCELoss(weight=weight).state_dict().keys() == {"weight"}


def _module_inputs(cls, shape):
    if cls is gnn.Linear:
        return (torch.randn(*shape, 4, dtype=torch.float64),)
    if cls in (gnn.BCELoss,):
        return torch.rand(shape, dtype=torch.float64), torch.rand(shape, dtype=torch.float64)
    if cls in (gnn.MAELoss, gnn.MSELoss, gnn.BCEWithLogitsLoss):
        return torch.randn(shape, dtype=torch.float64), torch.rand(shape, dtype=torch.float64)
    return (torch.randn(shape, dtype=torch.float64),)


@pytest.mark.parametrize("shape", [(), (7,), (2, 3, 5)], ids=["0-dim", "1-D", "3-D"])
@pytest.mark.parametrize("cls", TWINS, ids=IDS)
def test_forward_and_backward_match_torch(cls, shape):
    twin, function = TWINS[cls]
    if cls is gnn.Linear:
        ours, theirs = (
            gnn.Linear(4, 3, dtype=torch.float64),
            torch.nn.Linear(4, 3, dtype=torch.float64),
        )
        theirs.load_state_dict(ours.state_dict())
    else:
        ours, theirs = cls(), twin()
    inputs = [t.requires_grad_() for t in _module_inputs(cls, shape)]
    ref_inputs = [t.detach().clone().requires_grad_() for t in inputs]
    output, expected = ours(*inputs), theirs(*ref_inputs)
    assert isinstance(output.grad_fn, function._backward_cls)
    torch.testing.assert_close(output, expected)
    output.sum().backward()
    expected.sum().backward()
    for ours_t, theirs_t in zip(inputs, ref_inputs, strict=True):
        torch.testing.assert_close(ours_t.grad, theirs_t.grad)
    for ours_p, theirs_p in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(ours_p.grad, theirs_p.grad)


def test_network_in_bfloat16_autocast_matches_torch():
    torch.manual_seed(1)
    ours = torch.nn.Sequential(gnn.Linear(12, 8), gnn.ReLU(), gnn.Linear(8, 1))
    theirs = torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    theirs.load_state_dict(ours.state_dict())
    input, target = torch.randn(16, 12), torch.randint(0, 2, (16, 1)).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, ref = ours(input), theirs(input)
        loss = gnn.BCEWithLogitsLoss()(out, target)
        ref_loss = torch.nn.BCEWithLogitsLoss()(ref, target)
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(loss, ref_loss)
    loss.backward()
    ref_loss.backward()
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert p.grad.dtype == torch.float32
        torch.testing.assert_close(p.grad, q.grad, rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("sizes", [[64, 32, 1], [300, 20, 7, 5, 1]])
def test_network_saves_no_more_for_backward_than_torch(saved_bytes, sizes):
    layers, ref_layers = [], []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [gnn.Linear(n_in, n_out), gnn.ReLU()]
        ref_layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    ours, theirs = torch.nn.Sequential(*layers[:-1]), torch.nn.Sequential(*ref_layers[:-1])
    input, target = torch.randn(32, sizes[0]), torch.rand(32, 1)
    ours_bytes = saved_bytes(lambda: gnn.BCEWithLogitsLoss()(ours(input), target))
    theirs_bytes = saved_bytes(lambda: torch.nn.BCEWithLogitsLoss()(theirs(input), target))
    assert ours_bytes <= theirs_bytes
