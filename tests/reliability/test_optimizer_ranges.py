"""The README's "What is validated", for the optimizer's hyper-parameters after construction.

"bad hyper-parameters (negative lr, momentum < 0, nesterov without momentum): ``ValueError``, as
torch words it". The constructor is one door; a value also arrives later, through
``load_state_dict`` (a checkpoint, a state saved by ``torch.optim.SGD``), ``add_param_group``,
an LR or momentum scheduler, or an assignment to ``param_groups``. Each route is walked here:
the next ``step()`` refuses the value, naming the group and the option, before any parameter
moves, where ``torch.optim.SGD`` carries on with a wrong answer. The wording and the cost of the
check are pinned in ``tests/optim/test_gradient_descent_checks.py``.
"""

from __future__ import annotations

import io
import math
import re

import lightning as L
import pytest
import torch
from torch import nn
from torch.optim import SGD, lr_scheduler
from torch.utils.data import DataLoader, TensorDataset

from gdtorch.optim import GradientDescent

NESTEROV = "Nesterov momentum requires a momentum and zero dampening"


def _network() -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()


def _backward(network: nn.Module, t: int = 0) -> None:
    generator = torch.Generator().manual_seed(t)
    inputs = torch.randn(8, 3, generator=generator, dtype=torch.float64)
    network.zero_grad()
    nn.functional.mse_loss(network(inputs), inputs.sum(1, keepdim=True).sin()).backward()


def _parameters(network: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in network.parameters()]


def _refused_at_step(optimizer: torch.optim.Optimizer, network: nn.Module, message: str) -> None:
    """The next step raises ``message`` exactly and moves no parameter."""
    _backward(network)
    before = _parameters(network)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        optimizer.step()
    for p, b in zip(network.parameters(), before, strict=True):
        assert torch.equal(p, b)


def _through_bytes(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# Values torch.optim.SGD accepts when built: (options, the option step() names, the message)
ACCEPTED_BY_SGD = {
    "nan_lr": (
        {"lr": math.nan},
        "lr",
        "Invalid learning rate: nan (lr must be a finite number >= 0)",
    ),
    "inf_momentum": (
        {"momentum": math.inf},
        "momentum",
        "Invalid momentum value: inf (momentum must be a finite number >= 0)",
    ),
    "nan_momentum": (
        {"momentum": math.nan},
        "momentum",
        "Invalid momentum value: nan (momentum must be a finite number >= 0)",
    ),
    "inf_weight_decay": (
        {"weight_decay": math.inf},
        "weight_decay",
        "Invalid weight_decay value: inf (weight_decay must be a finite number >= 0)",
    ),
    "nan_dampening": (
        {"momentum": 0.9, "dampening": math.nan},
        "dampening",
        "Invalid dampening value: nan (dampening must be a finite number)",
    ),
}


@pytest.mark.parametrize("case", list(ACCEPTED_BY_SGD))
def test_a_state_saved_by_sgd_with_a_bad_value_is_refused_at_the_next_step(case):
    options, name, message = ACCEPTED_BY_SGD[case]

    # torch builds it, and trains on it: the parameters turn non-finite without an error.
    sgd_network = _network()
    sgd = SGD(sgd_network.parameters(), **{"lr": 0.1, **options})
    for t in range(2):
        _backward(sgd_network, t)
        sgd.step()
    assert not all(p.isfinite().all() for p in sgd_network.parameters())

    # gdtorch refuses it when built ...
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        GradientDescent(_network().parameters(), **{"lr": 0.1, **options})

    # ... and when it comes in through a saved state, at the next step.
    network = _network()
    optimizer = GradientDescent(network.parameters(), lr=0.1)
    optimizer.load_state_dict(_through_bytes(sgd.state_dict()))
    _refused_at_step(optimizer, network, f"{message} in param_groups[0]['{name}'] at step()")


def test_a_checkpoint_edited_to_a_negative_lr_is_refused_at_the_next_step():
    network = _network()
    optimizer = GradientDescent(network.parameters(), lr=0.1, momentum=0.9)
    _backward(network)
    optimizer.step()
    state = optimizer.state_dict()
    state["param_groups"][0]["lr"] = -0.1

    resumed = GradientDescent(network.parameters(), lr=0.1, momentum=0.9)
    resumed.load_state_dict(_through_bytes(state))
    _refused_at_step(
        resumed, network, "Invalid learning rate: -0.1 in param_groups[0]['lr'] at step()"
    )


def test_an_assignment_to_param_groups_is_refused_at_the_next_step():
    network = _network()
    optimizer = GradientDescent(network.parameters(), lr=0.1)
    _backward(network)
    optimizer.step()
    optimizer.param_groups[0]["lr"] = float("nan")
    _refused_at_step(
        optimizer,
        network,
        "Invalid learning rate: nan (lr must be a finite number >= 0) "
        "in param_groups[0]['lr'] at step()",
    )


def test_momentum_set_to_zero_under_nesterov_is_refused_at_the_next_step():
    network = _network()
    optimizer = GradientDescent(network.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    _backward(network)
    optimizer.step()
    optimizer.param_groups[0]["momentum"] = 0
    _refused_at_step(
        optimizer,
        network,
        f"{NESTEROV} in param_groups[0]['nesterov'] at step() (momentum=0, dampening=0)",
    )


def test_an_added_group_with_a_bad_value_is_refused_at_the_next_step():
    network = _network()
    optimizer = GradientDescent(network[0].parameters(), lr=0.1)
    optimizer.add_param_group({"params": network[2].parameters(), "weight_decay": math.inf})
    _refused_at_step(
        optimizer,
        network,
        "Invalid weight_decay value: inf (weight_decay must be a finite number >= 0) "
        "in param_groups[1]['weight_decay'] at step()",
    )


def _train_with_lambda_lr(optimizer_class: type, network: nn.Module, steps: int) -> list[float]:
    """Train with a LambdaLR whose factor ``1 − t/4`` turns negative at t = 5; the lrs used."""
    optimizer = optimizer_class(network.parameters(), lr=0.1, momentum=0.9)
    scheduler = lr_scheduler.LambdaLR(optimizer, lambda t: 1 - t / 4)
    used = []
    for t in range(steps):
        _backward(network, t)
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return used


def test_a_scheduler_that_turns_the_lr_negative_is_refused_at_that_step():
    # torch: from t = 5 on the cost is climbed, silently.
    sgd_network = _network()
    assert _train_with_lambda_lr(SGD, sgd_network, 7)[5:] == [-0.025, -0.05]

    network = _network()
    message = "Invalid learning rate: -0.025 in param_groups[0]['lr'] at step()"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        _train_with_lambda_lr(GradientDescent, network, 7)

    # Up to the refused step, the same run as SGD's, to the bit.
    reference = _network()
    _train_with_lambda_lr(SGD, reference, 5)
    for mine, theirs in zip(network.parameters(), reference.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def test_a_momentum_schedule_reaching_zero_under_nesterov_is_refused_at_that_step():
    network = _network()
    optimizer = GradientDescent(network.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    # OneCycleLR cycles the momentum down to base_momentum while the lr warms up: 0.9, 0.45, 0.
    scheduler = lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.1, total_steps=10, pct_start=0.3, base_momentum=0.0
    )
    for t in range(2):
        _backward(network, t)
        optimizer.step()
        scheduler.step()
    _refused_at_step(
        optimizer,
        network,
        f"{NESTEROV} in param_groups[0]['nesterov'] at step() (momentum=0.0, dampening=0)",
    )


class _Regressor(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.network = _network()

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return nn.functional.mse_loss(self.network(inputs), targets)

    def configure_optimizers(self):
        optimizer = GradientDescent(self.parameters(), lr=0.1)
        scheduler = lr_scheduler.LambdaLR(optimizer, lambda epoch: 1 - epoch / 2)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def test_a_lightning_run_stops_at_the_epoch_whose_lr_is_negative():
    inputs = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loader = DataLoader(TensorDataset(inputs, inputs.sum(1, keepdim=True).sin()), batch_size=8)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(ValueError, match=re.escape("Invalid learning rate: -0.05 in param_groups")):
        trainer.fit(_Regressor(), loader)
    assert trainer.current_epoch == 3  # epochs 0, 1 and 2 (lr 0.1, 0.05, 0) ran
