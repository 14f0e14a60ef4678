"""MLPFunction: the whole network's forward and backpropagation in one hand-written node."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from gdtorch import functional as GF
from gdtorch import nn as gnn
from gdtorch.autograd import LinearFunction, MLPFunction

ACTIVATION_PLANS = [
    ("relu", None),
    ("tanh", "sigmoid"),
    ("sigmoid", "tanh"),
    ("relu", "relu", None),
]
TORCH_ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, None: None}


def _params(make_tensor, widths):
    params = []
    for n_in, n_out in itertools.pairwise(widths):
        params += [make_tensor((n_out, n_in)), make_tensor((n_out,))]
    return params


def _reference(input, activations, params):
    a = input
    for layer, name in enumerate(activations):
        a = F.linear(a, params[2 * layer], params[2 * layer + 1])
        if name is not None:
            a = TORCH_ACTIVATIONS[name](a)
    return a


@pytest.mark.parametrize("activations", ACTIVATION_PLANS)
def test_gradcheck_and_gradgradcheck(make_tensor, activations):
    widths = [4, 3, 3, 2][: len(activations) + 1]
    input, params = make_tensor((5, 4)), _params(make_tensor, widths)

    def network(x, *p):
        return MLPFunction.apply(x, activations, *p)[-1]

    assert gradcheck(network, (input, *params))
    assert gradgradcheck(network, (input, *params))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("activations", ACTIVATION_PLANS)
def test_matches_torch_layer_by_layer(make_tensor, activations, dtype):
    widths = [6, 5, 4, 3][: len(activations) + 1]
    input = make_tensor((7, 6), dtype)
    params = [p.detach().to(dtype).requires_grad_() for p in _params(make_tensor, widths)]
    ref_input = input.detach().clone().requires_grad_()
    ref_params = [p.detach().clone().requires_grad_() for p in params]
    output = GF.mlp(input, params[0::2], params[1::2], activations)
    expected = _reference(ref_input, activations, ref_params)
    assert isinstance(output.grad_fn, MLPFunction._backward_cls)
    torch.testing.assert_close(output, expected)
    grad = torch.randn_like(expected)
    output.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(input.grad, ref_input.grad)
    for p, q in zip(params, ref_params, strict=True):
        torch.testing.assert_close(p.grad, q.grad)


def test_frozen_layers_and_data_inputs_get_no_gradient(make_tensor):
    input = make_tensor((4, 3), grad=False)
    params = _params(make_tensor, [3, 2, 1])
    params[0].requires_grad_(False)
    GF.mlp(input, params[0::2], params[1::2], ("relu", None)).sum().backward()
    assert input.grad is None and params[0].grad is None
    assert all(p.grad is not None for p in params[1:])


def test_keeps_less_for_backward_than_torch_layers(saved_bytes):
    torch.manual_seed(0)
    model = gnn.MLP([300, 20, 7, 5, 1])
    reference = torch.nn.Sequential(
        *[torch.nn.Linear(300, 20), torch.nn.ReLU(), torch.nn.Linear(20, 7), torch.nn.ReLU()],
        *[torch.nn.Linear(7, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1)],
    )
    input = torch.randn(32, 300)
    assert saved_bytes(lambda: model(input)) <= saved_bytes(lambda: reference(input))


def test_mlp_module_fuses_unless_hooks_autocast_or_edits_could_tell():
    model = gnn.MLP([6, 4, 1], output_activation="sigmoid")
    input = torch.randn(3, 6)
    assert isinstance(model(input).grad_fn, MLPFunction._backward_cls)

    handle = model[0].register_forward_hook(lambda *args: None)
    assert not isinstance(model(input).grad_fn, MLPFunction._backward_cls)
    handle.remove()
    assert isinstance(model(input).grad_fn, MLPFunction._backward_cls)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(input).dtype == torch.bfloat16  # layer by layer, cast as torch casts

    model[0] = gnn.Linear(6, 4, bias=False)
    output = model(input)
    assert not isinstance(output.grad_fn, MLPFunction._backward_cls)
    torch.testing.assert_close(output, torch.sigmoid(model[2](torch.relu(model[0](input)))))
    assert isinstance(model[0](input).grad_fn, LinearFunction._backward_cls)


def test_mlp_module_runs_layer_by_layer_when_a_weight_is_parametrized():
    model = gnn.MLP([6, 4, 1])
    original = model[0].weight.detach().clone()
    torch.nn.utils.parametrize.register_parametrization(model[0], "weight", _Doubled())
    input = torch.randn(3, 6)
    output = model(input)
    assert not isinstance(output.grad_fn, MLPFunction._backward_cls)
    reference = F.linear(
        torch.relu(F.linear(input, 2 * original, model[0].bias)),
        model[2].weight,
        model[2].bias,
    )
    torch.testing.assert_close(output, reference)
    output.sum().backward()
    assert model[0].parametrizations.weight.original.grad is not None


class _Doubled(torch.nn.Module):
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return 2 * weight


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([torch.ones(2, 3)], [], ["relu"]), "one entry per layer"),
        (([torch.ones(2, 3)], [torch.ones(2)], ["gelu"]), "unknown activation 'gelu'"),
    ],
)
def test_functional_mlp_refuses_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        GF.mlp(torch.ones(4, 3), *args)


def test_functional_mlp_wants_a_batch_of_rows():
    with pytest.raises(ValueError, match=r"input must have shape \(N, features\)"):
        GF.mlp(torch.ones(3), [torch.ones(2, 3)], [torch.ones(2)], [None])


def test_backward_leaves_the_incoming_gradients_unchanged(make_tensor):
    # ReLU masks the gradients it computes in place, never the ones it is handed
    input, params = make_tensor((5, 4)), _params(make_tensor, [4, 3, 2])
    outputs = MLPFunction.apply(input, ("relu", "relu"), *params)
    grad_outputs = [torch.randn_like(o) for o in outputs]
    kept = [g.clone() for g in grad_outputs]
    grads = torch.autograd.grad(outputs, (input, *params), grad_outputs)
    for given, copy in zip(grad_outputs, kept, strict=True):
        assert torch.equal(given, copy)
    reference = torch.autograd.grad(
        _reference_outputs(input, params), (input, *params), grad_outputs
    )
    for ours, theirs in zip(grads, reference, strict=True):
        torch.testing.assert_close(ours, theirs)


def _reference_outputs(input, params):
    hidden = torch.relu(F.linear(input, params[0], params[1]))
    return hidden, torch.relu(F.linear(hidden, params[2], params[3]))


def test_backward_passes_a_hidden_gradient_through_unchanged(make_tensor):
    # only a⁽¹⁾ is used: its gradient reaches layer 1 as handed in and must not be masked in place
    input, params = make_tensor((5, 4)), _params(make_tensor, [4, 3, 2])
    hidden, _ = MLPFunction.apply(input, ("relu", "relu"), *params)
    given = torch.randn_like(hidden)
    kept = given.clone()
    grads = torch.autograd.grad(hidden, (input, *params[:2]), given)
    assert torch.equal(given, kept)
    reference = torch.autograd.grad(
        _reference_outputs(input, params)[0], (input, *params[:2]), given
    )
    for ours, theirs in zip(grads, reference, strict=True):
        torch.testing.assert_close(ours, theirs)


def test_vmap_of_vjp_with_one_shared_cotangent():
    # the cotangent is not batched but the saved activations are: no in-place masking then
    torch.manual_seed(0)
    model = gnn.MLP([4, 3, 2])
    reference = _native_copy(model)
    inputs, cotangent = torch.randn(7, 5, 4), torch.randn(5, 2)

    def input_grad(network):
        return torch.func.vmap(lambda x: torch.func.vjp(network, x)[1](cotangent)[0])(inputs)

    torch.testing.assert_close(input_grad(model), input_grad(reference))


def _native_copy(model):
    native = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    native.load_state_dict(model.state_dict())
    return native


def test_relu_passes_the_gradient_of_nan_hidden_units_like_torch(make_tensor):
    # a NaN input column makes every pre-activation of its row NaN; gradients handed to the
    # hidden output and to the output reach layer 1 through ReLU's slope at NaN, 1 in torch
    input, params = make_tensor((5, 4), grad=False), _params(make_tensor, [4, 3, 2])
    input[1, 0] = float("nan")
    outputs = MLPFunction.apply(input, ("relu", "relu"), *params)
    grad_outputs = [torch.randn_like(o) for o in outputs]
    grads = torch.autograd.grad(outputs, params, grad_outputs)
    expected = torch.autograd.grad(_reference_outputs(input, params), params, grad_outputs)
    for ours, theirs in zip(grads, expected, strict=True):
        torch.testing.assert_close(ours, theirs, equal_nan=True)
