"""The Functions work under torch.func.vmap and torch.compile(fullgraph=True)."""

from __future__ import annotations

import copy

import pytest
import torch

from gdtorch import functional as GF
from gdtorch import nn as gnn


def test_vmap_over_per_sample_losses_matches_the_batched_call(make_tensor):
    weight, bias = make_tensor((3, 4)), make_tensor((3,))
    inputs, targets = make_tensor((6, 4), grad=False), torch.rand(6, 3, dtype=torch.float64)

    def per_sample(x, y):
        z = GF.relu(GF.linear(x, weight, bias))
        return GF.binary_cross_entropy_with_logits(z, y)

    batched = torch.func.vmap(per_sample)(inputs, targets)
    expected = torch.stack([per_sample(x, y) for x, y in zip(inputs, targets, strict=True)])
    torch.testing.assert_close(batched, expected)


def test_vmap_of_grad_gives_per_sample_gradients(make_tensor):
    weight = make_tensor((1, 4), grad=False)
    inputs, targets = make_tensor((5, 4), grad=False), torch.rand(5, 1, dtype=torch.float64)

    def loss(w, x, y):
        return GF.mse_loss(GF.sigmoid(GF.linear(x, w)), y)

    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(
        weight, inputs, targets
    )
    for i in range(5):
        w = weight.clone().requires_grad_()
        (expected,) = torch.autograd.grad(loss(w, inputs[i], targets[i]), w)
        torch.testing.assert_close(per_sample[i], expected)


@pytest.mark.slow
@pytest.mark.parametrize("fused", [True, False], ids=["MLPFunction", "layer-by-layer"])
def test_compile_fullgraph_matches_eager(fused):
    torch.manual_seed(0)
    model = gnn.MLP([12, 8, 1])
    if not fused:
        model = torch.nn.Sequential(*model)  # one Function per layer, ReLU's mask included
    loss_fn = gnn.BCEWithLogitsLoss()
    input, target = torch.randn(16, 12), torch.rand(16, 1)

    def forward_loss(x, y):
        return loss_fn(model(x), y)

    eager_loss = forward_loss(input, target)
    eager_loss.backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled_loss = torch.compile(forward_loss, fullgraph=True)(input, target)
    compiled_loss.backward()  # runs the hand-written backwards captured by AOTAutograd
    torch.testing.assert_close(compiled_loss, eager_loss)
    for p, g in zip(model.parameters(), eager_grads, strict=True):
        torch.testing.assert_close(p.grad, g)


@pytest.mark.slow
def test_compiled_relu_passes_a_nan_pre_activations_gradient_like_torch():
    # issue 16: ReLU's slope at a NaN is 1 in torch (its backward zeroes δ where a ≤ 0, and
    # NaN ≤ 0 is false). One compiled function runs both the fused node and the per-layer
    # Functions, whose masks take their torch.compile form (a float [a ≠ 0]).
    torch.manual_seed(0)
    fused = gnn.MLP([3, 5, 4, 1])
    layered = torch.nn.Sequential(*copy.deepcopy(fused))
    native = torch.nn.Sequential(
        *[torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4), torch.nn.ReLU()],
        torch.nn.Linear(4, 1),
    )
    native.load_state_dict(fused.state_dict())
    input = torch.tensor([[1.0, 2.0, -3.0], [float("nan"), 1.0, 0.0], [0.5, -1.0, 2.0]])

    def outputs(x):
        return fused(x).sum(), layered(x).sum()  # a sum: finite ∂C/∂ŷ for the NaN row

    torch.autograd.backward(torch.compile(outputs, fullgraph=True)(input))
    native(input).sum().backward()
    for model in (fused, layered):
        for p, q in zip(model.parameters(), native.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, equal_nan=True)
