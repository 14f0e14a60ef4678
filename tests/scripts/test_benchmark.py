"""``scripts/benchmark.py``: the quick run reports every row kind, and repetitions interleave.

Nothing here asserts on timings: the machines are shared and noisy.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark.py"
SHAPES = (
    "[12288, 20, 7, 5, 1] × 64",
    "[3072, 256, 128, 1] × 256",
    "[64, 32, 1] × 1",
    "[3072, 1024, 1024, 1] × 512",
)
CUDA_KINDS = (
    "train_step_eager",
    "train_step_eager_no_validation",
    "train_step_eager_split",
    "train_step_compiled",
    "optimizer_step",
)
HANDWRITTEN_SHAPES = ("[12288, 20, 7, 5, 1] × 64", "[12288, 20, 7, 5, 1] × 1")
ROW_FIELDS = {
    "kind",
    "name",
    "device",
    "unit",
    "gdtorch_median",
    "native_median",
    "gdtorch_spread",
    "native_spread",
    "ratio",
    "ratio_of_medians",
    "ratio_interval",
    "paired_ratios",
    "target",
    "meets_target",
    "skipped",
}


@pytest.fixture(scope="module")
def benchmark():
    """``scripts/benchmark.py`` imported as a module (registered while the tests use it)."""
    name = "gdtorch_scripts_benchmark"
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    yield module
    del sys.modules[name]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str]:
    """The JSON report and the printed table of one ``--quick`` run."""
    out = tmp_path_factory.mktemp("benchmark") / "b.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text()), result.stdout


def _rows(report: dict, kind: str, device: str = "cpu") -> list[dict]:
    return [row for row in report["rows"] if row["kind"] == kind and row["device"] == device]


@pytest.mark.slow
def test_every_row_has_the_fields_and_a_ratio_unless_skipped(quick_run):
    report, _ = quick_run
    for row in report["rows"]:
        assert ROW_FIELDS <= row.keys(), row
        if row["skipped"] is not None:
            continue
        assert row["gdtorch_median"] > 0 and row["native_median"] > 0, row
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0, row
        medians = row["gdtorch_median"] / row["native_median"]
        assert row["ratio_of_medians"] == pytest.approx(medians)
        if row["unit"] == "bytes":
            assert row["paired_ratios"] is None and row["ratio"] == row["ratio_of_medians"]
        else:
            assert len(row["paired_ratios"]) == row["details"]["reps"], row
            assert row["ratio"] == pytest.approx(statistics.median(row["paired_ratios"]))
        if row["target"] is not None:
            assert row["meets_target"] is (row["ratio"] <= row["target"]), row


@pytest.mark.slow
def test_eager_training_step_at_every_shape_and_without_validation_at_batch_1(quick_run):
    report, _ = quick_run
    assert {row["name"] for row in _rows(report, "train_step_eager")} == set(SHAPES)
    (no_validation,) = _rows(report, "train_step_eager_no_validation")
    assert no_validation["name"] == "[64, 32, 1] × 1"


@pytest.mark.slow
def test_split_rows_time_each_gdtorch_part_in_a_native_step(quick_run):
    report, _ = quick_run
    split = _rows(report, "train_step_eager_split")
    assert {row["name"] for row in split} == {
        f"{shape}: {part}"
        for shape in ("[12288, 20, 7, 5, 1] × 64", "[64, 32, 1] × 1")
        for part in ("gdtorch network, torch loss", "torch network, gdtorch loss")
    }
    assert all(row["target"] is None and row["ratio"] > 0 for row in split)


@pytest.mark.slow
def test_compiled_training_step_and_memory_rows(quick_run):
    report, _ = quick_run
    compiled = _rows(report, "train_step_compiled")
    assert compiled and all(row["skipped"] is None for row in compiled)
    memory = _rows(report, "memory_for_backward")
    assert {row["name"] for row in memory} == set(SHAPES)
    assert all(row["unit"] == "bytes" and row["target"] == 1.0 for row in memory)


@pytest.mark.slow
def test_optimizer_step_in_four_variants(quick_run):
    report, _ = quick_run
    names = {row["name"] for row in _rows(report, "optimizer_step")}
    assert names == {
        f"100 tensors, {path}, momentum={momentum}"
        for path in ("foreach", "single-tensor")
        for momentum in ("0", "0.9")
    }


@pytest.mark.slow
def test_an_epoch_in_each_gradient_descent_mode(quick_run):
    report, _ = quick_run
    modes = {row["name"].split(",")[0] for row in _rows(report, "epoch")}
    assert modes == {"batch", "stochastic", "minibatch"}
    for row in _rows(report, "epoch"):
        if row["skipped"] is None:
            assert row["details"]["gdtorch_per_sample_s"] > 0


@pytest.mark.slow
def test_a_run_in_each_mode_against_a_plain_loop_of_the_same_updates(quick_run):
    report, _ = quick_run
    runs = {row["name"].split(":")[0]: row for row in _rows(report, "run")}
    assert runs.keys() == {"batch", "stochastic", "minibatch"}
    for mode, row in runs.items():
        assert row["target"] == (1.5 if mode == "stochastic" else 1.25)
        # the plain loop took exactly the run's updates: the same final weights, bit for bit
        assert row["details"]["max_weight_difference"] == 0.0, row
        assert (
            row["details"]["updates"]
            == row["details"]["epochs"]
            * {
                "batch": 1,
                "stochastic": 32,
                "minibatch": 1,  # --quick: 32 images, batches of 64
            }[mode]
        )
    extras = _rows(report, "run_extras")
    assert len(extras) == 3
    for row in extras:  # the share of the fit, from the ratio r of fit and fit less hooks
        shares = [1 - 1 / r for r in row["paired_ratios"]]
        assert row["details"]["share_of_fit"] == pytest.approx(statistics.median(shares))
        assert 0 < row["details"]["share_of_fit"] < 1
        assert row["details"]["callbacks"] == ["TensorBoardExtras", "NonFiniteLossGuard"]
        assert row["target"] == pytest.approx(1 / 0.95)


@pytest.mark.slow
def test_process_start_up_rows_against_importing_torch(quick_run):
    report, _ = quick_run
    rows = {row["name"]: row for row in _rows(report, "process")}
    assert set(rows) == {
        "import gdtorch, gdtorch.nn, gdtorch.functional, gdtorch.optim",
        "gdtorch-train --help",
        "gdtorch-train: process start to the first training step",
    }
    for row in rows.values():
        extra = row["gdtorch_median"] - row["native_median"]
        assert row["details"]["extra_seconds"] == pytest.approx(extra)  # one rep: one pair
    assert rows["gdtorch-train --help"]["target"] == 1.5
    assert (
        rows["import gdtorch, gdtorch.nn, gdtorch.functional, gdtorch.optim"]["details"][
            "extra_seconds_target"
        ]
        == 0.3
    )
    # the first training step comes after the imports, the data and the trainer's set-up
    first_step = rows["gdtorch-train: process start to the first training step"]
    assert first_step["gdtorch_median"] > first_step["native_median"]


@pytest.mark.slow
def test_handwritten_rows_with_the_context_its_share_and_its_floor(quick_run):
    report, _ = quick_run
    names = {row["name"]: row for row in _rows(report, "train_step_handwritten")}
    assert set(names) == {
        name
        for shape in HANDWRITTEN_SHAPES
        for name in (shape, f"{shape}: forward and loss in the context")
    }
    for name, row in names.items():
        assert row["target"] == (1.15 if "× 1" in name else 1.05), name
        assert row["details"]["handwritten_calls"] > 0, name  # the context took the calls over
        assert row["details"]["fell_through_calls"] == 0, name
    floor = _rows(report, "train_step_handwritten_floor")
    assert {row["name"] for row in floor} == {
        f"{shape}: {part}"
        for shape in HANDWRITTEN_SHAPES
        for part in (
            "forwarding mode",
            "forwarding mode around the whole step",
            "least per-op Functions",
        )
    }
    assert all(row["target"] is None and row["ratio"] > 0 for row in floor)


def test_the_floor_rows_run_the_step_they_stand_for(benchmark):
    """The least per-op Functions give torch's values and gradients; the forwarding mode
    changes nothing: the floor rows time the native step's own maths."""
    torch.manual_seed(0)
    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    W = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    y = torch.rand(3, 2, dtype=torch.float64).round()

    def loss_and_gradients(functional):
        loss = functional.binary_cross_entropy_with_logits(
            functional.linear(functional.relu(a), W, b), y
        )
        return loss, torch.autograd.grad(loss, (a, W, b))

    expected, expected_grads = loss_and_gradients(torch.nn.functional)
    loss, grads = loss_and_gradients(benchmark._LEAST_FUNCTIONS)
    assert type(loss.grad_fn).__name__ == "_LeastBCEWithLogitsBackward"
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)
    with benchmark._ForwardingMode():
        forwarded, forwarded_grads = loss_and_gradients(torch.nn.functional)
    assert type(forwarded.grad_fn).__name__ == "BinaryCrossEntropyWithLogitsBackward0"
    assert torch.equal(forwarded, expected)
    assert all(map(torch.equal, forwarded_grads, expected_grads))


@pytest.mark.slow
def test_cuda_rows_are_measured_or_skipped(quick_run):
    report, _ = quick_run
    for kind in CUDA_KINDS:
        rows = _rows(report, kind, device="cuda")
        assert rows, kind
        if any(row["skipped"] for row in rows):
            assert rows[0]["skipped"] == "CUDA not available"


@pytest.mark.slow
def test_machine_is_recorded_and_the_table_has_a_line_per_row(quick_run):
    report, table = quick_run
    assert {"date", "platform", "cpu", "cores", "torch", "threads"} <= report["machine"].keys()
    assert report["machine"]["cpu"] in table
    assert table.count("\n| ") == len(report["rows"]) + 2  # the header and the rule


def _measure_nothing_but(benchmark, **settings):
    """Settings that measure nothing but what ``settings`` asks for, each repetition instant."""
    nothing = dict(
        reps=0,
        rep_seconds=1e-9,
        warmup=0,
        compiled_shapes=(),
        epoch_sizes={},
        run_cases={},
        run_reps=0,
        process_reps=0,
    )
    return benchmark.Settings(**{**nothing, **settings})


def test_repetitions_alternate_which_side_runs_first(benchmark):
    settings = _measure_nothing_but(benchmark, reps=4)
    calls: list[str] = []
    row = benchmark._timed_row(
        "kind", "name", "cpu", lambda: calls.append("g"), lambda: calls.append("n"), settings
    )
    assert row.details["inner_iterations"] == 1
    assert len(row.paired_ratios) == 4
    calibration, repetitions = calls[:2], "".join(calls[2:])
    assert calibration == ["g", "n"]
    assert repetitions == "gn" + "ng" + "gn" + "ng"


def test_stats_median_and_relative_interquartile_range(benchmark):
    stats = benchmark.Stats.of([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (stats.median, stats.low, stats.high) == (3.0, 1.0, 5.0)
    assert stats.spread == pytest.approx((4.0 - 2.0) / 3.0)


@pytest.mark.parametrize(
    ("pairs", "rank"),
    # rank k: the largest with P(Bin(n, 1/2) < k) <= 2.5 %, by hand:
    # n = 15: P(X <= 3) = (1 + 15 + 105 + 455) / 2**15 = 1.76 %, P(X <= 4) = 5.9 % -> k = 4
    # n = 9: P(X <= 1) = 10 / 512 = 1.95 %, P(X <= 2) = 46 / 512 = 9.0 % -> k = 2
    # n = 5: P(X = 0) = 1 / 32 = 3.1 % > 2.5 % -> none; the smallest and largest (k = 1)
    [(15, 4), (9, 2), (5, 1)],
)
def test_ratio_interval_is_the_order_statistics_of_the_pairs(benchmark, pairs, rank):
    ratios = [1 + i / 100 for i in range(pairs)][::-1]  # any order: the row sorts them
    row = benchmark.Row("k", "n", "cpu", "s", paired_ratios=ratios)
    assert row.ratio_interval == (1 + (rank - 1) / 100, 1 + (pairs - rank) / 100)
    assert row.to_json()["ratio_interval"] == row.ratio_interval
    assert benchmark.Row("k", "n", "cpu", "bytes").ratio_interval is None


def test_ratio_is_the_median_of_back_to_back_pairs(benchmark):
    """A slow spell that hits one side's samples more moves the medians' ratio, not the pairs'."""
    gdtorch = benchmark.Stats.of([1.1, 2.2, 2.2])
    native = benchmark.Stats.of([1.0, 1.0, 2.0])
    row = benchmark.Row("k", "n", "cpu", "s", gdtorch, native, 1.05, paired_ratios=[1.1, 2.2, 1.1])
    assert row.ratio_of_medians == pytest.approx(2.2)
    assert row.ratio == pytest.approx(1.1)
    assert row.meets_target is False


@pytest.mark.parametrize("trick", ["apply", "constants", "mask", "temporaries", "profiler"])
def test_each_trick_replaced_by_its_plain_expression_gives_the_same_step(benchmark, trick):
    # The trick rows time a step without each trick of the _fast.py modules: that step must be
    # the same gradient descent, and the trick must be back in place afterwards.
    (name,) = [n for n in benchmark.TRICKS if trick in n]
    replacements = benchmark.TRICKS[name]
    before = {path: _path_value(path) for path in replacements}
    weights = []
    for plain in (False, True):
        side, _ = benchmark._sides(benchmark.Shape((8, 6, 1), 3), "cpu")
        step = side.step_fn()
        if plain:
            with benchmark._without(replacements):
                assert all(_path_value(p) is not v for p, v in before.items())
                step()
        else:
            step()
        weights.append([p.detach().clone() for p in side.model.parameters()])
    assert {path: _path_value(path) for path in replacements} == before
    for ours, plain in zip(*weights, strict=True):
        torch.testing.assert_close(ours, plain, rtol=1e-6, atol=1e-7)


def _path_value(path: str):
    """The attribute ``module:owner.name`` of gdtorch, as ``benchmark._without`` reads it."""
    module_name, _, attribute = path.partition(":")
    owner_name, _, name = attribute.rpartition(".")
    owner = importlib.import_module(f"gdtorch.{module_name}")
    if owner_name:
        owner = getattr(owner, owner_name)
    return owner.__dict__[name]


def test_run_rows_cancel_what_the_second_slot_of_a_pair_gains(benchmark, monkeypatch):
    """A fit 1.2× the plain loop, and whichever side runs second 20 % faster: each pair's ratio
    is 1.5 or 0.96 by order, but each couple's geometric mean is the true 1.2."""
    orders = []

    def pair(order, overrides, epochs):
        orders.append(tuple(order))
        final = {"w": torch.zeros(1)}
        base = {"fit": 1.2, "plain": 1.0}
        return {
            side: benchmark._Run(base[side] * (0.8 if slot else 1.0), 2, 4, final)
            for slot, side in enumerate(order)
        }

    monkeypatch.setattr(benchmark, "_run_pair", pair)
    settings = _measure_nothing_but(benchmark, run_cases={"batch": ["data.mode=batch"]}, run_reps=3)
    (row,) = benchmark._run_rows(settings)
    assert orders == [("fit", "plain"), ("plain", "fit")] * 3
    assert row.details["ratios_fit_first"] == pytest.approx([1.5] * 3)
    assert row.details["ratios_plain_first"] == pytest.approx([0.96] * 3)
    assert row.paired_ratios == pytest.approx([1.2] * 3)
    assert row.ratio == pytest.approx(1.2)
    assert row.details["reps"] == 3 and row.details["pairs"] == 6
