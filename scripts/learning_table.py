"""``python scripts/learning_table.py [--readme]`` — what ``gdtorch-train`` learns as shipped.

Runs ``gdtorch.train.run`` once per row, exactly as ``gdtorch-train`` composes it (every default,
seed 0, SyntheticCats, TensorBoard logs and checkpoints in a temporary folder), and prints a
markdown table: the command, its mode, learning rate η, epochs trained (early stopping may end a
run before ``trainer.max_epochs``), test accuracy of the best checkpoint, and wall time.

Rows: each gradient-descent mode at its defaults (``data.mode=batch|minibatch|stochastic``), then
with ``--readme`` every train command of README.md that this machine can run (a Hydra multirun
becomes one row per job; commands that need CIFAR-10, a GPU or an earlier run are left out, and
so are DDP runs, which Lightning starts by running this script again in each process, and
hyper-parameter searches).
Extra arguments are overrides added to every row, e.g. ``optimizer.lr=0.1``.
"""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from gdtorch.cli import CONFIG_DIR
from gdtorch.train import run

ROOT = Path(__file__).resolve().parents[1]
MODES = ("batch", "minibatch", "stochastic")
TRAIN_COMMAND = re.compile(r"^(bash scripts/train\.sh|gdtorch-train)(\s|$)")
# (a sweep, hparams_search=…, is many runs chosen as it goes, not one row)
NOT_HERE = (
    "data=cifar10",
    "ckpt_path=",
    "trainer.accelerator=gpu",
    "trainer=ddp",
    "hparams_search=",
)


def readme_train_commands(readme: str) -> list[str]:
    """Every ``bash scripts/train.sh …`` / ``gdtorch-train …`` line of README's code blocks."""
    commands, in_block = [], False
    for line in readme.splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif in_block and TRAIN_COMMAND.match(line):
            commands.append(line)
    return commands


def overrides_of(command: str) -> list[list[str]]:
    """A command's Hydra overrides, one list per job (a ``-m`` sweep is expanded).

    Example:
        >>> overrides_of("bash scripts/train.sh -m a=1,2 b=3  # sweep")
        [['a=1', 'b=3'], ['a=2', 'b=3']]
    """
    words = shlex.split(command, comments=True)
    words = words[2:] if words[0] == "bash" else words[1:]
    if "-m" not in words:
        return [words]
    choices = []
    for word in (w for w in words if w != "-m"):
        key, _, values = word.partition("=")
        choices.append([f"{key}={value}" for value in values.split(",")])
    return [list(job) for job in itertools.product(*choices)]


def measure(overrides: list[str]) -> dict[str, object]:
    """One run of ``overrides`` in a temporary folder: its mode, η, epochs, accuracy and time."""
    with tempfile.TemporaryDirectory() as output_dir:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[f"paths.output_dir={output_dir}", *overrides])
        start = time.perf_counter()
        metrics = run(cfg)
        seconds = time.perf_counter() - start
        last = torch.load(Path(output_dir, "checkpoints", "last.ckpt"), weights_only=True)
    return {
        "mode": cfg.data.mode,
        "lr": cfg.optimizer.lr,
        "epochs": last["epoch"] + 1,
        "max_epochs": cfg.trainer.max_epochs,
        "test_acc": metrics["test/acc"],
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", action="store_true", help="also run README's commands")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every row")
    args = parser.parse_args()
    rows = [(f"bash scripts/train.sh data.mode={m}", [f"data.mode={m}"]) for m in MODES]
    if args.readme:
        for command in readme_train_commands((ROOT / "README.md").read_text()):
            if not any(needs in command for needs in NOT_HERE):
                sweep = "-m" in shlex.split(command, comments=True)
                for job in overrides_of(command):
                    # a sweep's job is shown as the command of that one job
                    label = f"bash scripts/train.sh {' '.join(job)}" if sweep else command
                    label = label.split("#")[0].strip()
                    if label not in (row[0] for row in rows):
                        rows.append((label, job))
    table = [
        "| command | mode | η | epochs (max) | test accuracy | wall time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, overrides in rows:
        r = measure([*overrides, *args.overrides])
        table.append(
            f"| `{label}` | {r['mode']} | {r['lr']:g} | {r['epochs']} ({r['max_epochs']}) "
            f"| {r['test_acc']:.3f} | {r['seconds']:.0f} s |"
        )
    print("\n".join(table))  # after the runs' own progress bars


if __name__ == "__main__":
    main()
