"""GradientDescent's range checks at ``step``: the wording, what a refused step leaves, and the
cost (a group is re-checked only when one of its options changed), plus the functional form's.

The routes by which a bad value arrives (``load_state_dict``, schedulers, ...) are walked in
``tests/reliability/test_optimizer_ranges.py``.
"""

from __future__ import annotations

import copy
import importlib
import math
import pickle
import re

import pytest
import torch
from torch import nn
from torch.optim import SGD, lr_scheduler

from gdtorch.optim import GradientDescent, gradient_descent

# The module (``gdtorch.optim.gradient_descent`` is the function of that name).
gd_module = importlib.import_module("gdtorch.optim.gradient_descent")

NESTEROV = "Nesterov momentum requires a momentum and zero dampening"
TENSOR_LR = "Tensor lr must be 1-element"

# name → (constructor options, the group's values set after construction, the constructor's
# message for those values, what step() adds to it)
AT_STEP = {
    "negative_lr": ({}, {"lr": -0.5}, "Invalid learning rate: -0.5", "lr"),
    "nan_lr": (
        {},
        {"lr": math.nan},
        "Invalid learning rate: nan (lr must be a finite number >= 0)",
        "lr",
    ),
    "inf_lr": (
        {},
        {"lr": math.inf},
        "Invalid learning rate: inf (lr must be a finite number >= 0)",
        "lr",
    ),
    "two_element_tensor_lr": ({}, {"lr": torch.tensor([0.1, 0.2])}, TENSOR_LR, "lr"),
    "negative_momentum": (
        {"momentum": 0.9},
        {"momentum": -0.1},
        "Invalid momentum value: -0.1",
        "momentum",
    ),
    "inf_momentum": (
        {"momentum": 0.9},
        {"momentum": math.inf},
        "Invalid momentum value: inf (momentum must be a finite number >= 0)",
        "momentum",
    ),
    "nan_momentum": (
        {},
        {"momentum": math.nan},
        "Invalid momentum value: nan (momentum must be a finite number >= 0)",
        "momentum",
    ),
    "negative_weight_decay": (
        {},
        {"weight_decay": -1e-4},
        "Invalid weight_decay value: -0.0001",
        "weight_decay",
    ),
    "inf_weight_decay": (
        {},
        {"weight_decay": math.inf},
        "Invalid weight_decay value: inf (weight_decay must be a finite number >= 0)",
        "weight_decay",
    ),
    "nan_dampening": (
        {"momentum": 0.9},
        {"dampening": math.nan},
        "Invalid dampening value: nan (dampening must be a finite number)",
        "dampening",
    ),
    "nesterov_without_momentum": (
        {"momentum": 0.9, "nesterov": True},
        {"momentum": 0},
        NESTEROV,
        "nesterov",
    ),
    "nesterov_with_dampening": (
        {"momentum": 0.9, "nesterov": True},
        {"dampening": 0.1},
        NESTEROV,
        "nesterov",
    ),
}
# What step() says after the constructor's message, for the cases above.
WHERE = {
    "nesterov_without_momentum": "in param_groups[0]['nesterov'] at step() "
    "(momentum=0, dampening=0)",
    "nesterov_with_dampening": "in param_groups[0]['nesterov'] at step() "
    "(momentum=0.9, dampening=0.1)",
}
NOT_FOR_CONSTRUCTOR = {"two_element_tensor_lr"}  # a group would be built around it, not refused


def _message_at_step(case: str) -> str:
    _, _, message, name = AT_STEP[case]
    return f"{message} {WHERE.get(case, f'in param_groups[0][{name!r}] at step()')}"


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("case", list(AT_STEP))
def test_a_bad_value_set_after_construction_is_refused_at_step(
    case, foreach, make_network, train, loss_at
):
    options, bad, _, _ = AT_STEP[case]
    message = _message_at_step(case)
    network = make_network()
    optimizer = GradientDescent(network.parameters(), lr=0.05, foreach=foreach, **options)
    train(network, optimizer, 2)  # valid steps first: the group has been checked and cached
    optimizer.param_groups[0].update(bad)
    before = copy.deepcopy(network.state_dict())
    buffers = {p: copy.deepcopy(s) for p, s in optimizer.state.items()}

    optimizer.zero_grad()
    loss_at(network, 2).backward()
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        optimizer.step()

    # Refused before any update: parameters and momentum buffers are untouched.
    for name, tensor in network.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    for p, state in optimizer.state.items():
        assert torch.equal(state["momentum_buffer"], buffers[p]["momentum_buffer"])


@pytest.mark.parametrize("case", sorted(set(AT_STEP) - NOT_FOR_CONSTRUCTOR))
def test_the_constructor_refuses_the_same_values_in_the_same_words(case):
    options, bad, message, _ = AT_STEP[case]
    params = [nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        GradientDescent(params, **{"lr": 0.05, **options, **bad})


def test_message_names_the_bad_group_and_no_group_is_updated(make_network, loss_at):
    network = make_network()
    optimizer = GradientDescent(
        [{"params": network[0].parameters()}, {"params": network[2].parameters(), "lr": 0.1}],
        lr=0.05,
        momentum=0.9,
    )
    optimizer.param_groups[1]["lr"] = -0.1
    loss_at(network, 0).backward()
    with pytest.raises(ValueError, match=re.escape("in param_groups[1]['lr'] at step()")):
        optimizer.step()
    assert optimizer.state == {}
    for p, initial in zip(network.parameters(), make_network().parameters(), strict=True):
        assert torch.equal(p, initial)


@pytest.mark.parametrize("foreach", [False, True])
def test_a_run_resumes_like_sgd_once_the_value_is_fixed(
    foreach, make_network, train, max_param_diff
):
    options = {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}
    gd_net, sgd_net = make_network(), make_network()
    gd = GradientDescent(gd_net.parameters(), foreach=foreach, **options)
    sgd = SGD(sgd_net.parameters(), foreach=foreach, **options)
    train(gd_net, gd, 5)
    gd.param_groups[0]["dampening"] = math.nan
    with pytest.raises(ValueError, match="Invalid dampening value: nan"):
        train(gd_net, gd, 1, start=5)
    gd.param_groups[0]["dampening"] = 0.1
    train(gd_net, gd, 5, start=5)
    train(sgd_net, sgd, 10)
    assert max_param_diff(gd_net, sgd_net) == 0


@pytest.mark.parametrize("foreach", [False, True])
def test_the_closure_runs_and_its_value_is_lost_when_the_step_is_refused(foreach, make_network):
    network = make_network()
    optimizer = GradientDescent(network.parameters(), lr=0.05, foreach=foreach)
    optimizer.param_groups[0]["lr"] = math.nan
    calls = []

    def closure():
        calls.append(1)
        return network(torch.ones(1, 5, dtype=torch.float64)).sum()

    with pytest.raises(ValueError, match="Invalid learning rate: nan"):
        optimizer.step(closure)
    assert calls == [1]  # checked after the closure: a closure that fixes the value is honoured


# ----------------------------------------------------------------------------------- the cost


@pytest.fixture
def count_checks(monkeypatch) -> list[tuple]:
    """Every call of the range check made from now on, as its arguments."""
    calls: list[tuple] = []
    check = gd_module._invalid_option

    def counting(*args):
        calls.append(args)
        return check(*args)

    monkeypatch.setattr(gd_module, "_invalid_option", counting)
    return calls


def _two_groups(network: nn.Sequential, **options) -> GradientDescent:
    return GradientDescent(
        [{"params": network[0].parameters()}, {"params": network[2].parameters(), "lr": 0.1}],
        **options,
    )


def test_a_steady_run_checks_each_group_once(make_network, train, count_checks):
    network = make_network()
    optimizer = _two_groups(network, lr=0.05, momentum=0.9)
    assert len(count_checks) == 1  # the constructor's arguments
    count_checks.clear()

    train(network, optimizer, 10)
    assert count_checks == [(0.05, 0.9, 0, 0, False), (0.1, 0.9, 0, 0, False)]

    optimizer.param_groups[1]["momentum"] = 0.5
    train(network, optimizer, 10, start=10)
    assert count_checks[2:] == [(0.1, 0.5, 0, 0, False)]  # only the changed group, once

    optimizer.param_groups[0]["lr"] = float("0.05")  # an equal value: nothing to check
    train(network, optimizer, 1, start=20)
    assert len(count_checks) == 3


def test_a_scheduler_costs_one_check_per_group_per_change(make_network, train, count_checks):
    network = make_network()
    optimizer = _two_groups(network, lr=0.05)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)
    count_checks.clear()
    lrs = []
    for t in range(20):
        lrs.append(tuple(group["lr"] for group in optimizer.param_groups))
        train(network, optimizer, 1, start=t)
        scheduler.step()
    assert len(set(lrs)) == 5
    assert len(count_checks) == 2 * 5


@pytest.mark.parametrize("foreach", [False, True])
def test_a_tensor_lr_changed_in_place_is_checked_again(
    foreach, make_network, train, loss_at, count_checks
):
    network = make_network()
    lr = torch.tensor(0.05)
    optimizer = GradientDescent(network.parameters(), lr=lr, foreach=foreach)
    count_checks.clear()
    train(network, optimizer, 3)
    assert count_checks == [(lr, 0, 0, 0, False)]

    # Schedulers change a tensor lr in place (fill_): the same object, a new version.
    scheduler = lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    versions = set()
    for t in range(3, 6):
        versions.add(lr._version)
        train(network, optimizer, 1, start=t)
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] is lr
    assert len(versions) == 3
    assert len(count_checks) == 1 + 3

    lr.fill_(math.nan)
    optimizer.zero_grad()
    loss_at(network, 6).backward()
    with pytest.raises(ValueError, match=re.escape("Invalid learning rate: nan (lr must be")):
        optimizer.step()


def test_an_inference_tensor_lr_is_checked_at_every_step(make_network, train, count_checks):
    with torch.inference_mode():
        lr = torch.tensor(0.05)  # has no version counter to tell a change by
    network = make_network()
    optimizer = GradientDescent(network.parameters(), lr=lr)
    count_checks.clear()
    train(network, optimizer, 3)
    assert len(count_checks) == 3


def test_load_state_dict_and_copies_check_again(make_network, train, count_checks):
    network = make_network()
    optimizer = GradientDescent(network.parameters(), lr=0.05, momentum=0.9)
    count_checks.clear()
    train(network, optimizer, 2)
    optimizer.load_state_dict(optimizer.state_dict())
    train(network, optimizer, 2, start=2)
    assert len(count_checks) == 2

    for copied in (copy.deepcopy(optimizer), pickle.loads(pickle.dumps(optimizer))):
        copied.param_groups[0]["lr"] = -1.0
        with pytest.raises(ValueError, match=re.escape("Invalid learning rate: -1.0 in")):
            copied.step()


# ---------------------------------------------------------------------------- functional form


@pytest.mark.parametrize("case", list(AT_STEP))
def test_the_functional_form_refuses_them_in_the_constructors_words(case):
    options, bad, message, _ = AT_STEP[case]
    arguments = {"lr": 0.05, "momentum": 0, "dampening": 0, "weight_decay": 0, "nesterov": False}
    param = torch.ones(2)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        gradient_descent(
            [param], [torch.ones(2)], [None], maximize=False, **{**arguments, **options, **bad}
        )
    assert torch.equal(param, torch.ones(2))


@pytest.mark.parametrize(
    ("lr", "message"),
    [
        (torch.tensor(math.nan), "Invalid learning rate: nan (lr must be a finite number >= 0)"),
        (torch.tensor(-1.0), "Invalid learning rate: -1.0"),
    ],
)
def test_the_functional_form_checks_a_tensor_lr(lr, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        gradient_descent(
            [torch.ones(2)],
            [torch.ones(2)],
            [],
            lr=lr,
            momentum=0,
            dampening=0,
            weight_decay=0,
            nesterov=False,
            maximize=False,
        )


def test_the_functional_form_checks_on_every_call(count_checks):
    param = torch.ones(2)
    for _ in range(3):
        gradient_descent(
            [param],
            [torch.ones(2)],
            [],
            lr=torch.tensor(0.25),
            momentum=0,
            dampening=0,
            weight_decay=0,
            nesterov=False,
            maximize=False,
        )
    assert count_checks == [(0.25, 0, 0, 0, False)] * 3  # the tensor lr was read once, as a float
    assert torch.equal(param, torch.full((2,), 0.25))
