"""run(cfg) takes exactly the tutorial's gradient descent, however its batches are served.

Each mode trains through ``run(cfg)`` in float64 and its last checkpoint is compared with a plain
PyTorch loop doing one update per example (stochastic), per mini-batch, or per epoch (batch), in
the same shuffled order with the same hyper-parameters: the weights agree within 1e-10.
"""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from gdtorch.data import TensorBatchLoader
from gdtorch.train import build, run
from tests.cases import compose_train

EPOCHS = 3
SMALL = [
    "data.n_train=23",  # not a multiple of the mini-batch or the group: partial ones at the end
    "data.n_val=8",
    "data.n_test=8",
    "data.image_size=16",
    "data.batch_size=5",
    f"trainer.max_epochs={EPOCHS}",
    "trainer.precision=64-true",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]
UPDATES_PER_EPOCH = {"stochastic": 23, "minibatch": 5, "batch": 1}


def _plain_gradient_descent(cfg, initial: dict[str, torch.Tensor], seed: int) -> dict:
    """The mode's updates in a plain loop: ``θ ← θ − η∇C`` per example, mini-batch or epoch."""
    data = instantiate(cfg.data)
    data.setup("fit")
    net = instantiate(cfg.model).double()
    net.load_state_dict(initial)
    loss_fn = instantiate(cfg.loss)
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    mode = cfg.data.mode
    batch_size = {"stochastic": 1, "minibatch": cfg.data.batch_size, "batch": len(data.train_set)}
    loader = TensorBatchLoader(
        data.train_set.images,
        data.train_set.targets,
        batch_size[mode],
        shuffle=mode != "batch",
        seed=seed,
        normalize=(data.mean, data.std),
    )
    for _ in range(EPOCHS):
        for images, targets in loader:
            output = net(images.double())
            loss = loss_fn(output, targets.double().view_as(output))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["stochastic", "minibatch", "batch"])
@pytest.mark.parametrize("updates_per_batch", [None, 3])
def test_a_run_is_exactly_the_plain_gradient_descent_of_its_mode(tmp_path, mode, updates_per_batch):
    grouping = [] if updates_per_batch is None else [f"data.updates_per_batch={updates_per_batch}"]
    cfg = compose_train(tmp_path / "run", f"data.mode={mode}", *SMALL, *grouping)
    initial = {k: v.double() for k, v in build(cfg)[1].net.state_dict().items()}

    run(cfg)

    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == EPOCHS * UPDATES_PER_EPOCH[mode]  # every update counted
    trained = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items()}
    plain = _plain_gradient_descent(cfg, initial, seed=cfg.data.seed)
    for name, value in plain.items():
        assert trained[name].dtype == torch.float64
        torch.testing.assert_close(trained[name], value, rtol=0, atol=1e-10, msg=name)
    if mode != "batch":  # the comparison can tell another order apart
        shuffled_otherwise = _plain_gradient_descent(cfg, initial, seed=cfg.data.seed + 1)
        differences = [(trained[k] - v).abs().max() for k, v in shuffled_otherwise.items()]
        assert max(differences) > 1e-6
