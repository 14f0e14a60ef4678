"""Fixtures for the optimiser tests: a small float64 network, fixed mini-batches, a training loop.

Every test runs ``GradientDescent`` and ``torch.optim.SGD`` (the independent reference) side by side
on two copies of the same network and compares the parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

NUM_BATCHES = 7


def _network() -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1)).double()


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(NUM_BATCHES, 8, 5, generator=generator, dtype=torch.float64)
    targets = torch.sin(inputs.sum(dim=-1, keepdim=True))
    return list(zip(inputs, targets, strict=True))


@pytest.fixture
def make_network() -> Callable[[], nn.Sequential]:
    """``make_network()`` → a fresh float64 Linear(5→4)–Tanh–Linear(4→1), same weights each call."""
    return _network


@pytest.fixture
def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed float64 mini-batches ``(x, y)`` of 8 examples each."""
    return _batches()


@pytest.fixture
def loss_at(batches) -> Callable[[nn.Module, int], torch.Tensor]:
    """``loss_at(network, t)`` → the MSE cost of ``network`` on mini-batch ``t`` (cycling)."""

    def loss(network: nn.Module, t: int) -> torch.Tensor:
        inputs, targets = batches[t % NUM_BATCHES]
        return nn.functional.mse_loss(network(inputs), targets)

    return loss


@pytest.fixture
def train(loss_at) -> Callable[..., None]:
    """``train(network, optimizer, steps, start=0)``: that many zero_grad/backward/step rounds."""

    def run(
        network: nn.Module, optimizer: torch.optim.Optimizer, steps: int, start: int = 0
    ) -> None:
        for t in range(start, start + steps):
            optimizer.zero_grad()
            loss_at(network, t).backward()
            optimizer.step()

    return run


@pytest.fixture
def max_param_diff() -> Callable[[nn.Module, nn.Module], float]:
    """``max_param_diff(a, b)`` → the largest absolute difference between matching parameters."""

    def diff(a: nn.Module, b: nn.Module) -> float:
        return max(
            (pa - pb).abs().max().item()
            for pa, pb in zip(a.parameters(), b.parameters(), strict=True)
        )

    return diff
