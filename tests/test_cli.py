"""``gdtorch-train`` as a user runs it: from their own folder, mistakes, resuming, its log file."""

from __future__ import annotations

import csv
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gdtorch.cli import objective, worst_value
from tests import cases
from tests.cases import compose_train

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SH = ROOT / "scripts" / "train.sh"
TINY = [*cases.TINY, "trainer=cpu", "data.batch_size=16"]
HINT = "(set HYDRA_FULL_ERROR=1 for the full traceback)"
# Linear regression on pixels at η = 1e6: the squared error overflows in the first epoch.
DIVERGES = ["model=logistic", "loss=mse", "output_activation=null", "optimizer.lr=1e6"]


def train(cwd: Path, *overrides: str, full_error: bool = False) -> subprocess.CompletedProcess:
    """``bash scripts/train.sh overrides...`` run from ``cwd``, as a user in that folder would."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    env.pop("HYDRA_FULL_ERROR", None)
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    return subprocess.run(
        ["bash", str(TRAIN_SH), *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    *_, message, hint = result.stderr.strip().splitlines()
    assert message.startswith("gdtorch-train: error: ") and hint == HINT
    for text in expected:
        assert text in message, message


@pytest.mark.slow
def test_a_run_writes_outputs_where_it_is_called_and_logs_to_its_log_file(tmp_path):
    result = train(tmp_path, *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = tmp_path.glob("outputs/*/*")
    log = (run_dir / "gdtorch-train.log").read_text()
    assert "test accuracy:" in log and "test accuracy:" in result.stdout
    assert "Trainer.fit` stopped: `max_epochs=2` reached" in log  # Lightning's own messages
    assert f"tensorboard --logdir {run_dir}" in result.stdout
    assert not (ROOT / "outputs" / run_dir.relative_to(tmp_path / "outputs")).exists()


@pytest.mark.slow
def test_a_relative_data_root_is_the_callers_folder(tmp_path):
    for label in ("cat", "dog"):
        folder = tmp_path / "photos" / label
        folder.mkdir(parents=True)
        for k in range(12):
            colour = (40 * k % 256, 200 if label == "cat" else 20, 90)
            Image.new("RGB", (20, 20), colour).save(folder / f"{k}.png")
    args = [*TINY, "data=folder", "data.root=photos", "data.n_train=null"]
    result = train(tmp_path, *args, "data.n_val=4", "data.n_test=4")
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data=folder", "data.root=no_such_folder"], ["FileNotFoundError", "no_such_folder"]),
        (["data.n_val=0"], ["ValueError", "n_val must be a positive int, got 0"]),
        (["ckpt_path=missing.ckpt"], ["CheckpointError", "checkpoint not found: missing.ckpt"]),
        (["trainer.max_epochs=0"], ["ValueError", "trainer.max_epochs=0 leaves nothing to train"]),
        (DIVERGES, ["NonFiniteLossError", "the training loss is inf at step"]),
    ],
    ids=["data-root", "value", "checkpoint", "no-epochs", "diverged"],
)
@pytest.mark.slow
def test_a_user_error_is_one_clear_line_and_exit_status_1(tmp_path, overrides, expected):
    assert_one_line_error(train(tmp_path, *TINY, *overrides), *expected)
    assert not list(tmp_path.glob("outputs/*/*/checkpoints/*.ckpt"))


@pytest.mark.slow
def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_line(tmp_path):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    result = train(tmp_path, *TINY, "ckpt_path=notes.ckpt")
    assert_one_line_error(result, "CheckpointError", "cannot read checkpoint notes.ckpt")


@pytest.mark.slow
def test_hydra_full_error_shows_the_traceback(tmp_path):
    result = train(tmp_path, *TINY, "data.n_val=0", full_error=True)
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert HINT not in result.stderr


def _same(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is b
    return torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def _curve(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.mark.slow
def test_resuming_as_the_readme_says_continues_the_same_run(tmp_path):
    """2 epochs, then resume to 4 in place, against 4 epochs uninterrupted.

    Mini-batch mode validates every second epoch, so both lengths validate at the same epochs.
    """
    first = train(tmp_path, *TINY, "trainer.max_epochs=2", "hydra.run.dir=resumed")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = train(
        tmp_path, *TINY, "ckpt_path=resumed/checkpoints/last.ckpt", "trainer.max_epochs=4"
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "won't be reloaded" not in resumed.stderr
    assert not (tmp_path / "outputs").exists()  # no new folder
    whole = train(tmp_path, *TINY, "trainer.max_epochs=4", "hydra.run.dir=whole")
    assert whole.returncode == 0, whole.stderr[-3000:]

    a, b = (tmp_path / "resumed", tmp_path / "whole")
    last_a, last_b = (
        torch.load(run / "checkpoints" / "last.ckpt", weights_only=True) for run in (a, b)
    )
    assert last_a["epoch"] == last_b["epoch"] == 3
    for name, weight in last_b["state_dict"].items():
        assert torch.equal(last_a["state_dict"][name], weight), name
    for key, state in last_b["callbacks"].items():  # best score, early stopping's count
        for field in ("best_model_score", "best_score", "wait_count"):
            if field in state:
                assert _same(last_a["callbacks"][key][field], state[field]), (key, field)
    for tag in ("train/loss", "val/loss", "val/acc"):
        steps_a, steps_b = _curve(a, tag), _curve(b, tag)
        assert [s for s, _ in steps_a] == [s for s, _ in steps_b], tag
        assert torch.allclose(torch.tensor(steps_a), torch.tensor(steps_b)), tag
    assert len(list((a / ".hydra").glob("resumed-*/overrides.yaml"))) == 1
    assert "ckpt_path" not in (a / ".hydra" / "overrides.yaml").read_text()
    assert (a / "gdtorch-train.log").read_text().count("test accuracy:") == 2
    event_files = sorted((a / "tensorboard").glob("events.*"))
    again = train(
        tmp_path, *TINY, "ckpt_path=resumed/checkpoints/last.ckpt", "trainer.max_epochs=4"
    )
    assert_one_line_error(again, "the checkpoint has trained 4 epochs", "at least 5")
    assert sorted((a / "tensorboard").glob("events.*")) == event_files  # the refusal logs nothing


def test_the_objective_is_the_optimized_metric_a_validation_metric():
    metrics = {"val/acc": 0.75, "val/loss": 0.5, "test/acc": 0.9, "train/loss": 0.4}
    cfg = OmegaConf.create({"optimized_metric": "val/acc"})
    assert objective(cfg, metrics) == 0.75
    assert objective(OmegaConf.create({"optimized_metric": "val/loss"}), metrics) == 0.5
    assert objective(OmegaConf.create({"optimized_metric": None}), metrics) is None
    with pytest.raises(ValueError, match="optimized_metric=test/acc would tune on the test set"):
        objective(OmegaConf.create({"optimized_metric": "test/acc"}), metrics)
    with pytest.raises(ValueError, match="choose one of train/loss, val/acc, val/loss"):
        objective(OmegaConf.create({"optimized_metric": "val/accuracy"}), metrics)
    assert compose_train(Path("unused")).optimized_metric == "val/acc"


def test_a_diverged_job_returns_the_worst_value_for_the_sweeps_direction():
    assert worst_value("maximize") == -math.inf
    assert worst_value("minimize") == math.inf
    assert worst_value(SimpleNamespace(name="MAXIMIZE")) == -math.inf  # an enum's name
    assert math.isnan(worst_value(None)) and math.isnan(worst_value(["maximize", "minimize"]))


def sweep(cwd: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, list[Trial], dict]:
    """An Optuna sweep (``hparams_search=optuna``) of tiny runs; its trials and its result."""
    folder = cwd / "sweep"
    result = train(cwd, "hparams_search=optuna", *TINY, *overrides, f"hydra.sweep.dir={folder}")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = [Trial.read(job) for job in sorted(folder.glob("[0-9]*"), key=lambda p: int(p.name))]
    best = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    return result, trials, best


@dataclass
class Trial:
    """One job of a sweep, from its folder: its overrides and what it returned, as it logged."""

    overrides: dict[str, str]
    value: float  # -inf: diverged
    log: str

    @classmethod
    def read(cls, job: Path) -> Trial:
        lines = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        log = (job / "gdtorch-train.log").read_text()
        found = re.search(r"objective val/acc: (\S+)$", log, flags=re.MULTILINE)
        diverged = "this job diverged: it returns the worst value, -inf, to the sweeper" in log
        assert (found is None) == diverged, log[-2000:]
        value = -math.inf if diverged else float(found.group(1))
        return cls(dict(line.split("=", 1) for line in lines), value, log)


def _last_val_acc(job: Path) -> float:
    with (job / "csv" / "version_0" / "metrics.csv").open(newline="") as file:
        return [float(r["val/acc"]) for r in csv.DictReader(file) if r["val/acc"]][-1]


@pytest.mark.slow
def test_an_optuna_sweep_tunes_on_val_acc_and_reports_the_best_trial(tmp_path):
    result, trials, best = sweep(tmp_path, "hydra.sweeper.n_trials=3", "logger=csv")
    assert len(trials) == 3 and "Best value:" in result.stdout
    searched = ("optimizer.lr", "data.mode", "model")
    for job, trial in enumerate(trials):
        assert all(key in trial.overrides for key in searched), trial.overrides
        assert trial.overrides["model"] in {"four_layer", "two_layer", "logistic"}
        assert 1e-3 <= float(trial.overrides["optimizer.lr"]) <= 1.0
        if trial.value > -math.inf:  # the value it returned is its run's last val/acc
            assert trial.value == _last_val_acc(tmp_path / "sweep" / str(job))
    assert len({t.overrides["optimizer.lr"] for t in trials}) == 3  # three different trials
    assert best["best_value"] == max(t.value for t in trials) > -math.inf
    winners = [t for t in trials if t.value == best["best_value"]]
    assert any(
        best["best_params"]
        == {
            "optimizer.lr": float(t.overrides["optimizer.lr"]),
            "data.mode": t.overrides["data.mode"],
            "model": t.overrides["model"],
        }
        for t in winners
    ), (best, [t.overrides for t in winners])


@pytest.mark.slow
def test_a_trial_that_diverges_does_not_end_the_sweep(tmp_path):
    # η = 1e6 diverges (NonFiniteLossError), η = 1e-3 trains. The sampler's seed 0 draws 1e6
    # first, then 1e-3: a trial after the diverged one still runs.
    _, trials, best = sweep(
        tmp_path,
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.seed=0",
        "optimizer.lr=choice(0.001,1e6)",
        *DIVERGES[:-1],
        "data.mode=minibatch",
        "~logger",
    )
    assert len(trials) == 3
    diverged = [i for i, t in enumerate(trials) if t.value == -math.inf]
    trained = [i for i, t in enumerate(trials) if t.value > -math.inf]
    assert diverged and trained and diverged[0] < trained[-1], [t.overrides for t in trials]
    for i in diverged:
        assert trials[i].overrides["optimizer.lr"] == "1000000.0"
        assert "gdtorch-train: error: NonFiniteLossError" in trials[i].log
    assert best["best_params"] == {"optimizer.lr": 0.001}
    assert best["best_value"] == max(t.value for t in trials)
