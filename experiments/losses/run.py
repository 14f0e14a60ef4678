"""MAE vs MSE vs binary cross-entropy on the same network, and the gradient each gives.

The tutorial's section 3 introduces three cost functions and says cross-entropy "penalises
confident but wrong predictions much more than less confident ones". This study measures it two
ways. First, the gradient at the logit ``z`` of a prediction ``ŷ = σ(z)`` for a cat (``y = 1``)
that is confidently wrong, through gdtorch's hand-written ``Sigmoid`` and losses. Second, it
trains the same network (``MLP([n, 20, 7, 5, 1])`` with a sigmoid output) from the same initial
weights on the same ``SyntheticCats`` split with each loss, at each learning rate of a small
grid, keeps each loss's best learning rate on the validation split, and compares convergence
and test accuracy. It writes ``results.json`` and the README rendered from it.

Run from the repository root::

    .venv/bin/python -m experiments.losses
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor

from experiments.common import (
    Classification,
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
from gdtorch.nn import MLP, BCELoss, MAELoss, MSELoss, Sigmoid
from gdtorch.optim import GradientDescent

HERE = Path(__file__).resolve().parent
HIDDEN = (20, 7, 5)
LOSSES: dict[str, Callable[..., torch.nn.Module]] = {"MAE": MAELoss, "MSE": MSELoss, "BCE": BCELoss}
COLOURS = {"MAE": "tab:purple", "MSE": "tab:orange", "BCE": "tab:blue"}
# ∂C/∂z for one example with y = 1 and ŷ = σ(z), derived by hand: σ' = ŷ(1 − ŷ) times ∂C/∂ŷ.
CLOSED_FORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "MAE": lambda p: p * (1 - p),  # |−1 · σ'|
    "MSE": lambda p: 2 * p * (1 - p) ** 2,  # |2(ŷ − 1) · σ'|
    "BCE": lambda p: 1 - p,  # |(ŷ − 1)/(ŷ(1 − ŷ)) · σ'|
}
PROBABILITIES = (0.5, 0.1, 0.01, 0.001)
CONFIDENTLY_WRONG = 0.9  # |ŷ − y| above this
WINDOW = 5  # epochs whose validation accuracy is averaged to choose η


def identity(output: Tensor) -> Tensor:
    """The network ends in a sigmoid: its output is already ``P(cat)``."""
    return output


@dataclass
class Trial:
    """One training run: a loss at one learning rate, and its per-epoch curves.

    ``cost`` (the run's own loss on the whole training set) and ``val_acc`` hold one value
    before training and one after each epoch.
    """

    loss: str
    lr: float
    cost: list[float]
    val_acc: list[float]
    net: torch.nn.Module

    @property
    def recent_val_acc(self) -> float:
        """Mean validation accuracy over the last ``WINDOW`` epochs: steadier than the last."""
        recent = self.val_acc[1:][-WINDOW:]
        return sum(recent) / len(recent)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--tiny`` shrinks every size."""
    parser = study_parser(__doc__.splitlines()[0], HERE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--target-acc", type=float, default=0.75, help="convergence threshold")
    args = parser.parse_args(argv)
    if args.tiny:
        args.epochs, args.n_train, args.n_val, args.n_test = 2, 64, 32, 32
        args.image_size, args.batch_size, args.lrs = 16, 16, [0.03, 0.3]
    return args


def logit_gradients(probabilities: Tensor) -> dict[str, Tensor]:
    """``|∂C/∂z|`` for a cat (``y = 1``) predicted ``ŷ = σ(z)``, per loss, by backpropagation.

    The logits ``z = log(ŷ / (1 − ŷ))`` go through gdtorch's ``Sigmoid`` and each gdtorch loss
    with ``reduction="sum"``, so that element ``i`` of the gradient is its own example's
    ``∂C/∂zᵢ``; the backward passes are gdtorch's hand-written ones. Float64.
    """
    z = torch.log(probabilities / (1 - probabilities)).requires_grad_()
    target = torch.ones_like(z)
    gradients = {}
    for name, loss in LOSSES.items():
        cost = loss(reduction="sum")(Sigmoid()(z), target)
        (gradient,) = torch.autograd.grad(cost, z)
        gradients[name] = gradient.abs()
    return gradients


def train_loss(
    loss: str, lr: float, data: CatDataModule, init: dict[str, Tensor], args: argparse.Namespace
) -> Trial:
    """Train the network from ``init`` with ``loss`` at learning rate ``lr``.

    Every trial starts from the same weights and sees the same batches in the same orders.
    """
    net = MLP([data.input_size, *HIDDEN, 1], output_activation="sigmoid")
    net.load_state_dict(init)
    loss_fn = LOSSES[loss]()

    def scores() -> tuple[float, float]:
        train = classify(net, whole_training_split(data), loss_fn, identity)
        return train.cost, classify(net, data.val_dataloader(), probability=identity).accuracy

    batches = data.train_dataloader()
    batches.epoch = 0  # the data module's loaders continue one sequence of orders: restart it
    optimizer = GradientDescent(net.parameters(), lr=lr)
    history = train_epochs(net, loss_fn, optimizer, batches, args.epochs, scores)
    cost, val_acc = (list(values) for values in zip(*history.scores, strict=True))
    print(f"{loss} lr={lr:g}: cost {cost[0]:.4f} -> {cost[-1]:.4f}, val acc {val_acc[-1]:.3f}")
    return Trial(loss=loss, lr=lr, cost=cost, val_acc=val_acc, net=net)


def best(trials: list[Trial], loss: str) -> Trial:
    """The trial of ``loss`` with the highest ``recent_val_acc`` (ties: the smaller lr)."""
    return max((t for t in trials if t.loss == loss), key=lambda t: (t.recent_val_acc, -t.lr))


def first_epoch_at(trial: Trial, level: float) -> int | None:
    """The first epoch after which the validation accuracy is at least ``level``."""
    return next((epoch for epoch, acc in enumerate(trial.val_acc) if acc >= level), None)


def gradients_figure(gradients: dict[str, Tensor], probabilities: Tensor) -> Figure:
    """``|∂C/∂z|`` against ``ŷ`` for ``y = 1`` on log-log axes, table points marked."""
    figure = Figure(figsize=(6.4, 4.4))
    ax = figure.subplots()
    table_points = torch.tensor(PROBABILITIES, dtype=torch.float64)
    marked = logit_gradients(table_points)
    for name, gradient in gradients.items():
        ax.loglog(probabilities, gradient, color=COLOURS[name], label=name)
        ax.loglog(table_points, marked[name], "o", color=COLOURS[name], markersize=5)
    ax.invert_xaxis()
    ax.set_xlabel("prediction ŷ = σ(z) for a cat (y = 1): ← less wrong   more wrong →")
    ax.set_ylabel("|∂C/∂z| at the output logit")
    ax.set_title("The push each loss gives a wrong prediction", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    figure.tight_layout()
    return figure


def convergence_figure(chosen: list[Trial], args: argparse.Namespace) -> Figure:
    """Validation accuracy and relative training cost against epochs, at each loss's best η."""
    figure = Figure(figsize=(11, 3.8))
    acc_ax, cost_ax = figure.subplots(1, 2)
    for trial in chosen:
        label = f"{trial.loss}, η={trial.lr:g}"
        colour = COLOURS[trial.loss]
        epochs = range(len(trial.val_acc))
        acc_ax.plot(epochs, trial.val_acc, "-o", markersize=2.5, color=colour, label=label)
        relative = [c / trial.cost[0] for c in trial.cost]
        cost_ax.plot(epochs, relative, "-o", markersize=2.5, color=colour, label=label)
    acc_ax.axhline(args.target_acc, color="grey", linestyle=":", linewidth=1)
    acc_ax.set_ylabel("validation accuracy")
    acc_ax.set_title("accuracy (same network, same start)")
    cost_ax.set_yscale("log")
    cost_ax.set_ylabel("own training cost / initial cost")
    cost_ax.set_title("each loss's own cost, relative to its start")
    for ax in (acc_ax, cost_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def results(
    args: argparse.Namespace,
    gradients: dict[str, Tensor],
    closed_form_error: float,
    trials: list[Trial],
    verdicts: dict[str, dict[str, Classification]],
    started: float,
) -> dict[str, Any]:
    """Everything the README says, as numbers."""
    chosen = {loss: best(trials, loss) for loss in LOSSES}
    accuracies = [verdicts[loss]["test"].accuracy for loss in LOSSES]
    mean = sum(accuracies) / len(accuracies)
    standard_error = math.sqrt(mean * (1 - mean) / args.n_test)  # of one binomial accuracy
    settings = {key: value for key, value in vars(args).items() if key != "out"}
    return {
        "run": run_record(started),
        "settings": {
            **settings,
            "window": WINDOW,
            "confidently_wrong": CONFIDENTLY_WRONG,
            "sizes": [3 * args.image_size**2, *HIDDEN, 1],
        },
        "gradients": {
            "closed_form_error": closed_form_error,
            "rows": [
                {
                    "probability": p,
                    "logit": math.log(p / (1 - p)),
                    **{name: gradients[name][i].item() for name in LOSSES},
                }
                for i, p in enumerate(PROBABILITIES)
            ],
        },
        "trials": [
            {
                "loss": trial.loss,
                "lr": trial.lr,
                "cost": trial.cost,
                "val_acc": trial.val_acc,
                "recent_val_acc": trial.recent_val_acc,
                "chosen": trial is chosen[trial.loss],
            }
            for trial in trials
        ],
        "chosen": [
            {
                "loss": loss,
                "lr": trial.lr,
                "first_epoch_at_target": first_epoch_at(trial, args.target_acc),
                "cost_start": trial.cost[0],
                "cost_end": trial.cost[-1],
                "recent_val_acc": trial.recent_val_acc,
                "final_val_acc": trial.val_acc[-1],
                "test_acc": verdicts[loss]["test"].accuracy,
                "confidently_wrong": verdicts[loss]["train"].confidently_wrong(CONFIDENTLY_WRONG),
            }
            for loss, trial in chosen.items()
        ],
        "test_acc_standard_error": standard_error,
        "difference_threshold": 2 * math.sqrt(2) * standard_error,  # 2 s.e. of a difference
    }


def main(argv: list[str] | None = None) -> None:
    """Measure the gradients, train every (loss, η), draw the plots, write results and README."""
    started = time.perf_counter()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    table_points = torch.tensor(PROBABILITIES, dtype=torch.float64)
    curve_points = torch.logspace(-4, -0.005, 200, dtype=torch.float64)
    gradients = logit_gradients(table_points)
    closed_form_error = max(
        ((gradients[name] - form(table_points)).abs() / form(table_points)).max().item()
        for name, form in CLOSED_FORMS.items()
    )
    save(gradients_figure(logit_gradients(curve_points), curve_points), args.out / "gradients.png")

    data = datamodule("minibatch", args)
    torch.manual_seed(args.seed)
    init = copy.deepcopy(
        MLP([data.input_size, *HIDDEN, 1], output_activation="sigmoid").state_dict()
    )
    trials = [train_loss(loss, lr, data, init, args) for loss in LOSSES for lr in args.lrs]
    chosen = [best(trials, loss) for loss in LOSSES]
    verdicts = {
        trial.loss: {
            "train": classify(trial.net, whole_training_split(data), probability=identity),
            "test": classify(trial.net, data.test_dataloader(), probability=identity),
        }
        for trial in chosen
    }
    save(convergence_figure(chosen, args), args.out / "convergence.png")
    record = results(args, gradients, closed_form_error, trials, verdicts, started)
    publish("losses", record, args.out)
