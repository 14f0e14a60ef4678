"""Benchmark gdtorch against native PyTorch, side by side in one run.

``python scripts/benchmark.py [--quick] [--out outputs/benchmark.json] [--device cpu|cuda|all]
[--threads N]`` prints a markdown table and writes the rows as JSON.

Every row runs gdtorch and its native peer in the same process, from the same initial weights, with
their timed repetitions interleaved (gdtorch first on even repetitions, native first on odd ones, so
slow drifts of the machine cancel). A repetition runs a number of inner iterations chosen so that
it lasts about ``rep_seconds``; its time divided by that number is one sample. Rows report each
side's median and spread (interquartile range relative to the median), and the ratio gdtorch /
native next to its target: the median, over repetitions, of the ratio of the two samples taken
back to back in that repetition. The shared machines here change speed by tens of per cent for
seconds at a time; a pair shares the machine's state, so its ratio does not move with it, where
the ratio of the two medians does when one side's samples happen to fall in a slow spell (the
JSON keeps that ratio too, and every pair's). Absolute times mean little on a shared machine;
the ratios are the result.

Rows, by kind:

* ``train_step_eager``: ``zero_grad``, forward, loss, backward and optimizer step of an MLP —
  ``gdtorch.nn.MLP``, ``gdtorch.nn.BCEWithLogitsLoss`` and ``gdtorch.optim.GradientDescent`` against
  a ``torch.nn.Sequential`` of ``Linear``/``ReLU``, ``torch.nn.BCEWithLogitsLoss`` and
  ``torch.optim.SGD``; ``train_step_eager_no_validation`` is the batch-1 shape with
  ``gdtorch.set_validation(False)``, which shows the cost of the value checks.
* ``train_step_eager_split``: the same eager step with only the network (``gdtorch.nn.MLP``) or
  only the loss (``gdtorch.nn.BCEWithLogitsLoss``) from gdtorch and everything else native,
  ``torch.optim.SGD`` included, against the native step: where the extra time goes. No target.
* ``train_step_handwritten``: a functional-style training step of the tutorial's cat network —
  ``F.linear``/``F.relu`` layers, ``F.binary_cross_entropy_with_logits``, ``torch.optim.SGD`` —
  run under ``gdtorch.handwritten()`` against the same code without it, at batch 64 and batch 1.
  Only the context differs: it routes the layers and the loss to gdtorch's hand-written
  backward. Either the whole step is a function decorated with ``@gdtorch.handwritten()`` (every
  torch call of the step, the optimizer's included, passes through the context's mode), or only
  the forward pass and the loss are in the context (``: forward and loss in the context``).
  ``train_step_handwritten_split`` times the latter against the same step calling
  ``gdtorch.functional`` by hand, the same Functions: the context's own cost. No target.
  ``train_step_handwritten_floor`` times the two costs any such context pays, each at its least,
  against the native step: the override mechanism alone (a ``TorchFunctionMode`` that forwards
  every call unchanged, around the forward and loss or around the whole step), and one Python
  ``autograd.Function`` per op (torch's own op forward, the fewest torch calls backward, no
  checks, no mode). No target: they bound from below what ``train_step_handwritten`` can reach.
* ``train_step_compiled``: the same step with forward and loss under
  ``torch.compile(fullgraph=True)`` on both sides, backward and optimizer step eager. The whole step
  cannot be compiled with ``fullgraph=True``: Dynamo does not trace ``loss.backward()``.
* ``memory_for_backward``: bytes autograd keeps for backward after one forward and loss, counted
  with ``torch.autograd.graph.saved_tensors_hooks``.
* ``optimizer_step``: ``opt.step()`` alone on 100 parameter tensors with fixed gradients, plain and
  with momentum, multi-tensor (``foreach=True``) and single-tensor.
* ``epoch``: one epoch over ``SyntheticCats`` in batch, stochastic and mini-batch mode: gdtorch's
  ``TensorBatchLoader`` against ``torch.utils.data.DataLoader(TensorDataset(...))``, both feeding
  the same gdtorch training step of the tutorial's cat network, so the row isolates the loader.
  Both shuffle every epoch, except in batch mode (as ``CatDataModule`` does).
* ``run``: ``trainer.fit`` of a default run as ``run(cfg)`` configures it (callbacks, TensorBoard,
  checkpoints, validation), per mode, against a plain PyTorch loop of the same updates on the
  same tensors in the same order, with one validation pass per epoch; each repetition's pair is
  one whole run of each, each in a fresh process of its own (as a user's run starts), its clock
  started on data already made and on memory as recently used as the other side's. Pairs come in
  couples, one in each order, and the ratio is the median of the couples' geometric means, in
  which what the second slot gains cancels.
  ``max_weight_difference`` checks that both ended on the same weights.
* ``run_extras``: the share of such a fit spent inside ``TensorBoardExtras``' and
  ``NonFiniteLossGuard``'s hooks.
* ``process``: ``import gdtorch, …``, ``gdtorch-train --help`` and the time from process start
  to the first training step of ``gdtorch-train``, each against ``python -c "import torch"``.

Training-step and optimizer rows also run on CUDA when it is available, and are marked skipped
otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import gc
import importlib
import io
import json
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from copy import deepcopy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.overrides import TorchFunctionMode
from torch.utils.data import DataLoader, TensorDataset

import gdtorch
from gdtorch import nn as gnn
from gdtorch.autograd import _fast
from gdtorch.config import CONFIG_DIR
from gdtorch.data import SyntheticCats, TensorBatchLoader
from gdtorch.lightning import NonFiniteLossGuard, TensorBoardExtras
from gdtorch.optim import GradientDescent
from gdtorch.train import build, fit

LR = 1e-3
MOMENTUM = 0.9
EAGER_TARGET = 1.05
EAGER_BATCH_1_TARGET = 1.15
COMPILED_TARGET = 1.05
MEMORY_TARGET = 1.00
OPTIMIZER_TARGET = 1.05
RUN_TARGETS = {"stochastic": 1.5, "minibatch": 1.25, "batch": 1.25}
RUN_MEMORY_TOUCHED = 2**30  # bytes each side of a run pair writes before its clock starts
EXTRAS_SHARE_TARGET = 0.05  # TensorBoardExtras + NonFiniteLossGuard: at most 5 % of a fit
HELP_TARGET = 1.5  # gdtorch-train --help against python -c "import torch"
IMPORT_EXTRA_TARGET = 0.3  # seconds the core import may add to python -c "import torch"
# Row groups for --only: training step, memory and optimizer; what each trick of
# gdtorch/autograd/_fast.py and gdtorch/optim/_fast.py buys; epoch; run; process start-up;
# the handwritten() step rows alone (also part of "step").
GROUPS = ("step", "tricks", "epoch", "run", "process", "handwritten")
EXTRAS = (TensorBoardExtras, NonFiniteLossGuard)  # the callbacks of the run_extras rows
OPTIMIZER_LAYERS = 50  # Linear(64, 64) layers: 100 parameter tensors
CAT_NETWORK = (12288, 20, 7, 5, 1)  # the tutorial's network on 64×64×3 images
CAT_IMAGE_SIZE = 64
CUDA_KINDS = (
    "train_step_eager",
    "train_step_eager_no_validation",
    "train_step_eager_split",
    "train_step_compiled",
    "train_step_handwritten",
    "train_step_handwritten_split",
    "train_step_handwritten_floor",
    "optimizer_step",
)


@dataclasses.dataclass(frozen=True)
class Shape:
    """An MLP's layer widths and the batch size it trains at."""

    sizes: tuple[int, ...]
    batch: int

    @property
    def name(self) -> str:
        return f"{list(self.sizes)} × {self.batch}"


CAT_SHAPE = Shape(CAT_NETWORK, 64)
WIDE_SHAPE = Shape((3072, 256, 128, 1), 256)
STOCHASTIC_SHAPE = Shape((64, 32, 1), 1)
LARGE_SHAPE = Shape((3072, 1024, 1024, 1), 512)
SHAPES = (CAT_SHAPE, WIDE_SHAPE, STOCHASTIC_SHAPE, LARGE_SHAPE)
SPLIT_SHAPES = (CAT_SHAPE, STOCHASTIC_SHAPE)  # where a fixed cost per step shows
HANDWRITTEN_SHAPES = (CAT_SHAPE, Shape(CAT_NETWORK, 1))  # the cat network, mini-batch and batch 1


@dataclasses.dataclass(frozen=True)
class Settings:
    """How long and how much to measure.

    Attributes:
        reps: timed repetitions per side.
        rep_seconds: the duration one repetition aims at.
        warmup: untimed calls per side before calibrating the inner iterations.
        compiled_shapes: the shapes of the ``train_step_compiled`` rows.
        epoch_sizes: the number of images of each gradient-descent mode's epoch.
        run_cases: the overrides of each mode's ``run`` rows (a default run otherwise).
        run_reps: repetitions of the ``run_extras`` rows; the ``run`` rows pair a fit and a plain
            loop that many times in each order (:func:`_run_rows`).
        process_reps: paired repetitions of the ``process`` rows.
        minibatch_size: the batch size of mini-batch gradient descent.
    """

    reps: int
    rep_seconds: float
    warmup: int
    compiled_shapes: tuple[Shape, ...]
    epoch_sizes: dict[str, int]
    run_cases: dict[str, list[str]]
    run_reps: int
    process_reps: int
    minibatch_size: int = 64


FULL = Settings(
    # 31 pairs: the 95 % interval of a row's ratio spans its 10th to 22nd paired ratio
    reps=31,
    rep_seconds=0.1,
    warmup=5,
    compiled_shapes=SHAPES,
    epoch_sizes={"batch": 2048, "stochastic": 512, "minibatch": 2048},
    # The sizes; each mode's default epochs (stochastic 8, minibatch 20), batch 50.
    run_cases={
        "stochastic": ["data.mode=stochastic", "data.n_train=1000"],
        "minibatch": ["data.mode=minibatch", "data.n_train=2000"],
        "batch": ["data.mode=batch", "data.n_train=2000", "trainer.max_epochs=50"],
    },
    run_reps=5,  # the run rows: 10 pairs, 5 in each order
    process_reps=5,
)
_TINY_RUN = ["data.n_train=32", "data.n_val=16", "data.n_test=16", "data.image_size=16"]
QUICK = Settings(
    reps=3,
    rep_seconds=0.005,
    warmup=1,
    compiled_shapes=(STOCHASTIC_SHAPE,),
    epoch_sizes={"batch": 256, "stochastic": 64, "minibatch": 256},
    run_cases={
        mode: [f"data.mode={mode}", *_TINY_RUN, "trainer.max_epochs=2"]
        for mode in ("stochastic", "minibatch", "batch")
    },
    run_reps=1,
    process_reps=1,
)


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class Stats:
    """Summary of one side's samples (seconds per call, or bytes).

    Attributes:
        median: the median sample.
        spread: the interquartile range relative to the median (0 for a single sample).
        low: the smallest sample.
        high: the largest sample.
    """

    median: float
    spread: float
    low: float
    high: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        median = statistics.median(samples)
        spread = 0.0
        if len(samples) > 1 and median:
            q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
            spread = (q3 - q1) / median
        return cls(median, spread, min(samples), max(samples))


@dataclasses.dataclass
class Row:
    """One line of the table: a benchmark case measured on both sides, or skipped.

    Attributes:
        kind: the benchmark kind (``train_step_eager``, ``memory_for_backward``, ...).
        name: the case within the kind (network shape, optimizer variant, data mode).
        device: ``"cpu"`` or ``"cuda"``.
        unit: ``"s"`` (seconds per call) or ``"bytes"``.
        gdtorch: gdtorch's statistics; ``None`` when skipped.
        native: native PyTorch's statistics; ``None`` when skipped.
        target: the largest acceptable ratio gdtorch / native, or ``None`` for no target.
        skipped: why the row was not measured, or ``None``.
        details: extra facts (inner iterations, compile time, per-sample time, ...).
        paired_ratios: gdtorch / native for each repetition's back-to-back pair of samples;
            ``None`` for rows of single values (memory).
    """

    kind: str
    name: str
    device: str
    unit: str = "s"
    gdtorch: Stats | None = None
    native: Stats | None = None
    target: float | None = None
    skipped: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    paired_ratios: list[float] | None = None

    @property
    def ratio(self) -> float | None:
        """The median of the paired ratios, or the ratio of the medians without pairs."""
        if self.paired_ratios:
            return statistics.median(self.paired_ratios)
        return self.ratio_of_medians

    @property
    def ratio_interval(self) -> tuple[float, float] | None:
        """A distribution-free confidence interval of the median paired ratio, or ``None``.

        The ``k``-th smallest and ``k``-th largest paired ratio, ``k`` the largest with
        ``P(Bin(n, ½) < k) ≤ 2.5 %``: the true median of the pairs lies between them with at
        least 95 % probability (order statistics; no assumption on how the times spread). With
        fewer than six pairs no ``k`` qualifies and the interval is the smallest and largest
        ratio (94 % at five pairs). A verdict whose target lies inside it is not decided by
        this run: on a noisy machine a pair's ratio can vary by a third.
        """
        if not self.paired_ratios:
            return None
        ratios = sorted(self.paired_ratios)
        n, k, below = len(ratios), 1, 1 / 2 ** len(ratios)  # below = P(Bin(n, ½) < k + 1)
        while k < n // 2 and below + math.comb(n, k) / 2**n <= 0.025:
            below += math.comb(n, k) / 2**n
            k += 1
        return ratios[k - 1], ratios[n - k]

    @property
    def ratio_of_medians(self) -> float | None:
        if self.gdtorch is None or self.native is None:
            return None
        return self.gdtorch.median / self.native.median

    @property
    def meets_target(self) -> bool | None:
        if self.ratio is None or self.target is None:
            return None
        return self.ratio <= self.target

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object: both sides' median, spread and range, ratio and target."""
        row: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "device": self.device,
            "unit": self.unit,
        }
        for side, stats in (("gdtorch", self.gdtorch), ("native", self.native)):
            row[f"{side}_median"] = None if stats is None else stats.median
            row[f"{side}_spread"] = None if stats is None else stats.spread
            row[f"{side}_range"] = None if stats is None else [stats.low, stats.high]
        row.update(
            ratio=self.ratio,
            ratio_of_medians=self.ratio_of_medians,
            ratio_interval=self.ratio_interval,
            paired_ratios=self.paired_ratios,
            target=self.target,
            meets_target=self.meets_target,
            skipped=self.skipped,
            details=self.details,
        )
        return row


# --------------------------------------------------------------------------- timing


def _synchronizer(device: str) -> Callable[[], None]:
    """The function that waits for queued work on ``device`` (a no-op on the CPU)."""
    return torch.cuda.synchronize if device == "cuda" else lambda: None


def _run(fn: Callable[[], Any], iterations: int, sync: Callable[[], None]) -> float:
    """Seconds taken by ``iterations`` calls of ``fn``, synchronised at both ends."""
    sync()
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    sync()
    return time.perf_counter() - start


def _calibrate(fns: Sequence[Callable[[], Any]], seconds: float, sync) -> int:
    """Inner iterations so that one repetition of the slower function lasts about ``seconds``."""
    iterations = 1
    while True:
        elapsed = max(_run(fn, iterations, sync) for fn in fns)
        if elapsed > 0 and elapsed >= seconds / 5:
            return max(1, round(iterations * seconds / elapsed))
        iterations *= 4


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Collect garbage, then keep the cyclic collector from running inside timed code."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _timed_row(
    kind: str,
    name: str,
    device: str,
    gdtorch_fn: Callable[[], Any],
    native_fn: Callable[[], Any],
    settings: Settings,
    target: float | None = None,
) -> Row:
    """Warm up, calibrate, then time both functions in interleaved repetitions.

    Returns:
        The row of both sides' seconds per call.
    """
    fns = (gdtorch_fn, native_fn)
    sync = _synchronizer(device)
    for fn in fns:
        for _ in range(settings.warmup):
            fn()
    iterations = _calibrate(fns, settings.rep_seconds, sync)
    samples: tuple[list[float], list[float]] = ([], [])
    with _gc_paused():
        for rep in range(settings.reps):
            for side in (0, 1) if rep % 2 == 0 else (1, 0):
                samples[side].append(_run(fns[side], iterations, sync) / iterations)
    details = {"inner_iterations": iterations, "reps": settings.reps}
    gd_stats, native_stats = Stats.of(samples[0]), Stats.of(samples[1])
    paired = [gd / native for gd, native in zip(*samples, strict=True)]
    return Row(
        kind,
        name,
        device,
        "s",
        gd_stats,
        native_stats,
        target,
        details=details,
        paired_ratios=paired,
    )


# --------------------------------------------------------------------------- training step


@dataclasses.dataclass
class Side:
    """One side of a training-step comparison: model, loss, optimizer and a batch."""

    model: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    inputs: torch.Tensor
    targets: torch.Tensor

    def forward_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.model(inputs), targets)

    def step_fn(self, compiled: bool = False) -> Callable[[], None]:
        """A training step on the batch: forward and loss compiled with fullgraph if asked."""
        forward_loss = (
            torch.compile(self.forward_loss, fullgraph=True) if compiled else self.forward_loss
        )

        def step() -> None:
            self.optimizer.zero_grad()
            forward_loss(self.inputs, self.targets).backward()
            self.optimizer.step()

        return step


def _native_mlp(sizes: Sequence[int]) -> torch.nn.Sequential:
    """``torch.nn.Sequential`` of ``Linear`` and ``ReLU``, laid out like ``gdtorch.nn.MLP``."""
    layers: list[torch.nn.Module] = []
    for i in range(len(sizes) - 1):
        if i:
            layers.append(torch.nn.ReLU())
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
    return torch.nn.Sequential(*layers)


def _sides(shape: Shape, device: str) -> tuple[Side, Side]:
    """gdtorch's and native PyTorch's sides, with the same weights and the same batch."""
    torch.manual_seed(0)
    gd_model = gnn.MLP(shape.sizes).to(device)
    native_model = _native_mlp(shape.sizes).to(device)
    native_model.load_state_dict(gd_model.state_dict())
    inputs = torch.randn(shape.batch, shape.sizes[0], device=device)
    targets = torch.randint(0, 2, (shape.batch, shape.sizes[-1]), device=device).float()
    gd = Side(
        gd_model,
        gnn.BCEWithLogitsLoss(),
        GradientDescent(gd_model.parameters(), lr=LR),
        inputs,
        targets,
    )
    native = Side(
        native_model,
        torch.nn.BCEWithLogitsLoss(),
        torch.optim.SGD(native_model.parameters(), lr=LR),
        inputs,
        targets,
    )
    return gd, native


@contextlib.contextmanager
def _validation(enabled: bool) -> Iterator[None]:
    """Set gdtorch's value checks for the duration of the block, then restore them."""
    previous = gdtorch.validation_enabled()
    gdtorch.set_validation(enabled)
    try:
        yield
    finally:
        gdtorch.set_validation(previous)


def _eager_row(shape: Shape, device: str, settings: Settings, validation: bool = True) -> Row:
    """Eager training steps, with gdtorch's value checks on (the default) or off."""
    gd, native = _sides(shape, device)
    kind = "train_step_eager" if validation else "train_step_eager_no_validation"
    target = EAGER_BATCH_1_TARGET if shape.batch == 1 else EAGER_TARGET
    with _validation(validation):
        return _timed_row(
            kind, shape.name, device, gd.step_fn(), native.step_fn(), settings, target
        )


def _split_rows(shape: Shape, device: str, settings: Settings) -> Iterator[Row]:
    """Eager steps with only the network, or only the loss, from gdtorch; the rest native.

    Both mixed sides train with ``torch.optim.SGD``, as the native side does, so each row's ratio
    is the cost of one gdtorch part in a native step: where the eager row's extra time goes.
    """
    gd, native = _sides(shape, device)
    native_model = _native_mlp(shape.sizes).to(device)
    native_model.load_state_dict(gd.model.state_dict())
    mixed = {
        "gdtorch network, torch loss": (gd.model, native.loss_fn),
        "torch network, gdtorch loss": (native_model, gd.loss_fn),
    }
    for part, (model, loss_fn) in mixed.items():
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        side = Side(model, loss_fn, optimizer, native.inputs, native.targets)
        name = f"{shape.name}: {part}"
        yield _timed_row(
            "train_step_eager_split", name, device, side.step_fn(), native.step_fn(), settings
        )


def _functional_step(
    sizes: Sequence[int], device: str, context: Any = None, functional: Any = F
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """A training step written in the functional style, its forward and loss in ``context``.

    ``F.linear`` and ``F.relu`` layer by layer, ``F.binary_cross_entropy_with_logits`` and
    ``torch.optim.SGD``: code that ``gdtorch.nn.convert`` cannot reach, as research code is often
    written. The weights are those of ``_sides``' models (the same seed). ``functional``:
    ``torch.nn.functional``, or ``gdtorch.functional`` to call gdtorch's functions by hand.
    """
    torch.manual_seed(0)
    params = list(_native_mlp(sizes).to(device).parameters())  # weight, bias of each layer
    optimizer = torch.optim.SGD(params, lr=LR)
    layers = list(zip(params[::2], params[1::2], strict=True))
    context = context or contextlib.nullcontext()

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> None:
        optimizer.zero_grad()
        with context:
            a = inputs
            for i, (weight, bias) in enumerate(layers):
                a = functional.linear(a, weight, bias)
                if i < len(layers) - 1:
                    a = functional.relu(a)
            loss = functional.binary_cross_entropy_with_logits(a, targets)
        loss.backward()
        optimizer.step()

    return step


def _handwritten_row(shape: Shape, device: str, settings: Settings, whole_step: bool) -> Row:
    """The functional step under ``gdtorch.handwritten()`` against the same step without it.

    ``whole_step``: the step is a function decorated with ``@gdtorch.handwritten()``, so every
    torch call of the step passes through the context's mode, the optimizer's included;
    otherwise only the forward pass and the loss are in the context, which is all it needs.
    """
    _, native = _sides(shape, device)
    inputs, targets = native.inputs, native.targets
    context = gdtorch.handwritten()
    if whole_step:
        gd_step, name = context(_functional_step(shape.sizes, device)), shape.name
    else:
        gd_step = _functional_step(shape.sizes, device, context)
        name = f"{shape.name}: forward and loss in the context"
    native_step = _functional_step(shape.sizes, device)
    target = EAGER_BATCH_1_TARGET if shape.batch == 1 else EAGER_TARGET
    row = _timed_row(
        "train_step_handwritten",
        name,
        device,
        lambda: gd_step(inputs, targets),
        lambda: native_step(inputs, targets),
        settings,
        target,
    )
    report = context.report()  # evidence that the step ran hand-written: no call fell through
    row.details.update(handwritten_calls=report.handwritten, fell_through_calls=report.fell_through)
    return row


def _compiled_row(shape: Shape, device: str, settings: Settings) -> Row:
    """Training steps with forward and loss compiled; the first (compiling) steps in details."""
    torch._dynamo.reset()  # each row compiles afresh, within Dynamo's recompilation limit
    gd, native = _sides(shape, device)
    gd_step, native_step = gd.step_fn(compiled=True), native.step_fn(compiled=True)
    sync = _synchronizer(device)
    first_steps = {
        "gdtorch_first_step_s": _run(gd_step, 1, sync),  # includes compilation
        "native_first_step_s": _run(native_step, 1, sync),
    }
    row = _timed_row(
        "train_step_compiled", shape.name, device, gd_step, native_step, settings, COMPILED_TARGET
    )
    row.details.update(first_steps)
    return row


def _saved_bytes(fn: Callable[[], Any]) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn()`` runs."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return total


def _memory_row(shape: Shape) -> Row:
    """Bytes saved for backward by one forward and loss (the same on every device)."""
    gd, native = _sides(shape, "cpu")
    gd_bytes = _saved_bytes(lambda: gd.forward_loss(gd.inputs, gd.targets))
    native_bytes = _saved_bytes(lambda: native.forward_loss(native.inputs, native.targets))
    return Row(
        "memory_for_backward",
        shape.name,
        "cpu",
        "bytes",
        Stats.of([gd_bytes]),
        Stats.of([native_bytes]),
        MEMORY_TARGET,
    )


# --------------------------------------------------------------------------- optimizer step


def _optimizer_params(device: str) -> tuple[list[torch.nn.Parameter], list[torch.Tensor]]:
    """Parameters of ``OPTIMIZER_LAYERS`` ``Linear(64, 64)`` layers and one random gradient each."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(64, 64) for _ in range(OPTIMIZER_LAYERS)]
    params = [
        torch.nn.Parameter(p.detach().to(device)) for layer in layers for p in layer.parameters()
    ]
    return params, [torch.randn_like(p) for p in params]


def _with_grads(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> list:
    """Copies of ``params`` whose ``.grad`` holds a copy of the matching gradient."""
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for copy, grad in zip(copies, grads, strict=True):
        copy.grad = grad.clone()
    return copies


def _optimizer_rows(device: str, settings: Settings) -> list[Row]:
    """``step()`` alone, multi-tensor and single-tensor, without and with momentum."""
    params, grads = _optimizer_params(device)
    rows = []
    for foreach in (True, False):
        for momentum in (0.0, MOMENTUM):
            options = {"lr": LR, "momentum": momentum, "foreach": foreach}
            gd = GradientDescent(_with_grads(params, grads), **options)
            native = torch.optim.SGD(_with_grads(params, grads), **options)
            path = "foreach" if foreach else "single-tensor"
            name = f"{len(params)} tensors, {path}, momentum={momentum:g}"
            rows.append(
                _timed_row(
                    "optimizer_step", name, device, gd.step, native.step, settings, OPTIMIZER_TARGET
                )
            )
    return rows


# --------------------------------------------------------------------------- epoch


def _epoch_fn(loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Callable[[], None]:
    """One epoch over ``loader``: a gdtorch training step of the cat network per batch."""
    torch.manual_seed(0)
    model = gnn.MLP(CAT_NETWORK)
    loss_fn = gnn.BCEWithLogitsLoss()
    optimizer = GradientDescent(model.parameters(), lr=LR)

    def epoch() -> None:
        for images, targets in loader:
            optimizer.zero_grad()
            loss_fn(model(images), targets.unsqueeze(1)).backward()
            optimizer.step()

    return epoch


def _epoch_rows(settings: Settings) -> list[Row]:
    """One epoch per gradient-descent mode, gdtorch's loader against a plain ``DataLoader``."""
    data = SyntheticCats(max(settings.epoch_sizes.values()), image_size=CAT_IMAGE_SIZE)
    rows = []
    for mode, n in settings.epoch_sizes.items():
        images, targets = data.images[:n], data.targets[:n]
        batch_size = {"batch": n, "stochastic": 1, "minibatch": settings.minibatch_size}[mode]
        shuffle = mode != "batch"  # as CatDataModule: one full batch needs no new order
        gd_loader = TensorBatchLoader(images, targets, batch_size=batch_size, shuffle=shuffle)
        native_loader = DataLoader(
            TensorDataset(images, targets), batch_size=batch_size, shuffle=shuffle
        )
        name = f"{mode}, n={n}, batch_size={batch_size}"
        row = _timed_row(
            "epoch", name, "cpu", _epoch_fn(gd_loader), _epoch_fn(native_loader), settings
        )
        row.details.update(
            n=n,
            batch_size=batch_size,
            gdtorch_per_sample_s=row.gdtorch.median / n,
            native_per_sample_s=row.native.median / n,
        )
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- run


def _run_config(overrides: Sequence[str], output_dir: Path) -> DictConfig:
    """``conf/train.yaml`` with ``overrides``, writing under ``output_dir``."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={output_dir}", *overrides])


def _built_run(
    overrides: Sequence[str], output_dir: Path
) -> tuple[L.Trainer, L.LightningModule, L.LightningDataModule]:
    """A run as :func:`gdtorch.train.build` makes it, with its data already made.

    The clock starts on ready tensors, as the plain loop is handed them: both sides time
    training, not drawing SyntheticCats. (``datamodule.setup`` builds the splits once; the call
    Lightning makes in ``fit`` finds them built.)
    """
    trainer, model, datamodule = build(_run_config(overrides, output_dir))
    datamodule.trainer = trainer
    datamodule.setup("fit")
    return trainer, model, datamodule


@dataclasses.dataclass
class _Run:
    """One side of a ``run`` pair, as its process reports it."""

    seconds: float
    epochs: int
    updates: int
    final: dict[str, torch.Tensor]


def _fit(overrides: Sequence[str]) -> Callable[[int], _Run]:
    """Builds a run with :func:`_built_run`; the call it returns times its fit (its argument,
    the epochs of a plain loop, is not used: the run stops as its config says)."""
    output_dir = tempfile.TemporaryDirectory()
    trainer, model, datamodule = _built_run(overrides, Path(output_dir.name))

    def timed(_: int) -> _Run:
        with output_dir:
            start = time.perf_counter()
            fit(trainer, model, datamodule)
            seconds = time.perf_counter() - start
        final = deepcopy(model.net.state_dict())
        return _Run(seconds, trainer.current_epoch, trainer.global_step, final)

    return timed


def _plain_run(overrides: Sequence[str]) -> Callable[[int], _Run]:
    """The call it returns times the updates of a fit of that many epochs in a plain loop.

    The same network, loss and optimizer from the same config and seed, so the same initial
    weights, on the same tensors in the same order (gdtorch's ``TensorBatchLoader``, one batch
    per update, normalised once), with one validation pass (loss and accuracy) after every
    epoch the run validates (``trainer.check_val_every_n_epoch``).
    """
    with tempfile.TemporaryDirectory() as output_dir:
        _, model, data = _built_run(overrides, Path(output_dir))
    cfg = _run_config(overrides, Path(tempfile.gettempdir()))
    net = instantiate(cfg.model)
    net.load_state_dict(model.net.state_dict())
    loss_fn = instantiate(cfg.loss)
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    mode = cfg.data.mode
    batch_size = {"batch": len(data.train_set), "stochastic": 1, "minibatch": cfg.data.batch_size}
    outputs_logits = isinstance(loss_fn, torch.nn.BCEWithLogitsLoss)

    def timed(epochs: int) -> _Run:
        updates = 0
        start = time.perf_counter()
        train = TensorBatchLoader(
            data.train_set.images,
            data.train_set.targets,
            batch_size[mode],
            shuffle=mode != "batch",
            seed=cfg.data.seed,
            normalize=(data.mean, data.std),
        )
        val = TensorBatchLoader(
            data.val_set.images, data.val_set.targets, 1024, normalize=(data.mean, data.std)
        )
        for epoch in range(epochs):
            for images, targets in train:
                output = net(images)
                loss = loss_fn(output, targets.to(output.dtype).view_as(output))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                updates += 1
            if (epoch + 1) % cfg.trainer.check_val_every_n_epoch:
                continue
            with torch.no_grad():
                for images, targets in val:
                    output = net(images)
                    loss = loss_fn(output, targets.to(output.dtype).view_as(output))
                    probability = torch.sigmoid(output) if outputs_logits else output
                    accuracy = ((probability.flatten() >= 0.5) == (targets >= 0.5)).float().mean()
                    loss.item(), accuracy.item()
        return _Run(time.perf_counter() - start, epochs, updates, net.state_dict())

    return timed


def _side_process(side: str, overrides: list[str], threads: int, connection: Any) -> None:
    """One side of a ``run`` pair, in a process of its own (see :func:`_run_pair`).

    Prepares the side (imports, data, model), says ``"ready"``, then runs it when told the
    epochs, and sends back its result, or the error that stopped it. Just before its clock
    starts, it writes and frees :data:`RUN_MEMORY_TOUCHED` bytes: on this virtual machine a
    page the guest has not used for a while costs many times more to fault in than one just
    freed, so without it the side that ran second, on the pages the first had freed, ran
    about a tenth faster, whichever it was (the same plain loop in both slots: 1.05 and 1.14
    without, 0.98 with).
    """
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # Lightning's progress and summary
        torch.set_num_threads(threads)
        timed = _fit(overrides) if side == "fit" else _plain_run(overrides)
        connection.send("ready")
        epochs = connection.recv()
        torch.ones(RUN_MEMORY_TOUCHED // 4)  # written, then freed at once
        result = io.BytesIO()  # bytes: a pipe would share the tensors' memory instead
        torch.save(dataclasses.asdict(timed(epochs)), result)
        connection.send(result.getvalue())
    except BaseException:
        connection.send(traceback.format_exc())
        raise


def _run_pair(order: Sequence[str], overrides: Sequence[str], epochs: int) -> dict[str, _Run]:
    """A fit and a plain loop, each in a fresh Python process, timed back to back in ``order``.

    Each side starts as a user's run does, in a new interpreter: with both sides repeated in
    the benchmark's process, a pair's ratio depended on which side ran first (mini-batch:
    1.20–1.31 with the fit first, 1.44–1.64 with the plain loop first). Both processes are
    started and prepared first, so that the second side's clock starts as soon as the first
    side's stops, on the machine as the first left it. ``epochs``: the plain loop's, when it
    runs first (then the epochs of the previous fit; otherwise those of this pair's fit).
    """
    spawn = multiprocessing.get_context("spawn")
    sides = {}
    for side in order:
        here, there = spawn.Pipe()
        process = spawn.Process(
            target=_side_process,
            args=(side, list(overrides), torch.get_num_threads(), there),
        )
        process.start()
        sides[side] = (process, here)
    for side, (_, connection) in sides.items():
        _expect(side, connection.recv(), "ready")
    results: dict[str, _Run] = {}
    for side in order:
        process, connection = sides[side]
        connection.send(results["fit"].epochs if "fit" in results else epochs)
        result = _expect(side, connection.recv(), bytes)
        results[side] = _Run(**torch.load(io.BytesIO(result), weights_only=True))
        process.join()
    return results


def _expect(side: str, message: Any, expected: str | type) -> Any:
    """``message`` from ``side``'s process if it is ``expected`` (a word, or a type), or else
    the error that process sent, raised here."""
    if message != expected if isinstance(expected, str) else not isinstance(message, expected):
        raise RuntimeError(f"the {side} side of a run row failed:\n{message}")
    return message


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[name] - b[name]).abs().max().item() for name in a)


def _run_rows(settings: Settings) -> Iterator[Row]:
    """Per mode: ``trainer.fit`` of a default run against a plain loop of the same updates,
    each side in its own process (:func:`_run_pair`).

    The pairs come in couples, one with the fit first and one with the plain loop first, and
    the row's paired ratio is each couple's geometric mean ``√(r_fit-first · r_plain-first)``.
    Whatever the slot itself adds to the side that runs in it cancels: with slot 2 faster by a
    factor ``s``, ``r_fit-first = R/s`` and ``r_plain-first = R·s``. It is not small here: in
    batch mode, whose 2,000-image tensors are faulted in afresh by each process, the fit-first
    pairs measured 1.23–1.52 and the plain-first pairs 1.06–1.16 in the same two runs, so a
    median over five alternating pairs (three fit-first) leaned towards the first order. Each
    order's ratios are kept in the details.
    """
    for mode, overrides in settings.run_cases.items():
        fits: list[_Run] = []
        plains: list[_Run] = []
        differences = []
        for rep in range(2 * settings.run_reps):
            # runs are seeded: a loop that runs first mirrors the previous fit
            order = ("fit", "plain") if rep % 2 == 0 else ("plain", "fit")
            pair = _run_pair(order, overrides, fits[-1].epochs if fits else 0)
            fits.append(pair["fit"])
            plains.append(pair["plain"])
            differences.append(_max_difference(fits[-1].final, plains[-1].final))
        seconds = [fit.seconds for fit in fits]
        ratios = [f / p.seconds for f, p in zip(seconds, plains, strict=True)]
        fit_first, plain_first = ratios[::2], ratios[1::2]
        yield Row(
            "run",
            f"{mode}: {' '.join(o for o in overrides if not o.startswith('data.mode='))}",
            "cpu",
            "s",
            Stats.of(seconds),
            Stats.of([plain.seconds for plain in plains]),
            RUN_TARGETS[mode],
            details={
                "reps": settings.run_reps,
                "pairs": len(ratios),
                "ratios_fit_first": fit_first,
                "ratios_plain_first": plain_first,
                "epochs": fits[-1].epochs,
                "updates": fits[-1].updates,
                "max_weight_difference": max(differences),
            },
            paired_ratios=[math.sqrt(a * b) for a, b in zip(fit_first, plain_first, strict=True)],
        )


def _timed_hooks(callbacks: Iterable[L.Callback], seconds: list[float]) -> None:
    """Wraps every method the callbacks' classes define (Lightning's hooks, and torch hooks such
    as ``TensorBoardExtras``' optimizer step hook) so that the time spent in them adds to
    ``seconds``: the outermost call only, when one calls another."""
    depth = [0]

    def timer(method: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    seconds[0] += time.perf_counter() - start

        return timed

    for callback in callbacks:
        for name, member in vars(type(callback)).items():
            if callable(member) and not name.startswith("__"):
                setattr(callback, name, timer(getattr(callback, name)))


def _extras_rows(settings: Settings) -> Iterator[Row]:
    """Per mode: the time inside TensorBoardExtras' and NonFiniteLossGuard's hooks in a fit.

    Each repetition fits a default run with the two callbacks' hooks timed: the row's gdtorch
    side is the fit, its native side the fit less the time inside those hooks. Measured within
    one fit, the share does not drift with the machine as the difference of two fits does
    (which moved by ±30 % between pairs here). It leaves out Lightning's dispatch of the hooks,
    a few microseconds per call. The ratio ``r`` is within target when the callbacks take at
    most 5 % of the fit: ``1 − 1/r ≤ 0.05``.
    """
    for mode, overrides in settings.run_cases.items():
        fits, inside = [], []
        for _ in range(settings.run_reps):
            with tempfile.TemporaryDirectory() as output_dir:
                trainer, model, datamodule = _built_run(overrides, Path(output_dir))
                seconds = [0.0]
                timed = [c for c in trainer.callbacks if isinstance(c, EXTRAS)]
                _timed_hooks(timed, seconds)
                start = time.perf_counter()
                fit(trainer, model, datamodule)
                fits.append(time.perf_counter() - start)
                inside.append(seconds[0])
        rest = [f - i for f, i in zip(fits, inside, strict=True)]
        yield Row(
            "run_extras",
            f"{mode}: TensorBoardExtras + NonFiniteLossGuard",
            "cpu",
            "s",
            Stats.of(fits),
            Stats.of(rest),
            1 / (1 - EXTRAS_SHARE_TARGET),
            details={
                "reps": settings.run_reps,
                "share_of_fit": statistics.median(i / f for i, f in zip(inside, fits, strict=True)),
                "callbacks": [type(c).__name__ for c in timed],
            },
            paired_ratios=[f / r for f, r in zip(fits, rest, strict=True)],
        )


class FirstStepClock(L.Callback):
    """Prints the wall-clock time of the first training step, then ends the process at once."""

    def on_train_batch_start(self, *args: Any) -> None:
        print(f"first-step-at {time.time()}", flush=True)
        os._exit(0)


def _command_seconds(command: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall-clock seconds from starting ``command`` to its exit, or to its first training step."""
    start = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    for line in done.stdout.splitlines():
        if line.startswith("first-step-at "):
            return float(line.split()[1]) - start
    return time.time() - start


def _process_rows(settings: Settings) -> Iterator[Row]:
    """Process start-up against ``python -c "import torch"``: the core import, ``--help``, and
    the time to the first training step of ``gdtorch-train``."""
    python = sys.executable
    train = str(Path(python).parent / "gdtorch-train")
    torch_import = [python, "-c", "import torch"]
    scripts = str(Path(__file__).resolve().parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [scripts, os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryDirectory() as output_dir:
        cases = {
            "import gdtorch, gdtorch.nn, gdtorch.functional, gdtorch.optim": (
                [python, "-c", "import gdtorch, gdtorch.nn, gdtorch.functional, gdtorch.optim"],
                None,
                None,
            ),
            "gdtorch-train --help": ([train, "--help"], HELP_TARGET, None),
            "gdtorch-train: process start to the first training step": (
                [
                    train,
                    f"hydra.run.dir={output_dir}",
                    "+callbacks.clock._target_=benchmark.FirstStepClock",
                ],
                None,
                env,
            ),
        }
        for name, (command, target, command_env) in cases.items():
            samples: tuple[list[float], list[float]] = ([], [])
            for rep in range(settings.process_reps):
                for side in (0, 1) if rep % 2 == 0 else (1, 0):
                    which = command if side == 0 else torch_import
                    samples[side].append(
                        _command_seconds(which, command_env if side == 0 else None)
                    )
            extra = [a - b for a, b in zip(*samples, strict=True)]
            details = {"reps": settings.process_reps, "extra_seconds": statistics.median(extra)}
            if name.startswith("import"):
                details["extra_seconds_target"] = IMPORT_EXTRA_TARGET
            yield Row(
                "process",
                name,
                "cpu",
                "s",
                Stats.of(samples[0]),
                Stats.of(samples[1]),
                target,
                details=details,
                paired_ratios=[a / b for a, b in zip(*samples, strict=True)],
            )


# --------------------------------------------------------------------------- report


def _machine() -> dict[str, Any]:
    """Where the benchmark ran: date, platform, CPU, cores, torch, threads, GPU."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "gdtorch": gdtorch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def _cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, or what ``platform`` knows elsewhere."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _format_value(value: float, unit: str) -> str:
    if unit == "bytes":
        for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if value >= scale:
                return f"{value / scale:.2f} {suffix}"
        return f"{value:.0f} B"
    for scale, suffix in ((1.0, "s"), (1e-3, "ms")):
        if value >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value / 1e-6:.3g} µs"


def _format_stats(stats: Stats, unit: str) -> str:
    text = _format_value(stats.median, unit)
    return f"{text} ±{stats.spread * 50:.0f}%" if stats.spread else text


def _format_row(row: Row) -> str:
    if row.skipped is not None:
        cells = [f"skipped: {row.skipped}", "", "", ""]
    else:
        gd_cell = _format_stats(row.gdtorch, row.unit)
        native_cell = _format_stats(row.native, row.unit)
        if "gdtorch_per_sample_s" in row.details:
            gd_cell += f" ({_format_value(row.details['gdtorch_per_sample_s'], 's')}/sample)"
            native_cell += f" ({_format_value(row.details['native_per_sample_s'], 's')}/sample)"
        target = ""
        if row.target is not None:
            target = f"≤ {row.target:.2f} {'pass' if row.meets_target else 'FAIL'}"
        if "share_of_fit" in row.details:
            target += (
                f" (share of fit {row.details['share_of_fit']:.1%} ≤ {EXTRAS_SHARE_TARGET:.0%})"
            )
        if "extra_seconds" in row.details:
            gd_cell += f" (+{row.details['extra_seconds']:.2f} s)"
        if "extra_seconds_target" in row.details:
            limit = row.details["extra_seconds_target"]
            verdict = "pass" if row.details["extra_seconds"] <= limit else "FAIL"
            target = f"+ ≤ {limit} s {verdict}"
        ratio = f"{row.ratio:.3f}"
        if row.ratio_interval is not None:
            ratio += " ({:.2f}–{:.2f})".format(*row.ratio_interval)
        cells = [gd_cell, native_cell, ratio, target]
    return "| " + " | ".join([row.kind, row.name, row.device, *cells]) + " |"


def markdown(rows: Sequence[Row], machine: dict[str, Any], quick: bool) -> str:
    """The rows as a markdown table, under a header naming the machine and a legend."""
    header = (
        f"Benchmark{' (--quick)' if quick else ''}, {machine['date']}: {machine['cpu']} "
        f"({machine['cores']} cores, {machine['threads']} torch threads"
        f"{', ' + machine['gpu'] if machine['gpu'] else ''}), {machine['platform']}, "
        f"torch {machine['torch']}, gdtorch {machine['gdtorch']}."
    )
    legend = (
        "Times are medians per call, ± half the interquartile range relative to the median; "
        "ratios are gdtorch / native, lower is better: the median over repetitions of the two "
        "sides' back-to-back samples, with its 95 % confidence interval in brackets (order "
        "statistics of the pairs)."
    )
    lines = [
        header,
        "",
        legend,
        "",
        "| kind | case | device | gdtorch | native | gdtorch / native | target |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(_format_row(row) for row in rows),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _training_step_rows(device: str, settings: Settings) -> Iterator[Row]:
    """The eager (with and without validation, and split) and compiled training-step rows."""
    for shape in SHAPES:
        yield _eager_row(shape, device, settings)
    yield _eager_row(STOCHASTIC_SHAPE, device, settings, validation=False)
    for shape in SPLIT_SHAPES:
        yield from _split_rows(shape, device, settings)
    for shape in settings.compiled_shapes:
        yield _compiled_row(shape, device, settings)
    yield from _handwritten_rows(device, settings)


def _handwritten_rows(device: str, settings: Settings) -> Iterator[Row]:
    """The functional step with the whole step, then only its forward, in the context; then
    the context's own share; then the floor of what any such context can cost."""
    for whole_step in (True, False):
        for shape in HANDWRITTEN_SHAPES:
            yield _handwritten_row(shape, device, settings, whole_step)
    for shape in HANDWRITTEN_SHAPES:
        yield _handwritten_split_row(shape, device, settings)
    for shape in HANDWRITTEN_SHAPES:
        yield from _handwritten_floor_rows(shape, device, settings)


def _handwritten_split_row(shape: Shape, device: str, settings: Settings) -> Row:
    """The step's forward in the context against ``gdtorch.functional`` called by hand.

    Both sides run the same hand-written Functions; the ratio is what the context itself costs
    (its mode's dispatch and checks), apart from the cost of those Functions against torch's.
    No target.
    """
    _, native = _sides(shape, device)
    inputs, targets = native.inputs, native.targets
    in_context = _functional_step(shape.sizes, device, gdtorch.handwritten())
    by_hand = _functional_step(shape.sizes, device, functional=gdtorch.functional)
    return _timed_row(
        "train_step_handwritten_split",
        f"{shape.name}: context against gdtorch.functional by hand",
        device,
        lambda: in_context(inputs, targets),
        lambda: by_hand(inputs, targets),
        settings,
    )


class _ForwardingMode(TorchFunctionMode):
    """A ``TorchFunctionMode`` that takes nothing over: each call runs torch's op unchanged.

    What the override mechanism ``handwritten()`` is built on costs by itself: torch's dispatch
    of every call into a Python mode and back, with no check, no count and no Function.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **kwargs) if kwargs else func(*args)


class _LeastLinear(torch.autograd.Function):
    """``z = a Wᵀ + b`` as the least a per-op Python Function can cost: torch's own op forward,
    ``∂C/∂a = δ W``, ``∂C/∂W = δᵀ a``, ``∂C/∂b = Σ δ`` backward, no checks."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, W)
        return F.linear(a, W, b)

    @staticmethod
    def backward(ctx: Any, delta: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        a, W = ctx.saved_tensors
        return delta.mm(W) if ctx.needs_input_grad[0] else None, delta.t().mm(a), delta.sum(0)


class _LeastReLU(torch.autograd.Function):
    """``a = max(z, 0)``, torch's op forward, ``δ = ∂C/∂a ⊙ [a > 0]`` backward, no checks."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:
        a = torch.relu(z)
        ctx.save_for_backward(a)
        return a

    @staticmethod
    def backward(ctx: Any, dC_da: torch.Tensor) -> torch.Tensor:
        (a,) = ctx.saved_tensors
        return dC_da * (a > 0)


class _LeastBCEWithLogits(torch.autograd.Function):
    """Mean BCE on logits, torch's op forward, ``∂C/∂z = (σ(z) − y) / N`` backward, no checks."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z, y)
        return F.binary_cross_entropy_with_logits(z, y)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        z, y = ctx.saved_tensors
        return (torch.sigmoid(z) - y) * (grad / z.numel()), None


# The functional calls of ``_functional_step`` through the Functions above.
_LEAST_FUNCTIONS = SimpleNamespace(
    linear=_LeastLinear.apply,
    relu=_LeastReLU.apply,
    binary_cross_entropy_with_logits=_LeastBCEWithLogits.apply,
)


def _handwritten_floor_rows(shape: Shape, device: str, settings: Settings) -> Iterator[Row]:
    """What any ``handwritten()`` must cost, in its two parts, against the native step.

    * ``forwarding mode``: the step's forward and loss in :class:`_ForwardingMode` — the
      override mechanism alone, each call still torch's;
    * ``forwarding mode around the whole step``: the same mode around the whole step, as a
      decorated step puts it (the optimizer's calls pass through it too);
    * ``least per-op Functions``: no mode, each call a Python ``autograd.Function`` that runs
      torch's own op forward and the fewest torch calls backward — the least one hand-written
      backward node per op can cost.

    A context that routes each call to a hand-written node pays both; no target.
    """
    _, native = _sides(shape, device)
    inputs, targets = native.inputs, native.targets
    native_step = _functional_step(shape.sizes, device)
    step_in_mode = _functional_step(shape.sizes, device)

    def whole_step_in_mode(inputs: torch.Tensor, targets: torch.Tensor) -> None:
        with _ForwardingMode():
            step_in_mode(inputs, targets)

    floors = {
        "forwarding mode": _functional_step(shape.sizes, device, _ForwardingMode()),
        "forwarding mode around the whole step": whole_step_in_mode,
        "least per-op Functions": _functional_step(
            shape.sizes, device, functional=_LEAST_FUNCTIONS
        ),
    }
    for floor, step in floors.items():
        yield _timed_row(
            "train_step_handwritten_floor",
            f"{shape.name}: {floor}",
            device,
            functools.partial(step, inputs, targets),
            functools.partial(native_step, inputs, targets),
            settings,
        )


# --------------------------------------------------------------------------- tricks


def _plain_apply(cls: type, *args: Any, **kwargs: Any) -> Any:
    """``torch.autograd.Function.apply`` itself, as a Function without ``_fast.Function`` runs."""
    return super(_fast.Function, cls).apply(*args, **kwargs)


def _plain_activate(name: str, z: torch.Tensor) -> torch.Tensor:
    return {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[name](z)


# Each trick of gdtorch/autograd/_fast.py and gdtorch/optim/_fast.py, and the plain expression
# that replaces it: the attributes the maths files and the optimizer call are swapped for the
# duration of a call (``module:attribute``, the module in the package ``gdtorch``).
TRICKS: dict[str, dict[str, Any]] = {
    "cheaper apply (positional form)": {"autograd._fast:Function.apply": classmethod(_plain_apply)},
    "shared constants": {
        "autograd._fast:shared_constant": lambda value, like: like.new_full((), value)
    },
    "one-byte ReLU mask": {"autograd._fast:relu_mask": lambda a: (a != 0).to(a.dtype)},
    "writing over temporaries": {
        "autograd._fast:may_write_in_place": lambda: False,
        "autograd._fast:activate_": _plain_activate,
    },
    "optimizer ranges only under a profiler": {"optim._fast:profiler_running": lambda: True},
}
TRICK_SHAPES = (STOCHASTIC_SHAPE, CAT_SHAPE)


@contextlib.contextmanager
def _without(replacements: dict[str, Any]) -> Iterator[None]:
    """gdtorch with the given attributes replaced by their plain versions, then restored."""
    saved = []
    for path, plain in replacements.items():
        module_name, _, attribute = path.partition(":")
        owner_name, _, name = attribute.rpartition(".")
        owner = importlib.import_module(f"gdtorch.{module_name}")
        if owner_name:
            owner = getattr(owner, owner_name)
        saved.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, plain)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def _trick_rows(device: str, settings: Settings) -> Iterator[Row]:
    """What each trick of the ``_fast.py`` modules buys: gdtorch's step with it and without it.

    Both sides are gdtorch's model, loss and optimizer from the same weights; the second side
    runs with the trick replaced by its plain expression (:data:`TRICKS`). A ratio below 1 is
    what the trick saves. ``train_step_mlp_per_layer`` is the same comparison for the fused
    network: ``MLP(fused=True)``, the default, against ``MLP(fused=False)``.
    """
    for shape in TRICK_SHAPES:
        for trick, replacements in TRICKS.items():
            with_trick, without_trick = _sides(shape, device)[0], _sides(shape, device)[0]
            step, plain_step = with_trick.step_fn(), without_trick.step_fn()

            def step_without(plain_step=plain_step, replacements=replacements) -> None:
                with _without(replacements):
                    plain_step()

            name = f"{shape.name}: {trick}"
            yield _timed_row("trick", name, device, step, step_without, settings)
        fused, per_layer = _sides(shape, device)[0], _sides(shape, device)[0]
        per_layer.model.fused = False
        yield _timed_row(
            "train_step_mlp_per_layer",
            f"{shape.name}: MLP(fused=True) / MLP(fused=False)",
            device,
            fused.step_fn(),
            per_layer.step_fn(),
            settings,
        )


def _cpu_rows(settings: Settings, groups: Sequence[str] = GROUPS) -> Iterator[Row]:
    """The row kinds of ``groups``, on the CPU."""
    if "step" in groups:
        yield from _training_step_rows("cpu", settings)
        for shape in SHAPES:
            yield _memory_row(shape)
        yield from _optimizer_rows("cpu", settings)
    elif "handwritten" in groups:
        yield from _handwritten_rows("cpu", settings)
    if "tricks" in groups:
        yield from _trick_rows("cpu", settings)
    if "epoch" in groups:
        yield from _epoch_rows(settings)
    if "run" in groups:
        yield from _run_rows(settings)
        yield from _extras_rows(settings)
    if "process" in groups:
        yield from _process_rows(settings)


def _cuda_rows(settings: Settings, groups: Sequence[str] = GROUPS) -> Iterator[Row]:
    """The training-step and optimizer rows on CUDA, or one skipped row per kind without it.

    With ``groups`` holding ``handwritten`` but not ``step``, only the ``handwritten()`` rows.
    """
    step = "step" in groups
    if not torch.cuda.is_available():
        handwritten_kinds = (
            "train_step_handwritten",
            "train_step_handwritten_split",
            "train_step_handwritten_floor",
        )
        for kind in CUDA_KINDS if step else handwritten_kinds:
            yield Row(kind, "all cases", "cuda", skipped="CUDA not available")
        return
    if not step:
        yield from _handwritten_rows("cuda", settings)
        return
    yield from _training_step_rows("cuda", settings)
    yield from _optimizer_rows("cuda", settings)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long run: few, short reps")
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/benchmark.json"), help="where to write the JSON"
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--only",
        type=lambda text: text.split(","),
        default=list(GROUPS),
        help=f"comma-separated groups of rows among {','.join(GROUPS)} (default: all)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table and write the JSON.

    Args:
        argv: command-line arguments (``sys.argv[1:]`` when ``None``).

    Returns:
        The exit status, 0.
    """
    args = _parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    machine = _machine()
    sections = []
    if args.device in ("cpu", "all"):
        sections.append(_cpu_rows(settings, args.only))
    if args.device in ("cuda", "all") and {"step", "handwritten"} & set(args.only):
        sections.append(_cuda_rows(settings, args.only))
    rows = []
    for section in sections:
        for row in section:
            print(f"measured {row.kind} {row.name} on {row.device}", file=sys.stderr, flush=True)
            rows.append(row)
    print(markdown(rows, machine, args.quick))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": machine,
        "settings": {"quick": args.quick, **dataclasses.asdict(settings)},
        "rows": [row.to_json() for row in rows],
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
