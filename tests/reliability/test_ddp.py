"""DDP on two CPU processes (gloo) gives the same result as one process (README: "Several
GPUs or machines").

gdtorch writes no distributed code: Lightning's DDP all-reduces the gradients that gdtorch's
hand-written backward passes leave in ``.grad``, and every process then takes the same
``GradientDescent`` step. ``CatDataModule`` is not a ``DataLoader``, so Lightning cannot inject a
``DistributedSampler``; its ``TensorBatchLoader`` shards each epoch itself, as
``DistributedSampler`` does (same order on every process, every ``world_size``-th index from
``rank``). ``data.batch_size`` is per process; in ``batch`` mode each process takes its whole
shard, so the global batch is the whole training set.
"""

from __future__ import annotations

import subprocess
import warnings
from types import SimpleNamespace

import pytest
import torch

from gdtorch.data import CatDataModule
from gdtorch.train import run
from tests.cases import compose_train
from tests.reliability import ddp_worker
from tests.reliability.helpers import (
    TINY,
    TRAIN_SCRIPT,
    load_checkpoint,
    python,
    subprocess_env,
)

STEPS = 4


def test_a_training_set_that_does_not_split_evenly_over_the_processes_is_flagged():
    """Padding to equal shards repeats examples, so DDP would differ from one process: say so.

    Fails until ``CatDataModule.train_dataloader`` warns (the fix is in the reliability report).
    """
    datamodule = CatDataModule(mode="batch", n_train=33, n_val=8, n_test=8, image_size=16)
    datamodule.setup()
    datamodule.trainer = SimpleNamespace(global_rank=0, world_size=2, overfit_batches=0)
    with pytest.warns(UserWarning, match=r"n_train=33 is not a multiple of the 2 processes"):
        datamodule.train_dataloader()
    even = CatDataModule(mode="batch", n_train=32, n_val=8, n_test=8, image_size=16)
    even.setup()
    even.trainer = SimpleNamespace(global_rank=0, world_size=2, overfit_batches=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        even.train_dataloader()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict]:
    """What each of the two DDP processes held after ``STEPS`` full-batch steps."""
    out = tmp_path_factory.mktemp("ddp")
    command = [python(), ddp_worker.__file__, str(out), "--devices=2", "--mode=batch"]
    result = subprocess.run(
        [*command, f"--steps={STEPS}"],
        capture_output=True,
        text=True,
        timeout=180,
        env=subprocess_env(),
        cwd=out,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]


@pytest.fixture(scope="module")
def one_process() -> dict:
    with torch.random.fork_rng(devices=[]):
        return ddp_worker.train(None, devices=1, mode="batch", steps=STEPS, batch_size=16)


@pytest.mark.slow
def test_both_processes_hold_the_same_parameters_and_momentum_buffers(two_processes):
    rank0, rank1 = two_processes
    assert (rank0["rank"], rank1["rank"], rank0["world_size"]) == (0, 1, 2)
    assert rank0["global_step"] == rank1["global_step"] == STEPS
    for key in ("params", "momentum"):
        assert rank0[key].keys() == rank1[key].keys()
        for name, tensor in rank0[key].items():
            assert torch.equal(tensor, rank1[key][name]), (key, name)


@pytest.mark.slow
def test_each_step_the_processes_share_the_global_batch_without_overlap(two_processes, one_process):
    rank0, rank1 = two_processes
    assert len(rank0["batches"]) == len(rank1["batches"]) == len(one_process["batches"]) == STEPS
    for step, expected in enumerate(one_process["batches"]):
        assert len(expected) == ddp_worker.N_TRAIN  # batch mode: the whole training set
        shares = rank0["batches"][step], rank1["batches"][step]
        assert len(shares[0]) == len(shares[1]) == len(expected) // 2
        together = torch.tensor(sorted(shares[0] + shares[1]), dtype=torch.float64)
        torch.testing.assert_close(together, torch.tensor(sorted(expected), dtype=torch.float64))


@pytest.mark.slow
def test_weights_and_momentum_after_n_steps_equal_one_process(two_processes, one_process):
    for key in ("params", "momentum"):
        for name, expected in one_process[key].items():
            torch.testing.assert_close(two_processes[0][key][name], expected, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_trainer_ddp_config_trains_on_two_processes_like_one(tmp_path):
    """``trainer=ddp`` end to end (Hydra, run(cfg), the default callbacks, checkpoints).

    ``data.batch_size`` is per process: 2 processes × 8 take the steps 1 process × 16 takes.
    """
    common = [
        *(override for override in TINY if not override.startswith("trainer=")),
        "data.mode=minibatch",
        "optimizer=momentum",
        "trainer.max_epochs=2",
        "callbacks.early_stopping=null",
    ]
    ddp_dir = tmp_path / "ddp"
    command = [
        python(),
        str(TRAIN_SCRIPT),
        f"hydra.run.dir={ddp_dir}",
        *common,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "data.batch_size=8",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=180, env=subprocess_env(), cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "test accuracy:" in result.stdout
    assert (ddp_dir / "train_ddp_process_1.log").exists()  # Lightning started rank 1

    one_dir = tmp_path / "one"
    with torch.random.fork_rng(devices=[]):
        run(compose_train(one_dir, *common, "trainer=cpu", "data.batch_size=16"))

    two = load_checkpoint(ddp_dir / "checkpoints" / "last.ckpt")
    one = load_checkpoint(one_dir / "checkpoints" / "last.ckpt")
    assert two["global_step"] == one["global_step"] == 8  # 64 examples / 16 per step × 2 epochs
    for name, expected in one["state_dict"].items():
        torch.testing.assert_close(two["state_dict"][name], expected, rtol=0, atol=1e-6)
    buffers = two["optimizer_states"][0]["state"]
    for key, state in one["optimizer_states"][0]["state"].items():
        actual = buffers[key]["momentum_buffer"]
        torch.testing.assert_close(actual, state["momentum_buffer"], rtol=0, atol=1e-6)
