"""Shared fixtures: deterministic seeds, and a guard that restores gdtorch's validation switch."""

from __future__ import annotations

import pytest
import torch

import gdtorch
from tests.cases import TrainedRun, train_on_photos, with_layout


@pytest.fixture(autouse=True)
def _seed_and_restore_validation():
    torch.manual_seed(0)
    yield
    gdtorch.set_validation(True)


@pytest.fixture
def make_tensor():
    """``make_tensor(shape, dtype, layout, low, high, requires_grad)`` → a uniform random tensor."""

    def make(shape, dtype=torch.float64, layout="contiguous", low=-2.0, high=2.0, grad=True):
        tensor = torch.empty(shape, dtype=torch.float64).uniform_(low, high).to(dtype)
        tensor = with_layout(tensor, layout)
        if layout == "non_contiguous" and tensor.dim() >= 2:
            assert not tensor.is_contiguous()
        return tensor.requires_grad_(grad)

    return make


@pytest.fixture
def saved_bytes():
    """``saved_bytes(fn)`` → bytes autograd saves for backward while ``fn()`` runs."""

    def count(fn) -> int:
        total = 0

        def pack(tensor):
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            fn()
        return total

    return count


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> TrainedRun:
    """A run on a photo folder with fixed train/ and test/ splits (see ``train_on_photos``)."""
    return train_on_photos(tmp_path_factory.mktemp("trained"))
