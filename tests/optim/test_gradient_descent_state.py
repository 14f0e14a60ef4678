"""GradientDescent's state: state_dict round trips, interchange with torch.optim.SGD, old state."""

from __future__ import annotations

import inspect
import io
import pickle

import pytest
import torch
from torch.optim import SGD

from gdtorch.optim import GradientDescent

OPTIONS = {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}
OPTION_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(GradientDescent).parameters.items()
    if name not in {"params", "lr"}
}


def _through_bytes(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("through_bytes", [False, True], ids=["in_memory", "torch_save"])
@pytest.mark.parametrize(
    ("saver", "loader"),
    [(GradientDescent, GradientDescent), (SGD, GradientDescent), (GradientDescent, SGD)],
    ids=["gd_to_gd", "sgd_to_gd", "gd_to_sgd"],
)
def test_resumed_run_matches_uninterrupted_sgd(
    saver, loader, through_bytes, foreach, make_network, train, max_param_diff
):
    reference = make_network()
    train(reference, SGD(reference.parameters(), foreach=foreach, **OPTIONS), 20)

    network = make_network()
    first = saver(network.parameters(), foreach=foreach, **OPTIONS)
    train(network, first, 10)
    state = first.state_dict()
    if through_bytes:
        state = _through_bytes(state)
    # Built with other options on purpose: loading must restore the saved ones and the buffers.
    resumed = loader(network.parameters(), lr=0.5, foreach=foreach)
    resumed.load_state_dict(state)
    train(network, resumed, 10, start=10)

    assert max_param_diff(network, reference) <= 1e-12


def test_state_holds_only_momentum_buffers_like_sgd(make_network, train):
    gd_net, sgd_net = make_network(), make_network()
    gd = GradientDescent(gd_net.parameters(), **OPTIONS)
    sgd = SGD(sgd_net.parameters(), **OPTIONS)
    train(gd_net, gd, 3)
    train(sgd_net, sgd, 3)

    gd_state, sgd_state = gd.state_dict()["state"], sgd.state_dict()["state"]
    assert set(gd_state) == set(sgd_state) == {0, 1, 2, 3}
    for index, entry in gd_state.items():
        assert set(entry) == {"momentum_buffer"}
        assert torch.equal(entry["momentum_buffer"], sgd_state[index]["momentum_buffer"])
    gd_group, sgd_group = gd.state_dict()["param_groups"][0], sgd.state_dict()["param_groups"][0]
    assert gd_group == {key: sgd_group[key] for key in gd_group}


def test_no_state_without_momentum(make_network, train):
    network = make_network()
    optimizer = GradientDescent(network.parameters(), lr=0.05, weight_decay=0.01)
    train(network, optimizer, 3)
    assert optimizer.state_dict()["state"] == {}


def test_loading_state_without_newer_options_fills_defaults(make_network, train, max_param_diff):
    reference = make_network()
    train(reference, SGD(reference.parameters(), lr=0.05, momentum=0.9), 8)

    network = make_network()
    first = GradientDescent(network.parameters(), lr=0.05, momentum=0.9)
    train(network, first, 4)
    old_state = first.state_dict()
    for key in ("dampening", "weight_decay", "nesterov", "maximize", "foreach"):
        del old_state["param_groups"][0][key]

    resumed = GradientDescent(
        network.parameters(), lr=0.5, momentum=0.5, weight_decay=0.1, maximize=True
    )
    resumed.load_state_dict(old_state)
    group = resumed.param_groups[0]
    assert {key: group[key] for key in OPTION_DEFAULTS} == {**OPTION_DEFAULTS, "momentum": 0.9}
    train(network, resumed, 4, start=4)
    assert max_param_diff(network, reference) <= 1e-12


def test_unpickling_old_optimizer_fills_defaults_and_groups():
    optimizer = GradientDescent([torch.nn.Parameter(torch.ones(2))], lr=0.05, momentum=0.9)
    for options in (optimizer.defaults, optimizer.param_groups[0]):
        for key in ("dampening", "nesterov", "maximize", "foreach"):
            del options[key]

    restored = pickle.loads(pickle.dumps(optimizer))
    restored.add_param_group({"params": [torch.nn.Parameter(torch.ones(3))]})
    for options in (restored.defaults, *restored.param_groups):
        assert {key: options[key] for key in OPTION_DEFAULTS} == {
            **OPTION_DEFAULTS,
            "momentum": 0.9,
        }
