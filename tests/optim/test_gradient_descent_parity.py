"""GradientDescent against torch.optim.SGD: the same parameters, step for step, in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim import SGD

from gdtorch.optim import GradientDescent

STEPS = 50
TOLERANCE = 1e-12

# name → a factory of constructor options (a factory, so each optimizer gets its own tensor lr).
CONFIGS = {
    "defaults": lambda: {},
    "lr": lambda: {"lr": 0.01},
    "tensor_lr": lambda: {"lr": torch.tensor(0.05)},
    "weight_decay": lambda: {"lr": 0.05, "weight_decay": 0.1},
    "momentum": lambda: {"lr": 0.05, "momentum": 0.9},
    "momentum_dampening": lambda: {"lr": 0.05, "momentum": 0.9, "dampening": 0.5},
    "momentum_weight_decay": lambda: {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01},
    "nesterov": lambda: {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    "nesterov_weight_decay": lambda: {
        "lr": 0.05,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 0.01,
    },
    "maximize_weight_decay": lambda: {"lr": 0.01, "maximize": True, "weight_decay": 0.01},
}
FOREACH = pytest.mark.parametrize("foreach", [False, True, None])


@FOREACH
@pytest.mark.parametrize("config", list(CONFIGS))
def test_matches_sgd_every_step(config, foreach, make_network, train, max_param_diff):
    gd_net, sgd_net = make_network(), make_network()
    gd = GradientDescent(gd_net.parameters(), foreach=foreach, **CONFIGS[config]())
    sgd = SGD(sgd_net.parameters(), foreach=foreach, **CONFIGS[config]())

    for t in range(STEPS):
        train(gd_net, gd, 1, start=t)
        train(sgd_net, sgd, 1, start=t)
        assert max_param_diff(gd_net, sgd_net) <= TOLERANCE, f"step {t}"
    assert max_param_diff(gd_net, make_network()) > 1e-4  # the parameters did move


@FOREACH
def test_two_param_groups_match_sgd(foreach, make_network, train, max_param_diff):
    def groups(network: nn.Sequential) -> list[dict]:
        return [
            {"params": network[0].parameters(), "lr": 0.1, "weight_decay": 0.01, "momentum": 0},
            {"params": network[2].parameters()},
        ]

    gd_net, sgd_net = make_network(), make_network()
    gd = GradientDescent(groups(gd_net), lr=0.05, momentum=0.9, foreach=foreach)
    sgd = SGD(groups(sgd_net), lr=0.05, momentum=0.9, foreach=foreach)
    train(gd_net, gd, STEPS)
    train(sgd_net, sgd, STEPS)

    assert max_param_diff(gd_net, sgd_net) <= TOLERANCE
    assert max_param_diff(gd_net[0], make_network()[0]) > 1e-4
    assert max_param_diff(gd_net[2], make_network()[2]) > 1e-4
    # Momentum is per group: buffers only for the second group's parameters.
    assert set(gd.state) == set(gd_net[2].parameters())


@FOREACH
def test_frozen_layer_and_missing_grads_match_sgd(foreach, make_network, loss_at, max_param_diff):
    nets = {"gd": make_network(), "sgd": make_network()}
    options = {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}
    options["foreach"] = foreach
    optimizers = {
        "gd": GradientDescent(nets["gd"].parameters(), **options),
        "sgd": SGD(nets["sgd"].parameters(), **options),
    }
    for network in nets.values():
        network[0].requires_grad_(False)

    for t in range(STEPS):
        for name, network in nets.items():
            optimizers[name].zero_grad()
            loss_at(network, t).backward()
            # The bias first gets a gradient at step 5, when the weight already has a buffer.
            if t < 5 or t % 4 == 0:
                network[2].bias.grad = None
            optimizers[name].step()

    assert max_param_diff(nets["gd"], nets["sgd"]) <= TOLERANCE
    assert max_param_diff(nets["gd"][0], make_network()[0]) == 0
    assert set(optimizers["gd"].state) == set(nets["gd"][2].parameters())


@pytest.mark.parametrize("foreach", [False, True])
def test_mixed_dtypes_in_one_group_match_sgd(foreach):
    def make_params() -> list[nn.Parameter]:
        generator = torch.Generator().manual_seed(3)
        return [
            nn.Parameter(torch.randn(3, 2, generator=generator, dtype=torch.float64)),
            nn.Parameter(torch.randn(4, generator=generator, dtype=torch.float32)),
            nn.Parameter(torch.randn(2, generator=generator, dtype=torch.float64)),
        ]

    def cost(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return a.sin().sum() + (b**2).sum() + (c * a[0]).sum()

    options = {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}
    gd_params, sgd_params = make_params(), make_params()
    gd = GradientDescent(gd_params, foreach=foreach, **options)
    sgd = SGD(sgd_params, foreach=foreach, **options)
    for _ in range(20):
        for optimizer, params in ((gd, gd_params), (sgd, sgd_params)):
            optimizer.zero_grad()
            cost(*params).backward()
            optimizer.step()

    for mine, reference, initial in zip(gd_params, sgd_params, make_params(), strict=True):
        assert mine.dtype == reference.dtype
        assert (mine - reference).abs().max() <= TOLERANCE
        assert not torch.equal(mine, initial)


SPARSE_CONFIGS = {
    "plain": {"lr": 0.1},
    "momentum": {"lr": 0.1, "momentum": 0.9},
    "nesterov": {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    "maximize_dampening": {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "maximize": True},
}


def _sparse_embedding() -> nn.Embedding:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        return nn.Embedding(10, 3, sparse=True).double()


def _sparse_backward(embedding: nn.Embedding, t: int) -> None:
    embedding(torch.tensor([t % 10, (3 * t) % 10, 2])).pow(2).sum().backward()


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("config", list(SPARSE_CONFIGS))
def test_sparse_gradients_match_sgd(config, foreach):
    gd_emb, sgd_emb = _sparse_embedding(), _sparse_embedding()
    gd = GradientDescent(gd_emb.parameters(), foreach=foreach, **SPARSE_CONFIGS[config])
    sgd = SGD(sgd_emb.parameters(), foreach=foreach, **SPARSE_CONFIGS[config])
    for t in range(10):
        for optimizer, embedding in ((gd, gd_emb), (sgd, sgd_emb)):
            optimizer.zero_grad()
            _sparse_backward(embedding, t)
            assert embedding.weight.grad.is_sparse
            optimizer.step()

    assert (gd_emb.weight - sgd_emb.weight).abs().max() <= TOLERANCE
    assert not torch.equal(gd_emb.weight, _sparse_embedding().weight)


@pytest.mark.parametrize("foreach", [False, True])
def test_sparse_gradients_with_weight_decay_raise(foreach):
    embedding = _sparse_embedding()
    optimizer = GradientDescent(embedding.parameters(), lr=0.1, weight_decay=0.01, foreach=foreach)
    _sparse_backward(embedding, 0)
    with pytest.raises(RuntimeError, match="weight_decay is not supported with sparse gradients"):
        optimizer.step()
    assert torch.equal(embedding.weight, _sparse_embedding().weight)


@FOREACH
@pytest.mark.parametrize("config", list(CONFIGS))
def test_step_leaves_gradients_untouched(config, foreach, make_network, train, loss_at):
    # torch.optim.SGD's foreach Nesterov path overwrites p.grad with the Nesterov direction;
    # GradientDescent never writes the gradients it is given.
    network = make_network()
    optimizer = GradientDescent(network.parameters(), foreach=foreach, **CONFIGS[config]())
    train(network, optimizer, 1)  # so that the momentum buffers exist
    optimizer.zero_grad()
    loss_at(network, 1).backward()
    before = [p.grad.clone() for p in network.parameters()]
    optimizer.step()
    for p, grad in zip(network.parameters(), before, strict=True):
        assert torch.equal(p.grad, grad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("foreach", [None, False])
def test_cuda_matches_sgd(foreach, make_network, batches, max_param_diff):
    options = {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}
    gd_net, sgd_net = make_network().cuda(), make_network().cuda()
    gd_net[2].float()  # two dtypes on one device: the foreach path groups them
    sgd_net[2].float()
    gd = GradientDescent(gd_net.parameters(), foreach=foreach, **options)
    sgd = SGD(sgd_net.parameters(), foreach=foreach, **options)
    for t in range(STEPS):
        inputs, targets = (tensor.cuda() for tensor in batches[t % len(batches)])
        for optimizer, network in ((gd, gd_net), (sgd, sgd_net)):
            optimizer.zero_grad()
            hidden = network[1](network[0](inputs)).float()
            nn.functional.mse_loss(network[2](hidden), targets.float()).backward()
            optimizer.step()

    assert max_param_diff(gd_net, sgd_net) <= TOLERANCE
    assert max_param_diff(gd_net.cpu(), make_network()) > 1e-4
