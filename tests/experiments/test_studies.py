"""Each study in ``experiments/`` runs end to end with ``--tiny`` and writes its plots and README.

The studies are scripts, so each is run as its users run it: ``python experiments/<name>/run.py``
in a subprocess, into a temporary ``--out`` folder. The checks are on the files and on the
structure of the README's tables, never on timings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.data.conftest import write_fake_cifar

ROOT = Path(__file__).resolve().parents[2]
MAX_PNG_BYTES = 150 * 1024


def run_study(name: str, out: Path, env: dict[str, str] | None = None) -> str:
    """Run ``experiments/<name>/run.py --tiny --out out`` and return its README."""
    command = [sys.executable, str(ROOT / "experiments" / name / "run.py"), "--tiny"]
    completed = subprocess.run(
        [*command, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return (out / "README.md").read_text()


def table(readme: str, header_start: str) -> list[dict[str, str]]:
    """The rows of the README's Markdown table whose header starts with ``header_start``."""
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    assert set(lines[start + 1].replace("|", "").split()) == {"---"}
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == len(header), line
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def number(cell: str) -> float:
    """A table cell as a float: the leading number of ``0.812 ± 0.010`` or ``**0.812**``."""
    return float(cell.strip("*").split()[0])


def assert_pngs(out: Path, names: list[str]) -> None:
    """Each of ``names`` in ``out`` is a PNG file under the size limit."""
    for name in names:
        path = out / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert path.stat().st_size < MAX_PNG_BYTES, name


def assert_readme_links(readme: str, names: list[str]) -> None:
    """The README shows each of ``names`` as an image."""
    for name in names:
        assert f"]({name})" in readme, name


def test_gd_modes(tmp_path):
    readme = run_study("gd_modes", tmp_path)
    pngs = ["loss_curves.png", "landscape_pca.png", "landscape_random.png"]
    assert_pngs(tmp_path, pngs)
    assert_readme_links(readme, pngs)
    assert "run.py --tiny" in readme
    rows = table(readme, "| mode |")
    assert [row["mode"] for row in rows] == ["batch", "mini-batch", "stochastic"]
    for row in rows:
        assert 0.0 <= number(row["test acc"]) <= 1.0
        assert 0.0 <= number(row["final val acc"]) <= 1.0
        assert number(row["final training loss"]) > 0.0
    updates = [int(row["updates"]) for row in rows]
    assert updates[0] < updates[1] < updates[2]  # one per epoch < per mini-batch < per example
    assert [int(row["batch size"]) for row in rows][2] == 1


def test_losses(tmp_path):
    readme = run_study("losses", tmp_path)
    pngs = ["gradients.png", "convergence.png"]
    assert_pngs(tmp_path, pngs)
    assert_readme_links(readme, pngs)

    gradients = table(readme, "| ŷ (y = 1) |")
    assert [number(row["ŷ (y = 1)"]) for row in gradients] == [0.5, 0.1, 0.01, 0.001]
    for row in gradients:
        y_hat = number(row["ŷ (y = 1)"])
        bce, mse = number(row["BCE: 1−ŷ"]), number(row["MSE: 2ŷ(1−ŷ)²"])
        mae = number(row["MAE: ŷ(1−ŷ)"])
        assert abs(bce - (1 - y_hat)) < 1e-3
        assert abs(mae - y_hat * (1 - y_hat)) < 1e-3
        if y_hat <= 0.1:  # confidently wrong: cross-entropy pushes hardest
            assert bce > mse > mae

    sweep = table(readme, "| loss | η =")
    assert [row["loss"] for row in sweep] == ["MAE", "MSE", "BCE"]
    for row in sweep:
        assert sum(cell.startswith("**") for cell in row.values()) == 1  # one chosen η
    results = table(readme, "| loss | η | own training cost")
    assert [row["loss"] for row in results] == ["MAE", "MSE", "BCE"]
    for row in results:
        assert 0.0 <= number(row["test acc"]) <= 1.0
        assert int(row["confidently wrong (train)"]) >= 0


def architecture_rows(readme: str, section: str) -> list[dict[str, str]]:
    """The rows of the model table under the README's ``### <section>`` heading."""
    return table(readme.split(f"### {section}", 1)[1], "| model |")


def test_architectures_skips_cifar_without_data(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GDTORCH_CIFAR10_ROOT"}
    readme = run_study("architectures", tmp_path, env)
    assert_pngs(tmp_path, ["accuracy_synthetic.png"])
    assert_readme_links(readme, ["accuracy_synthetic.png"])
    assert not (tmp_path / "accuracy_cifar10.png").exists()
    rows = architecture_rows(readme, "SyntheticCats")
    assert [row["model"] for row in rows] == ["logistic regression", "2-layer", "4-layer"]
    for row in rows:
        assert 0.0 <= number(row["test acc"]) <= 1.0
        assert 0.0 <= number(row["train acc"]) <= 1.0
    cifar = readme.split("### CIFAR-10 cats", 1)[1]
    assert "Not run:" in cifar
    assert "| model |" not in cifar


def test_architectures_runs_cifar_when_present(tmp_path):
    fake = write_fake_cifar(tmp_path / "cifar")
    env = {**os.environ, "GDTORCH_CIFAR10_ROOT": str(fake.root)}
    readme = run_study("architectures", tmp_path / "out", env)
    assert_pngs(tmp_path / "out", ["accuracy_synthetic.png", "accuracy_cifar10.png"])
    rows = architecture_rows(readme, "CIFAR-10 cats")
    assert [row["model"] for row in rows] == ["logistic regression", "2-layer", "4-layer"]
    assert rows[0]["sizes"] == "[3072, 1]"
    for row in rows:
        assert 0.0 <= number(row["test acc"]) <= 1.0
    assert "Not run:" not in readme
