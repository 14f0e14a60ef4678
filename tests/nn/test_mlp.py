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
