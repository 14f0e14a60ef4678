"""``import gdtorch``: the core is there after one import, and it brings no trainer with it."""

from __future__ import annotations

import subprocess
import sys

TRAINER_PACKAGES = ("lightning", "hydra", "torchmetrics", "tensorboard")


def test_import_gdtorch_gives_nn_functional_and_optim_without_the_trainer():
    code = (
        "import sys, gdtorch\n"
        "print(gdtorch.optim.GradientDescent.__name__, gdtorch.nn.Linear.__name__,"
        " gdtorch.functional.linear.__name__)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *TRAINER_PACKAGES], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    names, loaded = result.stdout.splitlines()
    assert names == "GradientDescent Linear linear"
    assert loaded == "[]"
