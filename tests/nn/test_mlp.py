"""MLP: the tutorial's feed-forward network out of gdtorch layers."""

from __future__ import annotations

import pytest
import torch

from gdtorch.nn import MLP, Linear, ReLU, Sigmoid, Tanh


def test_classic_cat_network_layout_and_state_dict_keys():
    model = MLP([12288, 20, 7, 5, 1])
    kinds = [type(m) for m in model]
    assert kinds == [Linear, ReLU, Linear, ReLU, Linear, ReLU, Linear]
    assert list(model.state_dict()) == [
        f"{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")
    ]
    assert (
        sum(p.numel() for p in model.parameters())
        == 12288 * 20 + 20 + 20 * 7 + 7 + 7 * 5 + 5 + 5 + 1
    )


def test_flattens_images_and_applies_output_activation():
    model = MLP([3 * 4 * 4, 5, 1], activation="tanh", output_activation="sigmoid")
    assert isinstance(model[1], Tanh) and isinstance(model[-1], Sigmoid)
    images = torch.rand(6, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    output = model(images)
    expected = model[3](model[2](model[1](model[0](images.reshape(6, -1)))))
    torch.testing.assert_close(output, expected)
    assert output.shape == (6, 1) and ((output > 0) & (output < 1)).all()


def test_logistic_regression_is_one_layer():
    model = MLP([10, 1], output_activation="sigmoid")
    assert [type(m) for m in model] == [Linear, Sigmoid]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sizes": [10]}, "at least two positive integers"),
        ({"sizes": [10, 0, 1]}, "at least two positive integers"),
        ({"sizes": [10, 1], "output_activation": "softmax"}, "unknown output_activation='softmax'"),
        ({"sizes": [10, 3, 1], "activation": "gelu"}, "unknown activation='gelu'"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


def _backward_nodes(tensor: torch.Tensor) -> list[str]:
    """The names of every node in ``tensor``'s backward graph."""
    names, stack, seen = [], [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_fused_and_per_layer_paths_give_the_same_values_and_gradients(activation):
    torch.manual_seed(0)
    fused = MLP([6, 5, 4, 1], activation=activation, output_activation="sigmoid").double()
    per_layer = MLP(
        [6, 5, 4, 1], activation=activation, output_activation="sigmoid", fused=False
    ).double()
    per_layer.load_state_dict(fused.state_dict())
    x = torch.randn(7, 6, dtype=torch.float64)
    outputs = [model(x) for model in (fused, per_layer)]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-14)
    for output in outputs:
        output.sum().backward()
    for (name, p), q in zip(fused.named_parameters(), per_layer.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-14, msg=name)


def test_the_fused_flag_picks_the_path_that_runs():
    x = torch.randn(3, 6)
    fused = _backward_nodes(MLP([6, 5, 1])(x))
    per_layer = _backward_nodes(MLP([6, 5, 1], fused=False)(x))
    assert [n for n in fused if n.endswith("FunctionBackward")] == ["MLPFunctionBackward"]
    assert sorted(n for n in per_layer if n.endswith("FunctionBackward")) == [
        "LinearFunctionBackward",
        "LinearFunctionBackward",
        "ReLUFunctionBackward",
    ]
    assert repr(MLP([6, 1], fused=False)).startswith("MLP(\n  fused=False")


def test_a_hook_makes_the_fused_model_run_layer_by_layer():
    model = MLP([6, 5, 1])
    seen = []
    model[1].register_forward_hook(lambda module, args, output: seen.append(output.shape))
    nodes = _backward_nodes(model(torch.randn(3, 6)))
    assert seen == [(3, 5)]  # the hook saw its layer run
    assert "MLPFunctionBackward" not in nodes and "ReLUFunctionBackward" in nodes


def test_fused_must_be_a_bool():
    with pytest.raises(TypeError, match="fused must be True or False, got fused='yes'"):
        MLP([6, 1], fused="yes")
