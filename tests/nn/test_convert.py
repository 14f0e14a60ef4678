"""convert: an existing torch.nn model trains through gdtorch's hand-written backward."""

from __future__ import annotations

import torch

from gdtorch import autograd as GA
from gdtorch import nn as gnn


def _plain_model() -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(6, 5),
        torch.nn.Tanh(),
        torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU()),
        torch.nn.Linear(4, 1),
        torch.nn.Sigmoid(),
    )


def test_convert_swaps_twins_shares_parameters_and_keeps_results():
    torch.manual_seed(0)
    model = _plain_model().double()
    reference = _plain_model().double()
    reference.load_state_dict(model.state_dict())
    parameters = list(model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # built before the swap

    converted = convert_result = gnn.convert(model)
    assert convert_result is model
    assert type(converted[0]) is gnn.Linear and type(converted[2][1]) is gnn.ReLU
    assert type(converted[4]) is gnn.Sigmoid
    assert all(p is q for p, q in zip(converted.parameters(), parameters, strict=True))
    assert converted.state_dict().keys() == reference.state_dict().keys()

    input, target = torch.randn(8, 6, dtype=torch.float64), torch.rand(8, 1, dtype=torch.float64)
    output, expected = converted(input), reference(input)
    assert isinstance(output.grad_fn, GA.SigmoidFunction._backward_cls)
    torch.testing.assert_close(output, expected)
    loss_fn = gnn.convert(torch.nn.BCELoss())
    assert type(loss_fn) is gnn.BCELoss
    loss_fn(output, target).backward()
    torch.nn.BCELoss()(expected, target).backward()
    for p, q in zip(converted.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    optimizer.step()  # the old optimizer updates the converted model's (shared) parameters
    assert not torch.equal(converted[0].weight, reference[0].weight)


def test_convert_keeps_loss_buffers_and_subclasses():
    class MyLinear(torch.nn.Linear):
        pass

    pos_weight = torch.tensor([2.0])
    loss = gnn.convert(torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="sum"))
    assert type(loss) is gnn.BCEWithLogitsLoss
    assert loss.pos_weight is pos_weight and loss.reduction == "sum"
    custom = MyLinear(2, 2)
    assert gnn.convert(custom) is custom and type(custom) is MyLinear
