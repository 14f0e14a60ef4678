"""convert: an existing torch.nn model trains through gdtorch's hand-written backward."""

from __future__ import annotations

import logging

import torch
import torchvision

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


def test_convert_inplace_false_returns_a_converted_copy_and_leaves_the_model_alone():
    model = _plain_model()
    state = {name: p.detach().clone() for name, p in model.named_parameters()}
    copy = gnn.convert(model, inplace=False)
    assert copy is not model
    assert type(copy[0]) is gnn.Linear and type(copy[2][1]) is gnn.ReLU
    assert type(model[0]) is torch.nn.Linear and type(model[2][1]) is torch.nn.ReLU
    assert not {id(p) for p in copy.parameters()} & {id(p) for p in model.parameters()}
    for name, p in model.named_parameters():
        assert torch.equal(p, state[name]) and torch.equal(copy.get_parameter(name), p)


def test_convert_summary_says_what_was_converted_and_what_stays_torch(caplog):
    class Block(torch.nn.Module):  # a forward of its own, with a functional call in it
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)
            self.norm = torch.nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.relu(self.norm(self.conv(x)) + x)

    model = torch.nn.Sequential(
        Block(), Block(), torch.nn.Flatten(), torch.nn.Linear(8, 3), torch.nn.ReLU()
    )
    before = gnn.convert_summary(model)
    assert before.converted == {} and before.stay_torch["Linear"] == 1
    with caplog.at_level(logging.INFO, logger="gdtorch.nn.convert"):
        gnn.convert(model)
    summary = gnn.convert_summary(model)
    assert summary == gnn.ConvertSummary(
        converted={"Linear": 1, "ReLU": 1},
        stay_torch={"Conv2d": 2, "BatchNorm2d": 2, "Flatten": 1},
        own_forward={"Block": 2},
    )
    assert str(summary) == (
        "Linear ×1, ReLU ×1 converted; Conv2d ×2, BatchNorm2d ×2, Flatten ×1 stay torch; "
        "Block ×2 run their own forward, whose functional calls stay torch "
        "(gdtorch.handwritten() takes them over)"
    )
    assert caplog.messages == [f"convert: {summary}"]


def test_convert_summary_of_resnet18_and_of_a_gdtorch_model():
    model = gnn.convert(torchvision.models.resnet18(weights=None))
    assert str(gnn.convert_summary(model)).startswith(
        "ReLU ×9, Linear ×1 converted; Conv2d ×20, BatchNorm2d ×20, MaxPool2d ×1, "
        "AdaptiveAvgPool2d ×1 stay torch; ResNet ×1, BasicBlock ×8 run their own forward"
    )
    mlp = gnn.MLP([4, 3, 1], output_activation="sigmoid")
    assert str(gnn.convert_summary(mlp)) == "Linear ×2, ReLU ×1, Sigmoid ×1 converted"
    assert (
        str(gnn.convert_summary(torch.nn.Conv2d(1, 1, 1)))
        == "nothing converted; Conv2d ×1 stay torch"
    )


def test_convert_report_prints_the_summary_or_hands_it_over(capsys):
    gnn.convert(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()), report=True)
    assert capsys.readouterr().out == "Linear ×1 converted; Dropout ×1 stay torch\n"
    received = []
    gnn.convert(torch.nn.Tanh(), report=received.append)
    assert received == ["Tanh ×1 converted"]
