"""NonFiniteLossGuard: a NaN/inf training loss stops the run, and the last good checkpoint stays.

The promise (README, "A loss that becomes NaN or infinite"): a non-finite loss in training
stops the run with a message naming the step, and leaves the last good checkpoint intact.
"""

from __future__ import annotations

import functools
import math
import re
from types import SimpleNamespace

import lightning.pytorch as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from gdtorch import nn as gnn
from gdtorch.data import TensorBatchLoader
from gdtorch.lightning import CatClassifier, NonFiniteLossError, NonFiniteLossGuard
from gdtorch.lightning.nonfinite import _all_finite
from gdtorch.train import run
from tests.cases import compose_train
from tests.reliability.helpers import (
    TINY,
    LastCheckpointHashes,
    all_finite,
    load_checkpoint,
    sha256,
)

# Linear regression on pixels (MSE, no output squashing) at a sane learning rate for the first
# epoch, then StepLR multiplies it by 1e9 (η = 1e6): the prediction overshoots further at every
# step until the squared error overflows float32. Deterministic on the CPU.
DIVERGES_IN_EPOCH_1 = [
    *TINY,
    "model=logistic",
    "loss=mse",
    "output_activation=null",
    "optimizer.lr=1e-3",
    "scheduler=step",
    "scheduler.step_size=1",
    "scheduler.gamma=1e9",
    "data.mode=minibatch",
    "data.batch_size=16",
    "trainer.max_epochs=5",
    "callbacks.early_stopping=null",
    "+callbacks.hashes._target_=tests.reliability.helpers.LastCheckpointHashes",
    "+callbacks.hashes.dirpath=${paths.output_dir}/checkpoints",
]


def test_guard_is_in_the_default_callbacks_and_checkpoints_do_not_save_on_exception(tmp_path):
    callbacks = compose_train(tmp_path).callbacks
    assert callbacks.non_finite_loss._target_ == "gdtorch.lightning.NonFiniteLossGuard"
    assert not callbacks.checkpoint.get("save_on_exception", False)


@pytest.mark.parametrize(
    "checkpointing",
    [[], ["callbacks.checkpoint.monitor=null"]],
    ids=["best-by-val-loss", "every-epoch"],  # every-epoch: without the guard, NaN weights saved
)
@pytest.mark.slow
def test_absurd_learning_rate_stops_the_run_and_leaves_the_last_checkpoint_intact(
    tmp_path, checkpointing
):
    cfg = compose_train(tmp_path, *DIVERGES_IN_EPOCH_1, *checkpointing)
    with pytest.raises(NonFiniteLossError) as raised:
        run(cfg)
    message = str(raised.value)
    pattern = r"training loss is (nan|inf|-inf) at step (\d+) \(epoch (\d+), batch"
    found = re.search(pattern, message)
    assert found, message
    step, epoch = int(found[2]), int(found[3])
    assert epoch >= 1 and step >= 4  # 4 steps per epoch: epoch 0 trained and was checkpointed

    folder = tmp_path / "checkpoints"
    last = folder / "last.ckpt"
    hashes = LastCheckpointHashes.recorded[str(folder)]
    # Byte-identical to the file the last good epoch wrote: nothing was saved on the exception.
    assert sha256(last) == hashes[epoch]
    checkpoint = load_checkpoint(last)  # weights_only=True
    assert checkpoint["epoch"] == epoch - 1 and checkpoint["global_step"] <= step
    assert all_finite(checkpoint["state_dict"])
    assert all_finite(checkpoint["optimizer_states"][0]["state"] or {"none": torch.zeros(1)})
    assert not list(folder.glob(".*.tmp")) and not list(folder.glob("*.tmp"))
    for path in folder.glob("*.ckpt"):  # the best checkpoint too
        assert all_finite(load_checkpoint(path)["state_dict"])


def _tiny_fit(
    tmp_path,
    callbacks: list[L.Callback],
    loss: torch.nn.Module | None = None,
    updates_per_batch: int | None = None,
    net: torch.nn.Module | None = None,
) -> None:
    """Two epochs of 4 updates on batches of 8: a DataLoader, or groups of updates_per_batch."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(32, 3, 4, 4, generator=generator)
    targets = (torch.rand(32, generator=generator) > 0.5).float()
    if updates_per_batch is None:
        loader = DataLoader(TensorDataset(images, targets), batch_size=8)
    else:
        loader = TensorBatchLoader(images, targets, 8, updates_per_batch=updates_per_batch)
    model = CatClassifier(
        net=net or gnn.MLP([48, 4, 1]),
        loss=loss or gnn.BCEWithLogitsLoss(),
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        input_shape=(3, 4, 4),
    )
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )
    trainer.fit(model, loader)


def test_an_update_that_makes_a_weight_non_finite_stops_the_run_naming_it(tmp_path):
    class InfiniteGradientAtStep3(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if trainer.global_step == 3:
                pl_module.net[0].bias.grad[0] = math.inf  # the loss of this batch is finite

    message = (
        r"parameter 'net\.0\.bias' is non-finite after the update of step 3 \(epoch 0, batch 3\) "
        r"\(the training loss of that batch was \d\.\d+"
    )
    with pytest.raises(NonFiniteLossError, match=message):
        _tiny_fit(tmp_path, [InfiniteGradientAtStep3(), NonFiniteLossGuard()])


def test_nan_prediction_from_the_model_stops_the_run(tmp_path):
    """A NaN prediction is a model bug: the MSE loss passes it on as NaN and the guard stops."""

    class NaNOutputAtStep2(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 2:
                with torch.no_grad():
                    pl_module.net[0].weight[0, 0] = math.nan

    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step 2 \(epoch 0"):
        _tiny_fit(tmp_path, [NaNOutputAtStep2(), NonFiniteLossGuard()], loss=gnn.MSELoss())


class NaNFromUpdate(torch.nn.Module):
    """An MLP whose training output is NaN from the forward of update ``step`` on."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.mlp = gnn.MLP([48, 4, 1])
        self.step, self.calls = step, 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        output = self.mlp(images)
        if self.training:
            self.calls += 1
            if self.calls > self.step:
                output = output * math.nan
        return output


@pytest.mark.parametrize(
    ("updates_per_batch", "step", "where"),
    [
        (None, 6, r"step 6 \(epoch 1, batch 2\)"),
        (4, 6, r"step 6 \(epoch 1, batch 0\)"),  # the third update of epoch 1's one batch
        (3, 5, r"step 5 \(epoch 1, batch 0\)"),  # groups of 3 then 1: the second update
        (3, 2, r"step 2 \(epoch 0, batch 0\)"),  # the last update of the first group
    ],
)
def test_a_nan_inside_a_batch_of_updates_is_named_at_its_own_step(
    tmp_path, updates_per_batch, step, where
):
    with pytest.raises(NonFiniteLossError, match=rf"training loss is nan at {where}"):
        _tiny_fit(tmp_path, [NonFiniteLossGuard()], None, updates_per_batch, NaNFromUpdate(step))


def test_a_weight_made_non_finite_in_a_batch_of_updates_names_the_batchs_steps(tmp_path):
    class InfiniteGradientAtStep7(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if trainer.global_step == 7:  # the last update of epoch 1: no later loss sees it
                pl_module.net[0].bias.grad[0] = math.inf

    message = (
        r"parameter 'net\.0\.bias' is non-finite after one of the updates of steps 4-7 "
        r"\(epoch 1, batch 0\)"
    )
    with pytest.raises(NonFiniteLossError, match=message):
        _tiny_fit(tmp_path, [InfiniteGradientAtStep7(), NonFiniteLossGuard()], updates_per_batch=4)


def _fake_trainer(other_rank_failed: bool = False) -> SimpleNamespace:
    def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
        assert all is False  # "any process"
        return decision or other_rank_failed

    strategy = SimpleNamespace(reduce_boolean_decision=reduce_boolean_decision)
    return SimpleNamespace(global_step=7, current_epoch=2, strategy=strategy)


@pytest.mark.parametrize(
    ("outputs", "shown"),
    [
        (torch.tensor(math.nan), "nan"),
        (torch.tensor(math.inf), "inf"),
        ({"loss": torch.tensor(-math.inf), "extra": 1}, "-inf"),
        (torch.tensor([math.nan]), "nan"),
    ],
    ids=["nan", "inf", "dict-minus-inf", "one-update"],
)
def test_loss_outputs_in_every_form_are_checked(outputs, shown):
    guard, trainer, module = NonFiniteLossGuard(), _fake_trainer(), torch.nn.Linear(2, 1)
    guard.on_train_batch_start(trainer, module, None, 5)
    message = rf"loss is {shown} at step 7 \(epoch 2, batch 5\)"
    with pytest.raises(NonFiniteLossError, match=message):
        guard.on_train_batch_end(trainer, module, outputs, None, 5)


@pytest.mark.parametrize(
    ("losses", "shown", "step"),
    [
        ([1.0, math.nan], "nan", 8),
        ([0.5, 0.4, math.nan, math.inf], "nan", 9),
        ([0.5, -math.inf, math.nan, 0.3], "-inf", 8),
        ([math.inf, math.nan], "inf", 7),
        ([0.1] * 9 + [math.nan], "nan", 16),
    ],
)
def test_the_losses_of_a_batch_of_updates_name_the_step_of_the_first_non_finite_one(
    losses, shown, step
):
    # One loss per update, from step 7 on: update i of the batch is step 7 + i.
    guard, trainer, module = NonFiniteLossGuard(), _fake_trainer(), torch.nn.Linear(2, 1)
    guard.on_train_batch_start(trainer, module, None, 5)
    message = rf"loss is {shown} at step {step} \(epoch 2, batch 5\)"
    for outputs in (torch.tensor(losses), {"loss": torch.tensor(losses)}):
        with pytest.raises(NonFiniteLossError, match=message):
            guard.on_train_batch_end(trainer, module, outputs, None, 5)


@pytest.mark.parametrize(
    "outputs",
    [torch.tensor(0.5), {"loss": torch.tensor(1.0)}, None, torch.tensor([0.5, 0.4, 1e30])],
)
def test_finite_loss_or_skipped_step_passes(outputs):
    guard, trainer, module = NonFiniteLossGuard(), _fake_trainer(), torch.nn.Linear(2, 1)
    guard.on_train_batch_start(trainer, module, None, 0)
    guard.on_train_batch_end(trainer, module, outputs, None, 0)


def test_a_failure_on_another_process_stops_this_one_too():
    guard, trainer, module = NonFiniteLossGuard(), _fake_trainer(True), torch.nn.Linear(2, 1)
    guard.on_train_batch_start(trainer, module, None, 1)
    with pytest.raises(NonFiniteLossError, match=r"another process .* at step 7 .* was 0\.5"):
        guard.on_train_batch_end(trainer, module, torch.tensor(0.5), None, 1)


def test_check_parameters_must_be_a_bool():
    with pytest.raises(TypeError, match="check_parameters must be a bool"):
        NonFiniteLossGuard(check_parameters="yes")


def test_the_fused_parameter_check_is_exact():
    huge = torch.full((4,), 1e30)  # finite, but its float32 norm overflows to inf
    assert torch.isinf(torch.linalg.vector_norm(huge))
    assert _all_finite(torch.tensor(0.5), [huge, torch.ones(3)])
    assert not _all_finite(torch.tensor(0.5), [torch.tensor([1.0, float("nan")])])
    assert not _all_finite(torch.tensor(float("inf")), [torch.ones(3)])
    assert _all_finite(None, [])
