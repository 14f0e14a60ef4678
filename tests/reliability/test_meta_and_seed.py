"""Issue 16 item 11, the two cases outside the run's config check: losses on meta tensors, and
``CatDataModule``'s seed from Python."""

from __future__ import annotations

import pytest
import torch

import gdtorch.functional as GF
from gdtorch import nn as gnn
from gdtorch.data import CatDataModule

LOSSES = ["l1_loss", "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"]


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_a_loss_on_meta_tensors_gives_torchs_meta_result(name, reduction):
    # meta tensors have shapes and dtypes but no values: nothing to check, as in torch
    input = torch.empty(5, 3, device="meta", requires_grad=True)
    target = torch.empty(5, 3, device="meta")
    ours = getattr(GF, name)(input, target, reduction=reduction)
    theirs = getattr(torch.nn.functional, name)(input, target, reduction=reduction)
    assert ours.device.type == "meta"
    assert (ours.shape, ours.dtype) == (theirs.shape, theirs.dtype)
    (grad,) = torch.autograd.grad(ours.sum(), input)
    assert (grad.device.type, grad.shape) == ("meta", input.shape)


def test_a_network_and_loss_built_on_the_meta_device_run_forward():
    with torch.device("meta"):
        net, loss_fn = gnn.MLP([12, 4, 1]), gnn.BCEWithLogitsLoss()
        images, targets = torch.empty(8, 12), torch.empty(8, 1)
    loss = loss_fn(net(images), targets)
    assert loss.device.type == "meta" and loss.shape == ()


@pytest.mark.parametrize("seed", [2**63, 2**32, -1, 1.5, True, "0"])
def test_a_data_module_seed_out_of_range_is_refused_by_name(seed):
    with pytest.raises(ValueError, match=r"seed must be an int from 0 to 4294967295.*got"):
        CatDataModule(seed=seed)


def test_the_largest_seed_works():
    data = CatDataModule(n_train=8, n_val=4, n_test=4, image_size=16, seed=2**32 - 1)
    data.setup()
    assert len(data.train_set) == 8
