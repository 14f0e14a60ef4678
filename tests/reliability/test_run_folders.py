"""One run per output folder (issue 16, item 9).

Two runs in one folder used to overwrite each other silently: the second's ``last.ckpt`` over
the first's, its ``.hydra/`` over the first's, both runs' TensorBoard events side by side (one
set of curves). Now a run refuses a folder that holds another run — live (a process holds the
folder's ``.run.lock``) or finished or killed after its first checkpoint — unless it resumes
that run's ``last.ckpt``; ``gdtorch-train`` checks before Hydra writes into the folder. And the
default folder, ``outputs/<date>/<time>``, is created atomically: a run that starts in the same
second as another gets ``<time>-2``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from gdtorch.cli import RunFolderGuard
from gdtorch.config import RunFolderInUse, check_run_folder, new_folder, release_run_folder
from gdtorch.train import run
from tests.cases import compose_train
from tests.reliability.helpers import TINY, TRAIN_SCRIPT, python, sha256, subprocess_env

HINT = "(set HYDRA_FULL_ERROR=1 for the full traceback)"
# One epoch, one update, TensorBoard logs.
LOGGED = [override for override in TINY if override != "~logger"]
QUICK = [*LOGGED, "trainer.max_epochs=1", "data.mode=batch", "trainer.check_val_every_n_epoch=1"]


def _start(cwd: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [python(), str(TRAIN_SCRIPT), *QUICK, *overrides],
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, out, err


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (but the lock) and its hash."""
    return {
        str(p.relative_to(folder)): sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".run.lock"
    }


@pytest.mark.slow
def test_two_runs_started_at_once_get_a_folder_each(tmp_path):
    processes = [_start(tmp_path), _start(tmp_path)]  # the default outputs/<date>/<time>
    for code, _, err in map(_finish, processes):
        assert code == 0, err[-3000:]
    folders = sorted(tmp_path.glob("outputs/*/*"))
    assert len(folders) == 2, folders
    if folders[0].name.split("-")[:3] == folders[1].name.split("-")[:3]:  # the same second
        assert folders[1].name == f"{folders[0].name}-2"
    for folder in folders:
        assert (folder / ".hydra" / "config.yaml").is_file()
        assert (folder / "checkpoints" / "last.ckpt").is_file()
        assert (folder / "gdtorch-train.log").read_text().count("test accuracy:") == 1
        assert len(list((folder / "tensorboard").glob("events.out.tfevents.*"))) >= 1


@pytest.mark.slow
def test_the_new_folder_of_a_second_process_asking_for_the_same_path_is_another(tmp_path):
    ask = [python(), "-c", "from gdtorch.config import new_folder; print(new_folder('runs/a'))"]
    answers = [
        subprocess.run(ask, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True)
        for _ in range(3)
    ]
    assert [a.stdout.strip() for a in answers] == ["runs/a", "runs/a-2", "runs/a-3"], answers
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["a", "a-2", "a-3"]


def test_a_process_gets_the_same_new_folder_each_time_it_asks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "b").mkdir(parents=True)  # taken, e.g. by a run started this second
    assert new_folder("runs/b") == "runs/b-2"
    assert new_folder("runs/b") == "runs/b-2"  # Hydra resolves hydra.run.dir several times
    assert not (tmp_path / "runs" / "b-3").exists()


@pytest.mark.slow
def test_a_second_run_into_a_finished_runs_folder_is_refused_and_changes_nothing(tmp_path):
    folder = tmp_path / "first"
    code, _, err = _finish(_start(tmp_path, f"hydra.run.dir={folder}"))
    assert code == 0, err[-3000:]
    before = _files(folder)
    assert {".hydra/config.yaml", "checkpoints/last.ckpt", "gdtorch-train.log"} <= before.keys()

    code, _, err = _finish(_start(tmp_path, f"hydra.run.dir={folder}", "optimizer.lr=0.5"))
    assert code == 1 and "Traceback" not in err, err[-3000:]
    *_, line, hint = err.strip().splitlines()
    assert hint == HINT
    checkpoints = ", ".join(sorted(p for p in before if p.startswith("checkpoints/")))
    assert line == (
        f"gdtorch-train: error: RunFolderInUse: hydra.run.dir={folder} already holds a run "
        f"({checkpoints}): a new run there would overwrite its checkpoints and mix its logs. "
        f"Choose another folder (or leave hydra.run.dir out for a new one), or resume that run "
        f"with ckpt_path={folder}/checkpoints/last.ckpt."
    )
    assert _files(folder) == before  # not even .hydra/ or the log were touched

    last = folder / "checkpoints" / "last.ckpt"
    resumed = _start(tmp_path, f"ckpt_path={last}", "trainer.max_epochs=2")
    code, _, err = _finish(resumed)
    assert code == 0, err[-3000:]
    assert len(list((folder / ".hydra").glob("resumed-*/config.yaml"))) == 1


def test_a_run_into_a_live_runs_folder_is_refused(tmp_path):
    folder = tmp_path / "live"
    holder = subprocess.Popen(
        [
            python(),
            "-c",
            "import sys, time; from gdtorch.config import check_run_folder; "
            "check_run_folder(sys.argv[1], None, 'hydra.run.dir'); print('held', flush=True); "
            "time.sleep(600)",
            str(folder),
        ],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        message = rf"{folder} is in use: another run \(process {holder.pid}\) is running there"
        with pytest.raises(RunFolderInUse, match=message):
            check_run_folder(folder, None, "hydra.run.dir")
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
        with pytest.raises(RunFolderInUse, match="is in use"):  # resuming a live run, too
            check_run_folder(folder, str(folder / "checkpoints" / "last.ckpt"), "hydra.run.dir")
    finally:
        holder.kill()
        holder.wait()
    # Killed: the lock went with it, and its last.ckpt may be resumed.
    assert check_run_folder(folder, str(folder / "checkpoints" / "last.ckpt"), "hydra.run.dir")
    release_run_folder(folder)


def test_a_folder_left_by_a_run_that_ended_before_its_first_checkpoint_may_be_used_again(
    tmp_path,
):
    # e.g. a run refused for a bad setting, or killed in its first epoch: nothing to resume
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "events.out.tfevents.1.host.1.0").write_bytes(b"")
    assert check_run_folder(tmp_path, None, "hydra.run.dir")
    release_run_folder(tmp_path)


@pytest.mark.slow
def test_run_refuses_an_output_dir_that_holds_a_run_unless_it_resumes_it(tmp_path):
    overrides = [*LOGGED, "data.mode=batch", "trainer.check_val_every_n_epoch=1", "logger=csv"]
    run(compose_train(tmp_path, *overrides, "trainer.max_epochs=1"))
    message = rf"paths.output_dir={tmp_path} already holds a run \(checkpoints/.*last\.ckpt\)"
    with pytest.raises(RunFolderInUse, match=message):
        run(compose_train(tmp_path, *overrides, "trainer.max_epochs=1"))
    best = next(p for p in (tmp_path / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt")
    with pytest.raises(RunFolderInUse, match="resume that run with ckpt_path="):
        run(compose_train(tmp_path, *overrides, "trainer.max_epochs=2", f"ckpt_path={best}"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    run(compose_train(tmp_path, *overrides, "trainer.max_epochs=2", f"ckpt_path={last}"))
    # run() let go of the folder: a process may take it again
    assert check_run_folder(tmp_path, str(last), "paths.output_dir")
    release_run_folder(tmp_path)


def test_a_sweep_into_another_sweeps_folder_is_refused(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(sweep)}, "job": {"name": "gdtorch-train"}}}
    )
    RunFolderGuard().on_multirun_start(config)  # a new folder: nothing to say
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("{}\n")
    with pytest.raises(SystemExit) as exited:
        RunFolderGuard().on_multirun_start(config)
    assert exited.value.code == 1
    line, hint = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"gdtorch-train: error: RunFolderInUse: hydra.sweep.dir={sweep} already holds a sweep "
        f"(multirun.yaml, 0/.hydra): its jobs' folders would be overwritten. Choose another "
        f"folder (or leave hydra.sweep.dir out for a new one)."
    )
    assert hint == HINT
