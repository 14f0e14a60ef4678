"""The Hydra config tree's home and its resolvers, light enough for ``gdtorch-train --help``.

Importing this module registers the resolvers that ``conf/`` uses (``${input_size:…}``,
``${mode_default:…}``, ``${validation_interval:…}``, ``${resumed_run_dir:…}``,
``${resumed_hydra_subdir:…}``, ``${new_folder:…}``); it loads Hydra's config library but not
Lightning, so the command line answers ``--help`` without paying for the trainer.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

# The Hydra config tree: gdtorch/conf, a link to the repository's conf/ in a source checkout and
# the packaged copy of it in an installed wheel.
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


def input_size(image_size: int | str, channels: int | str = 3) -> int:
    """Width of the first layer for square RGB images: ``channels × image_size²``."""
    return int(channels) * int(image_size) ** 2


def resumed_run_dir(ckpt_path: str | None, new_run_dir: str) -> str:
    """``hydra.run.dir``: the run folder of ``ckpt_path`` when resuming, else a new folder.

    The ``last.ckpt`` of a gdtorch-train run, ``<run>/checkpoints/last.ckpt`` with
    ``<run>/.hydra/config.yaml`` beside it, continues in ``<run>``. Any other checkpoint (an
    earlier best one, whose run has moved on since, or a file from elsewhere) starts a new folder:
    ``new_folder(new_run_dir)``.
    """
    run_folder = _run_folder(ckpt_path)
    return new_folder(new_run_dir) if run_folder is None else str(run_folder)


_new_folders: dict[str, str] = {}  # absolute path asked for → the folder this process created


def new_folder(path: str) -> str:
    """``path``, or ``path-2``, ``path-3``, …: the first of them that did not exist, created now.

    ``outputs/<date>/<time>`` names a run by the second it started in; two runs started in the
    same second would write into one folder. Creating a folder is atomic, so of two processes
    asking for the same ``path`` one gets it and the other ``path-2``. Hydra resolves its
    ``hydra.run.dir`` (and a sweep's ``hydra.sweep.dir``) several times: a process gets the same
    answer each time. A process of a multi-process run other than the first (``LOCAL_RANK``,
    ``RANK``, ``NODE_RANK`` or ``SLURM_PROCID`` above 0) creates nothing and gets ``path``.
    """
    key = os.path.abspath(path)
    if key in _new_folders:
        return _new_folders[key]
    if not is_first_process():
        return path
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    folder, n = base, 1
    while True:
        try:
            folder.mkdir()
        except FileExistsError:
            n += 1
            folder = base.with_name(f"{base.name}-{n}")
            continue
        _new_folders[key] = str(folder)
        return str(folder)


def is_first_process() -> bool:
    """Whether this is the first process of a run: not one a multi-process launcher started
    beside it (Lightning's DDP, ``torchrun``, SLURM's ``srun``), whose rank variables are set
    above 0."""
    ranks = ("LOCAL_RANK", "RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
    return all(os.environ.get(name, "0") in ("", "0") for name in ranks)


def resumed_hydra_subdir(ckpt_path: str | None, resumed_subdir: str, mode: object) -> str:
    """``hydra.output_subdir``: ``.hydra``, or ``resumed_subdir`` when a run resumes in place."""
    sweep = getattr(mode, "name", mode) == RunMode.MULTIRUN.name  # a job has its sweep folder
    in_place = not sweep and _run_folder(ckpt_path) is not None
    return resumed_subdir if in_place else ".hydra"


def _run_folder(ckpt_path: str | None) -> Path | None:
    if not ckpt_path or "://" in ckpt_path:
        return None
    checkpoint = Path(ckpt_path).expanduser()
    run = checkpoint.parent.parent
    is_last = checkpoint.name == "last.ckpt" and checkpoint.parent.name == "checkpoints"
    if is_last and checkpoint.is_file() and (run / ".hydra" / "config.yaml").is_file():
        return run
    return None


class RunFolderInUse(ValueError):
    """A run's output folder holds another run (live, or finished or killed), and the new run
    does not resume it."""


LOCK_FILE = ".run.lock"  # held (flock) by the process that runs in the folder, while it runs
_locks: dict[str, int] = {}  # resolved run folder → the open lock file this process holds


def check_run_folder(run_dir: str | Path, ckpt_path: str | None, setting: str) -> bool:
    """Refuses to start a run in ``run_dir`` when another run is there, unless it resumes it.

    A folder holds a run while a process runs in it (it holds the folder's ``.run.lock``),
    and once a run has written a checkpoint there (``checkpoints/*.ckpt``: a finished run with
    the default callbacks has its ``last.ckpt``). A new run in such a folder would overwrite its
    checkpoints and mix both runs' curves; a run that resumes the folder's own
    ``checkpoints/last.ckpt`` continues it there. The leftovers of a run that ended before its
    first checkpoint (its ``.hydra/``, a few logged points) cannot be resumed, and a new run may
    take the folder. Takes the folder's lock for this process until :func:`release_run_folder`
    or the process ends. Only the first process of a multi-process run checks (see
    :func:`is_first_process`): the others share its folder.

    Args:
        run_dir: the run's output folder.
        ckpt_path: the checkpoint the run resumes from, or ``None``.
        setting: the setting that chose ``run_dir``, named in the error (``hydra.run.dir``).

    Returns:
        Whether this call took the lock (``False`` when this process held it already): the
        caller that took it releases it.

    Raises:
        RunFolderInUse: another process runs in ``run_dir``, or a run's checkpoints are there
            and ``ckpt_path`` is not its ``checkpoints/last.ckpt``.
    """
    if not is_first_process():
        return False
    run_dir = Path(run_dir)
    locked = _lock_run_folder(run_dir, setting)
    found = sorted(str(path.relative_to(run_dir)) for path in run_dir.glob("checkpoints/*.ckpt"))
    last = run_dir / "checkpoints" / "last.ckpt"
    resumes = ckpt_path is not None and _same_file(ckpt_path, last)
    if not found or resumes:
        return locked
    if locked:
        release_run_folder(run_dir)
    resume = f", or resume that run with ckpt_path={last}" if last.is_file() else ""
    shown = ", ".join(found[:3]) + (", …" if len(found) > 3 else "")
    raise RunFolderInUse(
        f"{setting}={run_dir} already holds a run ({shown}): a new run there would overwrite "
        f"its checkpoints and mix its logs. Choose another folder{_or_leave_out(setting)}"
        f"{resume}."
    )


def _or_leave_out(setting: str) -> str:
    """Hydra's folder settings have a default: a new folder for each run."""
    return f" (or leave {setting} out for a new one)" if setting.startswith("hydra.") else ""


def release_run_folder(run_dir: str | Path) -> None:
    """Lets go of ``run_dir``'s lock, if this process holds it."""
    fd = _locks.pop(str(Path(run_dir).resolve()), None)
    if fd is not None:
        os.close(fd)  # closing the file releases its flock


def _lock_run_folder(run_dir: Path, setting: str) -> bool:
    """Takes ``run_dir/.run.lock`` (``flock``) for this process, and writes its pid there.

    The lock goes with the process, however it ends (``kill -9`` included): a folder whose
    lock is free holds no live run. Without ``fcntl`` (Windows) nothing is locked.

    Returns:
        Whether the lock was taken now (``False``: this process held it already, or no fcntl).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    key = str(run_dir.resolve())
    if key in _locks:
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunFolderInUse(
            f"{run_dir} is in use: another run (process {pid}) is running there. Wait for it "
            f"to end, or choose another folder ({setting}=…){_or_leave_out(setting)}."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _locks[key] = fd
    return True


def _same_file(path: str | Path, other: Path) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return Path(path).expanduser().resolve() == other.resolve()
    return False


def mode_default(mode: str, key: str, *, _root_: DictConfig) -> object:
    """``mode_defaults.<mode>.<key>`` of the config: a default that depends on ``data.mode``.

    Raises:
        ValueError: ``mode`` has no row in ``mode_defaults``.
    """
    table = _root_.mode_defaults
    if mode not in table:
        raise ValueError(f"data.mode must be one of {', '.join(table)}; got {mode!r}")
    return table[mode][key]


def validation_interval(every_n_epochs: int, max_epochs: int | None) -> int:
    """``trainer.check_val_every_n_epoch``: the largest interval up to ``every_n_epochs`` that
    divides ``max_epochs``, so that a run validates (and checkpoints) at its last epoch, e.g.
    5 for 200 epochs, 3 for 3, 1 for 7; ``every_n_epochs`` without an epoch limit."""
    if max_epochs is None or max_epochs < 1:  # no epoch limit
        return every_n_epochs
    return max(k for k in range(1, min(every_n_epochs, max_epochs) + 1) if max_epochs % k == 0)


OmegaConf.register_new_resolver("input_size", input_size, replace=True)
OmegaConf.register_new_resolver("validation_interval", validation_interval, replace=True)
OmegaConf.register_new_resolver("mode_default", mode_default, replace=True)
OmegaConf.register_new_resolver("resumed_run_dir", resumed_run_dir, replace=True)
OmegaConf.register_new_resolver("resumed_hydra_subdir", resumed_hydra_subdir, replace=True)
OmegaConf.register_new_resolver("new_folder", new_folder, replace=True)
