"""What the studies share: their command line, their data, one training loop, one way to score a
classifier, and the record of where and when they ran."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor

from gdtorch.data import CatDataModule, TensorBatchLoader

SCORING_BATCH = 1024  # examples per forward pass when scoring a whole split


def study_parser(description: str, folder: Path) -> argparse.ArgumentParser:
    """A command line with what every study takes: ``--out``, ``--tiny`` and ``--threads``.

    ``folder`` is the study's own: the default ``--out``, and its name is the module's.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{folder.name}", description=description
    )
    parser.add_argument(
        "--out", type=Path, default=folder, help="folder for the plots, results.json and README"
    )
    parser.add_argument("--tiny", action="store_true", help="every size shrunk: a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser


def machine() -> str:
    """The CPU model, its core count and the torch version."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}"


def run_record(started: float) -> dict[str, Any]:
    """When the study ran (UTC), on what, with how many torch threads, and for how long since
    ``started`` (a ``time.perf_counter()``)."""
    return {
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}",
        "machine": machine(),
        "threads": torch.get_num_threads(),
        "wall_seconds": time.perf_counter() - started,
    }


def save(figure: Figure, path: Path) -> None:
    """Write ``figure`` as a PNG at 100 dpi and say where."""
    figure.savefig(path, dpi=100)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)", flush=True)


def datamodule(mode: str, args: argparse.Namespace) -> CatDataModule:
    """The ``SyntheticCats`` splits served for ``mode``; the same ``seed`` gives the same data."""
    data = CatDataModule(
        mode=mode,
        batch_size=args.batch_size,
        image_size=args.image_size,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
    )
    data.setup()
    return data


def whole_training_split(data: CatDataModule) -> TensorBatchLoader:
    """The whole training split in fixed order, normalised like the training batches."""
    train = data.train_set
    return TensorBatchLoader(
        train.images, train.targets, SCORING_BATCH, normalize=(data.mean, data.std)
    )


@dataclass
class Classification:
    """A classifier's verdicts on a set of examples.

    Attributes:
        probabilities: ``(N,)`` the predicted ``P(cat)``.
        targets: ``(N,)`` the labels ``y`` (1 = cat).
        cost: the cost function's mean over the examples, when one was given.
    """

    probabilities: Tensor
    targets: Tensor
    cost: float | None = None

    @property
    def accuracy(self) -> float:
        """The share of examples on the right side of ``P(cat) = ½``."""
        return ((self.probabilities > 0.5).float() == self.targets).float().mean().item()

    def confidently_wrong(self, margin: float) -> int:
        """How many examples have ``|P(cat) − y| > margin``."""
        return int(((self.probabilities - self.targets).abs() > margin).sum().item())


def classify(
    net: torch.nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    probability: Callable[[Tensor], Tensor] = torch.sigmoid,
) -> Classification:
    """Run ``net`` over ``batches`` without gradients, in eval mode, and collect its verdicts.

    Args:
        net: the classifier; its outputs are ``probability``'s inputs.
        batches: ``(images, targets)`` pairs; images are moved to ``net``'s device.
        loss_fn: ``C(output, target)`` with mean reduction, for ``cost`` over all the examples.
        probability: turns outputs into ``P(cat)``: ``torch.sigmoid`` for logits, the identity
            for a network ending in a sigmoid.
    """
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    outputs, targets = [], []
    with torch.no_grad():
        for images, batch_targets in batches:
            outputs.append(net(images.to(device)).cpu())
            targets.append(batch_targets.cpu())
        output, target = torch.cat(outputs), torch.cat(targets)
        cost = None if loss_fn is None else loss_fn(output, target.view_as(output)).item()
        probabilities = probability(output).flatten()
    net.train(was_training)
    return Classification(probabilities, target.flatten().to(probabilities.dtype), cost)


@dataclass
class History:
    """What :func:`train_epochs` saw: one entry before training, then one after each epoch.

    Attributes:
        updates: updates made so far.
        seconds: training time so far: only drawing batches and updating.
        scores: what ``after_epoch`` returned.
    """

    updates: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    scores: list[Any] = field(default_factory=list)


def train_epochs(
    net: torch.nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[Tensor, Tensor]],
    epochs: int,
    after_epoch: Callable[[], Any] | None = None,
    after_update: Callable[[int], None] | None = None,
) -> History:
    """Gradient descent on ``batches`` for ``epochs`` epochs, in a plain loop.

    Each update is ``zero_grad``, ``C(net(x), y).backward()``, ``optimizer.step()``. Before
    training and after each epoch, ``after_epoch()`` scores the weights; after each update,
    ``after_update(updates so far)`` may look at them. The clock stops for both.

    Args:
        net: the network, trained in place.
        loss_fn: ``C(output, target)``; targets are reshaped ``view_as`` the output.
        optimizer: the optimiser of ``net``'s parameters.
        batches: re-iterable ``(images, targets)`` pairs, one pass per epoch.
        epochs: passes over ``batches``.
        after_epoch: scores the current weights; its results are ``History.scores``.
        after_update: called with the number of updates made so far.
    """
    history = History()
    updates, seconds = 0, 0.0
    for epoch in range(epochs + 1):
        if epoch:  # epoch 0 only scores the initial weights
            start = time.perf_counter()
            for images, targets in batches:
                optimizer.zero_grad()
                output = net(images)
                loss_fn(output, targets.view_as(output)).backward()
                optimizer.step()
                updates += 1
                if after_update is not None:
                    paused = time.perf_counter()
                    after_update(updates)
                    start += time.perf_counter() - paused
            seconds += time.perf_counter() - start
        history.updates.append(updates)
        history.seconds.append(seconds)
        if after_epoch is not None:
            history.scores.append(after_epoch())
    return history
