"""The studies in ``experiments/``: each README is its template rendered from its results, and
each study runs end to end as its users run it.

A study is run as ``python -m experiments.<name> --tiny --out <tmp>`` in a subprocess from the
repository root; those runs are marked ``slow``. The checks are on the files, on the structure
of the README's tables and on their agreement with ``results.json``, never on timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.render import STUDIES, render
from tests.data.conftest import write_fake_cifar

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
MAX_PNG_BYTES = 150 * 1024


def test_there_are_four_studies_each_a_package_with_a_template_and_results():
    assert STUDIES == ["architectures", "data_difficulty", "gd_modes", "losses"]
    for study in STUDIES:
        folder = EXPERIMENTS / study
        for name in ("__init__.py", "__main__.py", "run.py", "README.template.md"):
            assert (folder / name).is_file(), f"{study}/{name}"
        assert json.loads((folder / "results.json").read_text())["run"]["date"]


@pytest.mark.parametrize("study", STUDIES)
def test_each_readme_is_its_template_rendered_from_its_results(study):
    """Edit the template and run ``python -m experiments.render``, never the README itself."""
    folder = EXPERIMENTS / study
    results = json.loads((folder / "results.json").read_text())
    assert render(study, results) == (folder / "README.md").read_text()


def test_the_studies_neither_edit_sys_path_nor_name_places_outside_the_repository():
    for path in EXPERIMENTS.rglob("*"):
        if path.suffix in {".py", ".md", ".json"}:
            text = path.read_text()
            assert "sys.path" not in text, path
            assert "/work/" not in text and "../" not in text, path


def test_render_refuses_an_unknown_study():
    completed = subprocess.run(
        [sys.executable, "-m", "experiments.render", "no_such_study"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "no study no_such_study; the studies are architectures" in completed.stderr


def run_study(name: str, out: Path, env: dict[str, str] | None = None) -> tuple[str, dict]:
    """Run ``python -m experiments.<name> --tiny --out out``; its README and results."""
    completed = subprocess.run(
        [sys.executable, "-m", f"experiments.{name}", "--tiny", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    readme = (out / "README.md").read_text()
    assert f"python -m experiments.{name} --tiny" in readme
    return readme, json.loads((out / "results.json").read_text())


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
    return float(cell.split()[0].strip("*").replace(",", ""))


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


@pytest.mark.slow
def test_gd_modes(tmp_path):
    readme, results = run_study("gd_modes", tmp_path)
    pngs = ["loss_curves.png", "landscape_pca.png", "landscape_random.png"]
    assert_pngs(tmp_path, pngs)
    assert_readme_links(readme, pngs)
    rows = table(readme, "| mode |")
    assert [row["mode"] for row in rows] == ["batch", "mini-batch", "stochastic"]
    for row, measured in zip(rows, results["modes"], strict=True):
        assert row["test acc"] == f"{measured['test_acc']:.3f}"
        assert 0.0 <= number(row["final val acc"]) <= 1.0
        assert number(row["final training loss"]) > 0.0
        assert len(measured["train_loss"]) == results["settings"]["epochs"] + 1
    updates = [int(row["updates"]) for row in rows]
    assert updates[0] < updates[1] < updates[2]  # one per epoch < per mini-batch < per example
    assert [int(row["batch size"]) for row in rows][2] == 1


@pytest.mark.slow
def test_losses(tmp_path):
    readme, results = run_study("losses", tmp_path)
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
    assert len(results["trials"]) == 3 * len(results["settings"]["lrs"])
    rows = table(readme, "| loss | η | own training cost")
    assert [row["loss"] for row in rows] == ["MAE", "MSE", "BCE"]
    for row, measured in zip(rows, results["chosen"], strict=True):
        assert row["test acc"] == f"{measured['test_acc']:.3f}"
        assert int(row["confidently wrong (train)"]) == measured["confidently_wrong"] >= 0


def architecture_rows(readme: str, section: str) -> list[dict[str, str]]:
    """The rows of the model table under the README's ``### <section>`` heading."""
    return table(readme.split(f"### {section}", 1)[1], "| model |")


@pytest.mark.slow
def test_architectures_skips_cifar_without_data(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GDTORCH_CIFAR10_ROOT"}
    readme, results = run_study("architectures", tmp_path, env)
    assert_pngs(tmp_path, ["accuracy_synthetic.png"])
    assert_readme_links(readme, ["accuracy_synthetic.png"])
    assert not (tmp_path / "accuracy_cifar10.png").exists()
    rows = architecture_rows(readme, "SyntheticCats")
    assert [row["model"] for row in rows] == ["logistic regression", "2-layer", "4-layer"]
    models = results["sources"]["synthetic"]["models"]
    for row, measured in zip(rows, models, strict=True):
        assert number(row["test acc"]) == round(measured["test_acc"]["mean"], 3)
        assert 0.0 <= number(row["train acc"]) <= 1.0
    cifar = readme.split("### CIFAR-10 cats", 1)[1]
    assert "Not run:" in cifar and "| model |" not in cifar
    assert results["sources"]["cifar10"]["skipped"] == "unset"


@pytest.mark.slow
def test_architectures_runs_cifar_when_present(tmp_path):
    fake = write_fake_cifar(tmp_path / "cifar")
    env = {**os.environ, "GDTORCH_CIFAR10_ROOT": str(fake.root)}
    readme, results = run_study("architectures", tmp_path / "out", env)
    assert_pngs(tmp_path / "out", ["accuracy_synthetic.png", "accuracy_cifar10.png"])
    rows = architecture_rows(readme, "CIFAR-10 cats")
    assert [row["model"] for row in rows] == ["logistic regression", "2-layer", "4-layer"]
    assert rows[0]["sizes"] == "[3072, 1]"
    for row in rows:
        assert 0.0 <= number(row["test acc"]) <= 1.0
    assert "Not run:" not in readme
    assert str(fake.root) not in json.dumps(results)  # no path of the user's in the results


@pytest.mark.slow
def test_data_difficulty(tmp_path):
    readme, results = run_study("data_difficulty", tmp_path)
    assert_pngs(tmp_path, ["examples.png"])
    assert_readme_links(readme, ["examples.png"])
    rows = table(readme, "| model |")
    assert [row["model"] for row in rows] == ["logistic regression", "MLP [768, 20, 7, 5, 1]"]
    for row, measured in zip(rows, results["models"], strict=True):
        assert number(row["test accuracy (mean ± sd)"]) == round(measured["test_acc_mean"], 3)
    speed = table(readme, "| threads")
    assert [row["threads (`torch.set_num_threads`)"] for row in speed] == ["1", "2"]
    assert all(number(row["images/s at 16×16"]) > 0 for row in speed)
