"""GradientDescent's interface: exports, signature, validation, closure, functional form,
LR schedulers and Lightning, each checked against torch.optim.SGD."""

from __future__ import annotations

import importlib
import inspect
import math
import re
import warnings

import lightning as L
import pytest
import torch
from torch import nn
from torch.optim import SGD, lr_scheduler
from torch.utils.data import DataLoader, TensorDataset

import gdtorch.optim
from gdtorch.optim import GD, GradientDescent, gradient_descent

# Options torch.optim.SGD has and GradientDescent deliberately leaves out.
SGD_ONLY = {"differentiable", "fused"}


def test_exports():
    assert GD is GradientDescent
    assert set(gdtorch.optim.__all__) == {"GD", "GradientDescent", "gradient_descent"}
    assert issubclass(GradientDescent, torch.optim.Optimizer)
    assert not issubclass(GradientDescent, SGD)


def test_signature_and_defaults_are_sgds():
    ours = inspect.signature(GradientDescent).parameters
    torchs = {
        name: p for name, p in inspect.signature(SGD).parameters.items() if name not in SGD_ONLY
    }
    assert list(ours) == list(torchs)
    for name, parameter in ours.items():
        assert (parameter.kind, parameter.default) == (torchs[name].kind, torchs[name].default)

    params = [nn.Parameter(torch.ones(2))]
    gd, sgd = GradientDescent(params), SGD(params)
    assert set(sgd.defaults) - set(gd.defaults) == SGD_ONLY
    assert gd.defaults == {key: sgd.defaults[key] for key in gd.defaults}


def test_step_does_not_use_torch_sgd(monkeypatch, make_network, train):
    def forbidden(*args, **kwargs):
        raise AssertionError("GradientDescent must not call torch.optim.sgd")

    torch_sgd_module = importlib.import_module("torch.optim.sgd")
    for name in ("sgd", "_single_tensor_sgd", "_multi_tensor_sgd", "_fused_sgd"):
        monkeypatch.setattr(torch_sgd_module, name, forbidden)
    network = make_network()
    for foreach in (False, True):
        train(network, GradientDescent(network.parameters(), lr=0.1, foreach=foreach), 1)


NESTEROV = "Nesterov momentum requires a momentum and zero dampening"

# (options, exact message, whether torch.optim.SGD raises the same)
INVALID = [
    ({"lr": -1}, "Invalid learning rate: -1", True),
    ({"lr": torch.tensor(-1.0)}, "Invalid learning rate: -1.0", True),
    ({"lr": torch.tensor([0.1, 0.2])}, "Tensor lr must be 1-element", True),
    ({"momentum": -0.1}, "Invalid momentum value: -0.1", True),
    ({"weight_decay": -1e-4}, "Invalid weight_decay value: -0.0001", True),
    ({"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening", True),
    (
        {"nesterov": True, "momentum": 0.9, "dampening": 0.1},
        "Nesterov momentum requires a momentum and zero dampening",
        True,
    ),
    # -inf is negative: SGD refuses it, in its words.
    ({"lr": -math.inf}, "Invalid learning rate: -inf", True),
    ({"momentum": -math.inf}, "Invalid momentum value: -inf", True),
    ({"weight_decay": -math.inf}, "Invalid weight_decay value: -inf", True),
    # SGD's checks come first: its message wins where it refuses too.
    ({"nesterov": True, "momentum": 0.9, "dampening": math.nan}, NESTEROV, True),
    ({"lr": math.nan, "momentum": -1}, "Invalid momentum value: -1", True),
    # NaN and +inf, which SGD accepts silently.
    ({"lr": math.nan}, "Invalid learning rate: nan (lr must be a finite number >= 0)", False),
    ({"lr": math.inf}, "Invalid learning rate: inf (lr must be a finite number >= 0)", False),
    (
        {"lr": torch.tensor(math.nan)},
        "Invalid learning rate: nan (lr must be a finite number >= 0)",
        False,
    ),
    (
        {"momentum": math.nan},
        "Invalid momentum value: nan (momentum must be a finite number >= 0)",
        False,
    ),
    (
        {"momentum": math.inf},
        "Invalid momentum value: inf (momentum must be a finite number >= 0)",
        False,
    ),
    (
        {"weight_decay": math.nan},
        "Invalid weight_decay value: nan (weight_decay must be a finite number >= 0)",
        False,
    ),
    (
        {"weight_decay": math.inf},
        "Invalid weight_decay value: inf (weight_decay must be a finite number >= 0)",
        False,
    ),
    (
        {"momentum": 0.9, "dampening": math.nan},
        "Invalid dampening value: nan (dampening must be a finite number)",
        False,
    ),
    (
        {"momentum": 0.9, "dampening": -math.inf},
        "Invalid dampening value: -inf (dampening must be a finite number)",
        False,
    ),
]


@pytest.mark.parametrize(("options", "message", "torch_too"), INVALID)
def test_invalid_options_raise(options, message, torch_too):
    params = [nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        GradientDescent(params, **options)
    if torch_too:  # the wording is torch's own
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            SGD(params, **options)
    else:  # torch accepts it silently
        SGD(params, **options)


@pytest.mark.parametrize(
    "options",
    [{"dampening": -0.5}, {"dampening": 2.0}, {"momentum": 2.0}, {"lr": 0.0}, {"lr": -0.0}],
)
def test_finite_values_sgd_accepts_are_accepted(options):
    params = [nn.Parameter(torch.ones(2))]
    SGD(params, **options)
    GradientDescent(params, **options)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("shape", [(), (1,)])
def test_one_element_tensor_lr_matches_sgd(shape, foreach, make_network, train, max_param_diff):
    gd_net, sgd_net = make_network(), make_network()
    options = {"momentum": 0.9, "foreach": foreach}
    gd = GradientDescent(gd_net.parameters(), lr=torch.full(shape, 0.05), **options)
    sgd = SGD(sgd_net.parameters(), lr=torch.full(shape, 0.05), **options)
    train(gd_net, gd, 10)
    train(sgd_net, sgd, 10)
    assert max_param_diff(gd_net, sgd_net) <= 1e-12
    assert max_param_diff(gd_net, make_network()) > 1e-4


@pytest.mark.parametrize("foreach", [False, True])
def test_step_runs_closure_with_grad_enabled_and_returns_its_loss(
    foreach, make_network, loss_at, max_param_diff
):
    grad_enabled_in_closure = []

    def closure_for(network, optimizer):
        def closure():
            grad_enabled_in_closure.append(torch.is_grad_enabled())
            optimizer.zero_grad()
            loss = loss_at(network, 0)
            loss.backward()
            return loss

        return closure

    gd_net, sgd_net = make_network(), make_network()
    gd = GradientDescent(gd_net.parameters(), lr=0.05, momentum=0.9, foreach=foreach)
    sgd = SGD(sgd_net.parameters(), lr=0.05, momentum=0.9, foreach=foreach)
    with torch.no_grad():
        gd_loss = gd.step(closure_for(gd_net, gd))
        sgd_loss = sgd.step(closure_for(sgd_net, sgd))

    assert grad_enabled_in_closure == [True, True]
    assert torch.equal(gd_loss, sgd_loss)
    assert gd_loss.grad_fn is not None
    assert max_param_diff(gd_net, sgd_net) <= 1e-12
    assert max_param_diff(gd_net, make_network()) > 1e-4


def test_step_returns_closure_value_as_is_and_none_without_closure(make_network):
    network = make_network()
    optimizer = GradientDescent(network.parameters(), lr=0.1)
    sentinel = object()
    assert optimizer.step(lambda: sentinel) is sentinel
    assert optimizer.step() is None


def test_step_with_grad_enabled_is_not_recorded(make_network, loss_at):
    network = make_network()
    optimizer = GradientDescent(network.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    loss_at(network, 0).backward()
    with torch.enable_grad():
        optimizer.step()
    for p in network.parameters():
        assert p.is_leaf and p.requires_grad and p.grad_fn is None
        assert not optimizer.state[p]["momentum_buffer"].requires_grad


@pytest.mark.parametrize("foreach", [False, True, None])
@pytest.mark.parametrize("momentum", [0, 0.9])
def test_functional_form_matches_class_and_sgd(
    momentum, foreach, make_network, loss_at, train, max_param_diff
):
    options = {"lr": 0.05, "momentum": momentum, "weight_decay": 0.01, "nesterov": momentum > 0}
    class_net, sgd_net, functional_net = make_network(), make_network(), make_network()
    gd = GradientDescent(class_net.parameters(), foreach=foreach, **options)
    train(class_net, gd, 20)
    train(sgd_net, SGD(sgd_net.parameters(), foreach=foreach, **options), 20)

    params = list(functional_net.parameters())
    momentum_buffers = [None] * len(params) if momentum else []
    for t in range(20):
        functional_net.zero_grad()
        loss_at(functional_net, t).backward()
        with torch.no_grad():
            gradient_descent(
                params,
                [p.grad for p in params],
                momentum_buffers,
                dampening=0,
                maximize=False,
                foreach=foreach,
                **options,
            )

    assert max_param_diff(functional_net, class_net) <= 1e-12
    assert max_param_diff(functional_net, sgd_net) <= 1e-12
    assert max_param_diff(functional_net, make_network()) > 1e-4
    if momentum:  # the buffers were created in the caller's list, as the class keeps them
        for p, buffer in zip(class_net.parameters(), momentum_buffers, strict=True):
            assert torch.equal(buffer, gd.state[p]["momentum_buffer"])


SCHEDULER_STEPS = 30
SCHEDULERS = {
    "StepLR": lambda optimizer: lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5),
    "CosineAnnealingLR": lambda optimizer: lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=10, eta_min=1e-3
    ),
    "ReduceLROnPlateau": lambda optimizer: lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=0.5, patience=1, threshold=0.5
    ),
    "OneCycleLR": lambda optimizer: lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.1, total_steps=SCHEDULER_STEPS, cycle_momentum=True
    ),
}


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_lr_schedulers_drive_it_like_sgd(scheduler, make_network, loss_at, max_param_diff):
    def run(optimizer_class, network):
        optimizer = optimizer_class(network.parameters(), lr=0.05, momentum=0.9)
        schedule = SCHEDULERS[scheduler](optimizer)
        history = []
        for t in range(SCHEDULER_STEPS):
            optimizer.zero_grad()
            loss = loss_at(network, t)
            loss.backward()
            optimizer.step()
            schedule.step(loss.item()) if scheduler == "ReduceLROnPlateau" else schedule.step()
            history.append([(group["lr"], group["momentum"]) for group in optimizer.param_groups])
        return history

    gd_net, sgd_net = make_network(), make_network()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gd_history = run(GradientDescent, gd_net)
        sgd_history = run(SGD, sgd_net)

    assert gd_history == sgd_history
    assert len({lr for ((lr, _),) in gd_history}) > 1  # the schedule did change the lr
    assert max_param_diff(gd_net, sgd_net) <= 1e-12


class _Regressor(L.LightningModule):
    def __init__(self, network: nn.Module, optimizer_class: type) -> None:
        super().__init__()
        self.network = network
        self.optimizer_class = optimizer_class

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return nn.functional.mse_loss(self.network(inputs), targets)

    def configure_optimizers(self):
        return self.optimizer_class(self.parameters(), lr=0.05, momentum=0.9)


def test_lightning_trains_it_like_sgd(make_network, batches, max_param_diff):
    inputs, targets = (torch.cat(tensors) for tensors in zip(*batches, strict=True))
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=8)
    networks = {}
    for optimizer_class in (GradientDescent, SGD):
        networks[optimizer_class] = make_network()
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=2,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(_Regressor(networks[optimizer_class], optimizer_class), loader)

    assert max_param_diff(networks[GradientDescent], networks[SGD]) <= 1e-12
    assert max_param_diff(networks[GradientDescent], make_network()) > 1e-4
