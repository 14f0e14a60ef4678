"""Batch vs stochastic vs mini-batch gradient descent from the same initial weights.

The tutorial's section 6: batch gradient descent computes every update from the whole training
set, stochastic gradient descent from one example, mini-batch gradient descent from a small
batch. This study trains one network (``MLP([n, 20, 7, 5, 1])``, binary cross-entropy on logits,
``GradientDescent``) from the same initial weights on the same ``SyntheticCats`` split in the
three modes for the same number of epochs, in a plain loop so that every update can be timed and
recorded. It plots the training loss against epochs, updates and training time, measures the
test accuracy, draws the three weight paths on one shared plane of the cost landscape, and
writes ``results.json`` and the README rendered from it.

Run from the repository root::

    .venv/bin/python -m experiments.gd_modes
"""

from __future__ import annotations

import argparse
import copy
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torch.nn.utils import parameters_to_vector

from experiments.common import (
    History,
    classify,
    datamodule,
    run_record,
    save,
    study_parser,
    train_epochs,
    whole_training_split,
)
from experiments.render import publish
from gdtorch.data import CatDataModule
from gdtorch.landscape import (
    filter_normalized_directions,
    landscape_figure,
    loss_surface,
    path_grid,
    principal_plane,
    project,
    share_in_plane,
)
from gdtorch.nn import MLP, BCEWithLogitsLoss
from gdtorch.optim import GradientDescent

HERE = Path(__file__).resolve().parent
MODES = ("batch", "minibatch", "stochastic")
LABELS = {"batch": "batch", "minibatch": "mini-batch", "stochastic": "stochastic"}
COLOURS = {"batch": "tab:blue", "minibatch": "tab:green", "stochastic": "tab:red"}
HIDDEN = (20, 7, 5)
PCA_MARGIN = 0.15  # the PCA plot's room around the paths, a fraction of their extent


@dataclass
class Arm:
    """What one gradient-descent mode did: its history, test accuracy and weight path.

    ``history.scores`` holds ``(training loss, validation accuracy)`` before training and after
    each epoch; ``path`` the weights every ``record_every`` updates and at the end.
    """

    mode: str
    lr: float
    batch_size: int
    history: History
    test_acc: float
    path: Tensor
    record_every: int

    @property
    def train_loss(self) -> list[float]:
        return [loss for loss, _ in self.history.scores]

    @property
    def val_acc(self) -> list[float]:
        return [acc for _, acc in self.history.scores]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--tiny`` shrinks every size."""
    parser = study_parser(__doc__.splitlines()[0], HERE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64, help="mini-batch size")
    parser.add_argument("--lr-batch", type=float, default=0.3)
    parser.add_argument("--lr-minibatch", type=float, default=0.03)
    parser.add_argument("--lr-stochastic", type=float, default=0.0005)
    parser.add_argument("--points", type=int, default=40, help="weights recorded per mode")
    parser.add_argument("--resolution", type=int, default=21, help="landscape grid side")
    args = parser.parse_args(argv)
    if args.tiny:
        args.epochs, args.n_train, args.n_val, args.n_test = 2, 64, 32, 32
        args.image_size, args.batch_size, args.points, args.resolution = 16, 16, 4, 5
    return args


def train_mode(
    data: CatDataModule, lr: float, init: dict[str, Tensor], args: argparse.Namespace
) -> Arm:
    """Train from the weights ``init`` in ``data.mode`` for ``args.epochs`` epochs."""
    net = MLP([data.input_size, *HIDDEN, 1])
    net.load_state_dict(init)
    loss_fn = BCEWithLogitsLoss()
    loader = data.train_dataloader()
    record_every = max(1, args.epochs * len(loader) // args.points)
    path = [parameters_to_vector(net.parameters()).detach().clone()]

    def record(updates: int) -> None:
        if updates % record_every == 0:
            path.append(parameters_to_vector(net.parameters()).detach().clone())

    def scores() -> tuple[float, float]:
        train = classify(net, whole_training_split(data), loss_fn)
        return train.cost, classify(net, data.val_dataloader()).accuracy

    optimizer = GradientDescent(net.parameters(), lr=lr)
    history = train_epochs(net, loss_fn, optimizer, loader, args.epochs, scores, record)
    if history.updates[-1] % record_every:
        path.append(parameters_to_vector(net.parameters()).detach().clone())
    arm = Arm(
        mode=data.mode,
        lr=lr,
        batch_size=loader.batch_size,
        history=history,
        test_acc=classify(net, data.test_dataloader()).accuracy,
        path=torch.stack(path),
        record_every=record_every,
    )
    print(
        f"{arm.mode}: lr={lr} loss {arm.train_loss[0]:.4f} -> {arm.train_loss[-1]:.4f} "
        f"in {history.updates[-1]} updates, {history.seconds[-1]:.1f} s",
        flush=True,
    )
    return arm


def landscape_plot(
    arms: list[Arm],
    net: torch.nn.Module,
    batch: tuple[Tensor, Tensor],
    directions: tuple[Tensor, Tensor],
    grid: tuple[Tensor, Tensor] | None,
    args: argparse.Namespace,
    title: str,
) -> Figure:
    """The training cost on the plane ``θ₀ + α d₁ + β d₂`` with every arm's path drawn on it.

    ``grid`` is ``(alphas, betas)``; ``None`` fits a square grid to the paths.
    """
    origin = arms[0].path[0]
    coordinates = {
        f"{LABELS[arm.mode]} (a point every {arm.record_every} update(s))": project(
            arm.path, origin, directions
        )
        for arm in arms
    }
    colours = dict(zip(coordinates, (COLOURS[arm.mode] for arm in arms), strict=True))
    if grid is None:
        grid = path_grid(torch.cat(list(coordinates.values())), args.resolution, PCA_MARGIN)
    alphas, betas = grid
    surface = loss_surface(net, BCEWithLogitsLoss(), [batch], directions, origin, alphas, betas)
    return landscape_figure(
        alphas,
        betas,
        surface,
        coordinates,
        colours=colours,
        title=title,
        cost_label="training cost C (BCE)",
        start_label="θ₀ (shared start)",
        end_label="θ_T (each mode's end)",
    )


def curves(arms: list[Arm]) -> Figure:
    """Training loss (whole training set) against epochs, updates and training seconds."""
    figure = Figure(figsize=(13, 3.8))
    axes = figure.subplots(1, 3)
    for arm in arms:
        style = {
            "color": COLOURS[arm.mode],
            "marker": "o",
            "markersize": 2.5,
            "label": f"{LABELS[arm.mode]}, η={arm.lr:g}",
        }
        axes[0].plot(range(len(arm.train_loss)), arm.train_loss, **style)
        axes[1].plot(arm.history.updates[1:], arm.train_loss[1:], **style)
        axes[2].plot(arm.history.seconds, arm.train_loss, **style)
    for ax, xlabel in zip(axes, ("epoch", "updates (log)", "training time (s)"), strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("training loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[1].set_xscale("log")
    axes[0].legend(fontsize=8)
    axes[0].set_title("per epoch (= same data seen)")
    axes[1].set_title("per update")
    axes[2].set_title("per second of training")
    figure.tight_layout()
    return figure


def first_at_or_below(values: list[float], level: float) -> int | None:
    """Index of the first value at most ``level``."""
    return next((i for i, value in enumerate(values) if value <= level), None)


def rises(values: list[float]) -> int:
    """How many times a value is larger than the one before it."""
    return sum(later > earlier for earlier, later in itertools.pairwise(values))


def results(
    args: argparse.Namespace,
    arms: list[Arm],
    shares: dict[str, dict[str, float]],
    n_parameters: int,
    started: float,
) -> dict[str, Any]:
    """Everything the README says, as numbers: the settings, each mode's curves and summary."""
    level = next(arm for arm in arms if arm.mode == "batch").train_loss[-1]
    modes = []
    for arm in arms:
        reached = None if arm.mode == "batch" else first_at_or_below(arm.train_loss, level)
        modes.append(
            {
                "mode": arm.mode,
                "lr": arm.lr,
                "batch_size": arm.batch_size,
                "record_every": arm.record_every,
                "updates": arm.history.updates,
                "seconds": arm.history.seconds,
                "train_loss": arm.train_loss,
                "val_acc": arm.val_acc,
                "test_acc": arm.test_acc,
                "final_train_loss": arm.train_loss[-1],
                "rises": rises(arm.train_loss),
                "share_in_pca_plane": shares[arm.mode]["pca"],
                "share_in_random_plane": shares[arm.mode]["random"],
                "reached_batch_loss_at_epoch": reached,
            }
        )
    settings = {key: value for key, value in vars(args).items() if key != "out"}
    return {
        "run": run_record(started),
        "settings": settings,
        "network": {"sizes": [3 * args.image_size**2, *HIDDEN, 1], "parameters": n_parameters},
        "modes": modes,
    }


def main(argv: list[str] | None = None) -> None:
    """Train the three modes, draw the plots, write the results and the README."""
    started = time.perf_counter()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    net = MLP([3 * args.image_size**2, *HIDDEN, 1])
    init = copy.deepcopy(net.state_dict())
    lrs = {"batch": args.lr_batch, "minibatch": args.lr_minibatch, "stochastic": args.lr_stochastic}
    data = {mode: datamodule(mode, args) for mode in MODES}
    arms = [train_mode(data[mode], lrs[mode], init, args) for mode in MODES]

    images, targets = next(iter(data["batch"].train_dataloader()))
    batch = (images, targets.view(-1, 1))
    origin = arms[0].path[0]
    planes = {
        "pca": principal_plane([arm.path for arm in arms], origin),
        "random": filter_normalized_directions(net, torch.Generator().manual_seed(args.seed)),
    }
    shares = {
        arm.mode: {
            name: share_in_plane(arm.path[-1], origin, directions)
            for name, directions in planes.items()
        }
        for arm in arms
    }
    save(curves(arms), args.out / "loss_curves.png")
    points = torch.cat([project(arm.path, origin, planes["random"]) for arm in arms])
    radius = max(1.0, 1.1 * points.abs().max().item())  # [−1, 1], or all the paths if wider
    square = torch.linspace(-radius, radius, args.resolution, dtype=torch.float64)
    views = {  # plane: (grid, title)
        "pca": (None, "d₁, d₂: the paths' two principal directions"),
        "random": ((square, square), "d₁, d₂: random, filter-normalised (span 1)"),
    }
    for name, directions in planes.items():
        grid, title = views[name]
        figure = landscape_plot(arms, net, batch, directions, grid, args, title)
        save(figure, args.out / f"landscape_{name}.png")
    n_parameters = sum(p.numel() for p in net.parameters())
    publish("gd_modes", results(args, arms, shares, n_parameters, started), args.out)
