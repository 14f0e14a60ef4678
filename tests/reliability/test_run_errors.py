"""A bad setting stops ``gdtorch-train`` before training, in one line that names it (issue 16,
item 11).

Each of these used to fail deep inside Hydra, torch or Lightning, with a traceback naming
neither the setting nor its value — some after a whole epoch: ``trainer.max_epochs=abc`` (a
comparison of str and int), ``optimizer.lr=abc`` ("must be real number, not str"),
``logger=null`` (Hydra's "Got NoneType"), ``scheduler.step_size=0`` (``ZeroDivisionError`` after
the first epoch), ``seed=2**63`` and ``data.seed=2**63`` (an overflow). ``run`` checks the
settings first (``gdtorch.train.check_config``); ``logger=null`` never reaches it (Hydra refuses
it while composing), so the command's shell answers it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gdtorch.cli import null_group_override
from gdtorch.train import SETTINGS, check_config
from tests.cases import compose_train
from tests.reliability.helpers import TINY, TRAIN_SCRIPT, python, subprocess_env

HINT = "(set HYDRA_FULL_ERROR=1 for the full traceback)"


def _train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [python(), str(TRAIN_SCRIPT), *TINY, f"hydra.run.dir={tmp_path / 'run'}"]
    return subprocess.run(
        [*command, *overrides],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["trainer.max_epochs=abc"],
            "trainer.max_epochs must be an int >= 1 (or -1 for no limit); got 'abc'",
        ),
        (["optimizer.lr=abc"], "optimizer.lr must be a finite number >= 0; got 'abc'"),
        (
            ["logger=null"],
            "logger=null: a config group cannot be set to null; choose one of its options "
            "(csv, many, none, tensorboard), e.g. logger=none (or ~logger).",
        ),
        (
            ["scheduler=step", "scheduler.step_size=0"],
            "scheduler.step_size must be an int >= 1 (epochs); got 0",
        ),
        (
            ["seed=9223372036854775808"],  # 2**63
            "seed must be an int from 0 to 4294967295 (2**32 - 1: the seeds numpy and "
            "Lightning accept); got 9223372036854775808",
        ),
        (["data.seed=9223372036854775808"], "data.seed must be an int from 0 to 4294967295"),
    ],
    ids=["max-epochs", "lr", "logger-null", "step-size", "seed", "data-seed"],
)
@pytest.mark.slow
def test_a_bad_setting_is_one_line_naming_it_before_any_training(tmp_path, overrides, message):
    result = _train(tmp_path, *overrides)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    *_, line, hint = result.stderr.strip().splitlines()
    assert line.startswith("gdtorch-train: error: ") and hint == HINT, result.stderr[-3000:]
    assert message in line, line
    assert not list(tmp_path.rglob("*.ckpt"))  # stopped before any epoch
    assert not (tmp_path / "run" / "tensorboard").exists()


@pytest.mark.slow
def test_every_checked_setting_names_its_value_and_what_is_allowed(tmp_path):
    """Each setting of ``SETTINGS`` refused with a value of the wrong type, in process."""
    groups = {"scheduler.step_size": "scheduler=step", "scheduler.gamma": "scheduler=step"}
    absent = {"trainer.max_steps", "optimizer.dampening"}  # not in the shipped configs
    check_config(compose_train(tmp_path, "scheduler=cosine", "optimizer=nesterov"))
    for setting, _, allowed in SETTINGS:
        value = "maybe" if setting == "optimizer.nesterov" else "abc"
        override = f"{'+' if setting in absent else ''}{setting}={value}"
        group = groups.get(setting, "scheduler=cosine")
        cfg = compose_train(tmp_path, group, "optimizer=nesterov", override)
        with pytest.raises(ValueError) as refused:
            check_config(cfg)
        assert str(refused.value) == f"{setting} must be {allowed}; got {value!r}"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=-2", "trainer.max_epochs must be an int >= 1 (or -1 for no limit)"),
        ("trainer.max_epochs=2.5", "trainer.max_epochs must be an int"),
        ("+trainer.max_steps=0", "trainer.max_steps must be an int >= 1 (or -1 for no limit)"),
        ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps must be an int >= 1; got 0"),
        ("optimizer.lr=-0.1", "optimizer.lr must be a finite number >= 0; got -0.1"),
        ("optimizer.lr=nan", "optimizer.lr must be a finite number >= 0; got nan"),
        ("optimizer.lr=true", "optimizer.lr must be a finite number >= 0; got True"),
        ("seed=-1", "seed must be an int from 0 to 4294967295"),
        ("seed=4294967296", "seed must be an int from 0 to 4294967295"),
        ("callbacks.early_stopping.patience=-1", "patience must be an int >= 0; got -1"),
    ],
)
def test_values_out_of_range_are_refused(tmp_path, override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_config(compose_train(tmp_path, override))


def test_a_cosine_schedule_without_an_epoch_limit_names_t_max(tmp_path):
    cfg = compose_train(tmp_path, "scheduler=cosine", "trainer.max_epochs=-1")
    message = "scheduler.T_max must be an int >= 1 (epochs; it follows trainer.max_epochs"
    with pytest.raises(ValueError, match=re.escape(message)):
        check_config(cfg)


def test_only_group_overrides_set_to_null_are_answered_by_the_shell():
    assert "e.g. scheduler=none (or ~scheduler)" in null_group_override(["scheduler=null"])
    assert "choose one of its options (fdr, overfit), e.g. ~debug" in null_group_override(
        ["debug=NULL"]
    )
    assert null_group_override(["ckpt_path=null", "logger=none", "~logger"]) is None
    assert null_group_override(["logger.csv=null"]) is None  # an entry, not the group
