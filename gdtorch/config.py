"""The Hydra config tree's home and its resolvers, light enough for ``gdtorch-train --help``.

Importing this module registers the resolvers that ``conf/`` uses (``${input_size:…}``,
``${mode_default:…}``, ``${validation_interval:…}``, ``${resumed_run_dir:…}``,
``${resumed_hydra_subdir:…}``); it loads Hydra's config library but not Lightning, so the
command line answers ``--help`` without paying for the trainer.
"""

from __future__ import annotations

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
    """``hydra.run.dir``: the run folder of ``ckpt_path`` when resuming, else ``new_run_dir``.

    The ``last.ckpt`` of a gdtorch-train run, ``<run>/checkpoints/last.ckpt`` with
    ``<run>/.hydra/config.yaml`` beside it, continues in ``<run>``. Any other checkpoint (an
    earlier best one, whose run has moved on since, or a file from elsewhere) starts a new folder.
    """
    run_folder = _run_folder(ckpt_path)
    return new_run_dir if run_folder is None else str(run_folder)


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
    """``trainer.check_val_every_n_epoch``: ``every_n_epochs``, or ``max_epochs`` if fewer, so
    that a short run still validates (and checkpoints) at its last epoch."""
    if max_epochs is None or max_epochs < 1:  # no epoch limit
        return every_n_epochs
    return min(every_n_epochs, max_epochs)


OmegaConf.register_new_resolver("input_size", input_size, replace=True)
OmegaConf.register_new_resolver("validation_interval", validation_interval, replace=True)
OmegaConf.register_new_resolver("mode_default", mode_default, replace=True)
OmegaConf.register_new_resolver("resumed_run_dir", resumed_run_dir, replace=True)
OmegaConf.register_new_resolver("resumed_hydra_subdir", resumed_hydra_subdir, replace=True)
