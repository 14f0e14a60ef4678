"""SIGINT and SIGTERM stop a run with a whole ``last.ckpt``, status 130 or 143, and a line
that says how to resume (issue 16, item 10).

Before: SIGTERM became Lightning's ``SIGTERMException``, a ``SystemExit`` with status 0, and the
run ended with no metrics and status 0; SIGINT became a ``KeyboardInterrupt`` wherever the main
thread was, and one that landed in a weak-reference callback (about one in three, in the issue's
runs) was printed as "Exception ignored" and dropped: the run trained on and exited 0. Now
``run`` catches both signals (``StopOnSignal``), stops at the next batch, and raises
``RunInterrupted``; ``gdtorch-train`` prints one line and exits ``128 + signal``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import shlex
import signal
import subprocess
import time
import weakref
from pathlib import Path

import lightning.pytorch as L
import pytest

from gdtorch.lightning import training_checkpoint_progress
from gdtorch.train import RunInterrupted, run
from tests.cases import compose_train
from tests.reliability.helpers import TINY, TRAIN_SCRIPT, load_checkpoint, python, subprocess_env


@pytest.fixture(autouse=True)
def _sigint_not_ignored():
    """Lets SIGINT reach the runs, here and in the processes these tests start.

    A shell starts a background job (``bash scripts/test.sh &``, some CI runners) with SIGINT
    ignored, and exec keeps it ignored; gdtorch then leaves it ignored, as ``nohup`` intends.
    These tests are about a SIGINT that arrives, so they restore Python's own handler for their
    duration (a child process then starts with SIGINT at its default).
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


# 64 one-example updates an epoch in 8 batches, a checkpoint after every epoch: a run long
# enough to be interrupted in the middle, about 0.2 s an epoch.
MAX_EPOCHS = 30
LONG = [
    *TINY,
    "data.mode=stochastic",
    "data.updates_per_batch=8",
    f"trainer.max_epochs={MAX_EPOCHS}",
    "callbacks.early_stopping=null",
]
UPDATES_PER_EPOCH = 64
SIGNAL_AT = f"+callbacks.signal._target_={__name__}.SignalAt"


class SignalAt(L.Callback):
    """Sends ``signum`` to this process after the training batch that reaches ``step``.

    With ``in_weakref_callback`` the signal arrives while a ``weakref.finalize`` callback runs,
    where a ``KeyboardInterrupt`` is printed and dropped ("Exception ignored in: …").
    """

    def __init__(self, signum: int, step: int, in_weakref_callback: bool = False) -> None:
        self.signum, self.step, self.in_weakref_callback = signum, step, in_weakref_callback
        self.sent = False

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if self.sent or trainer.global_step < self.step:
            return
        self.sent = True
        if not self.in_weakref_callback:
            os.kill(os.getpid(), self.signum)
            return

        class Garbage:
            pass

        def finalizer() -> None:
            os.kill(os.getpid(), self.signum)
            time.sleep(0.01)  # the handler runs here, inside the weakref callback

        garbage = Garbage()
        weakref.finalize(garbage, finalizer)
        del garbage
        gc.collect()


def _signal_at(signum: int, step: int, in_weakref_callback: bool = False) -> list[str]:
    return [
        SIGNAL_AT,
        f"+callbacks.signal.signum={int(signum)}",
        f"+callbacks.signal.step={step}",
        f"+callbacks.signal.in_weakref_callback={in_weakref_callback}",
    ]


@pytest.mark.parametrize(
    ("signum", "status", "in_weakref_callback"),
    [(signal.SIGINT, 130, False), (signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)],
    ids=["sigint", "sigint-in-a-weakref-callback", "sigterm"],
)
@pytest.mark.slow
def test_a_signal_stops_run_at_the_next_batch_with_a_whole_last_checkpoint(
    tmp_path, signum, status, in_weakref_callback
):
    step = UPDATES_PER_EPOCH + 16  # in the middle of epoch 1, after epoch 0's checkpoint
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    cfg = compose_train(tmp_path, *LONG, *_signal_at(signum, step, in_weakref_callback))
    with pytest.raises(RunInterrupted) as stopped:
        run(cfg)
    interrupted = stopped.value
    assert interrupted.exit_status == status
    assert interrupted.signal_name == signal.Signals(signum).name
    assert (interrupted.epoch, interrupted.step) == (1, step)  # stopped after that batch
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert interrupted.checkpoint == last.absolute()
    assert training_checkpoint_progress(last) == (1, UPDATES_PER_EPOCH)  # epoch 0, whole
    assert str(interrupted) == (
        f"interrupted by {interrupted.signal_name} at epoch 1, step {step}; {last.absolute()} "
        f"holds 1 epochs ({UPDATES_PER_EPOCH} steps): resume with ckpt_path={last.absolute()}"
    )
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # restored

    resumed = compose_train(tmp_path, *LONG, "trainer.max_epochs=3", f"ckpt_path={last}")
    metrics = run(resumed)
    assert "test/acc" in metrics
    assert training_checkpoint_progress(last) == (3, 3 * UPDATES_PER_EPOCH)


def test_a_run_stopped_before_its_first_checkpoint_says_there_is_nothing_to_resume(tmp_path):
    cfg = compose_train(tmp_path, *LONG, *_signal_at(signal.SIGINT, 8))
    with pytest.raises(RunInterrupted) as stopped:
        run(cfg)
    assert stopped.value.checkpoint is None
    assert str(stopped.value) == (
        "interrupted by SIGINT at epoch 0, step 8, before its first checkpoint: there is "
        "nothing to resume from"
    )


# ---------------------------------------------------------------- gdtorch-train, as a user


def _start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [python(), str(TRAIN_SCRIPT), f"hydra.run.dir={run_dir}", *LONG, *overrides],
        cwd=run_dir.parent,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _interrupt_after_the_first_checkpoint(run_dir: Path, signum: int) -> tuple[int, str]:
    process = _start(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        deadline = time.monotonic() + 300
        while not last.exists():
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        process.send_signal(signum)
        _, err = process.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    return process.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(3))
@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"]
)
def test_gdtorch_train_exits_128_plus_the_signal_and_says_how_to_resume(
    tmp_path, signum, status, attempt
):
    run_dir = tmp_path / "run"
    code, err = _interrupt_after_the_first_checkpoint(run_dir, signum)
    assert code == status, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    last = run_dir / "checkpoints" / "last.ckpt"
    found = re.fullmatch(
        rf"gdtorch-train: interrupted by {name} at epoch (\d+), step (\d+); resume with: "
        rf"(gdtorch-train .* ckpt_path={re.escape(str(last))})",
        line,
    )
    assert found, line
    epoch, step = int(found[1]), int(found[2])
    assert 1 <= epoch < MAX_EPOCHS
    # last.ckpt is whole, and the last finished epoch's
    assert training_checkpoint_progress(last) == (epoch, epoch * UPDATES_PER_EPOCH)
    assert epoch * UPDATES_PER_EPOCH <= step < (epoch + 1) * UPDATES_PER_EPOCH
    assert not list(last.parent.glob("*.tmp")) and not list(last.parent.glob(".*.tmp"))

    if attempt == 0:  # the printed command resumes the run, in its folder, to its end
        command = shlex.split(found[3])
        assert command[1:-1] == LONG  # this run's overrides
        resumed = subprocess.run(
            [python(), str(TRAIN_SCRIPT), *command[1:]],
            cwd=tmp_path,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert load_checkpoint(last)["epoch"] == MAX_EPOCHS - 1
        assert not (tmp_path / "outputs").exists()  # it continued in run/
