"""MAE vs MSE vs binary cross-entropy on the same network, and the gradient each gives.

The tutorial's section 3 introduces three cost functions and says cross-entropy "penalises
confident but wrong predictions much more than less confident ones". This study measures it two
ways. First, the gradient at the logit ``z`` of a prediction ``ŷ = σ(z)`` for a cat (``y = 1``)
that is confidently wrong, through gdtorch's hand-written ``Sigmoid`` and losses. Second, it
trains the same network (``MLP([n, 20, 7, 5, 1])`` with a sigmoid output) from the same initial
weights on the same ``SyntheticCats`` split with each loss, at each learning rate of a small
grid, keeps each loss's best learning rate on the validation split, and compares convergence
and test accuracy. It rewrites the README beside it with the numbers of the run.

Run from the repository root::

    .venv/bin/python experiments/losses/run.py
"""

from __future__ import annotations

import argparse
import copy
import datetime
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from gdtorch.data import CatDataModule, TensorBatchLoader
from gdtorch.nn import MLP, BCELoss, MAELoss, MSELoss, Sigmoid
from gdtorch.optim import GradientDescent

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/common.py
from common import datamodule, machine, save, train_eval_loader

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


@dataclass
class Run:
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
    """The command line; ``--tiny`` shrinks every size so the study runs in seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the PNGs and README")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--target-acc", type=float, default=0.75, help="convergence threshold")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
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


def predictions(net: torch.nn.Module, loader: TensorBatchLoader) -> tuple[Tensor, Tensor]:
    """``(ŷ, y)`` over ``loader``, each ``(N, 1)``."""
    with torch.no_grad():
        pairs = [(net(images), targets.view(-1, 1)) for images, targets in loader]
    return torch.cat([p for p, _ in pairs]), torch.cat([y for _, y in pairs])


def accuracy(y_hat: Tensor, y: Tensor) -> float:
    """Share of predictions on the right side of ½."""
    return ((y_hat > 0.5).float() == y).float().mean().item()


def train(
    loss: str, lr: float, data: CatDataModule, init: dict[str, Tensor], args: argparse.Namespace
) -> Run:
    """Train the network from ``init`` with ``loss`` at learning rate ``lr``."""
    net = MLP([data.input_size, *HIDDEN, 1], output_activation="sigmoid")
    net.load_state_dict(init)
    loss_fn = LOSSES[loss]()
    optimizer = GradientDescent(net.parameters(), lr=lr)
    loader, train_loader, val_loader = (
        data.train_dataloader(),
        train_eval_loader(data),
        data.val_dataloader(),
    )
    cost, val_acc = [], []
    for epoch in range(args.epochs + 1):
        if epoch:
            for images, targets in loader:
                optimizer.zero_grad()
                loss_fn(net(images), targets.view(-1, 1)).backward()
                optimizer.step()
        with torch.no_grad():
            cost.append(loss_fn(*predictions(net, train_loader)).item())
        val_acc.append(accuracy(*predictions(net, val_loader)))
    print(f"{loss} lr={lr:g}: cost {cost[0]:.4f} -> {cost[-1]:.4f}, val acc {val_acc[-1]:.3f}")
    return Run(loss=loss, lr=lr, cost=cost, val_acc=val_acc, net=net)


def best(runs: list[Run], loss: str) -> Run:
    """The run of ``loss`` with the highest ``recent_val_acc`` (ties: the smaller lr)."""
    return max((r for r in runs if r.loss == loss), key=lambda r: (r.recent_val_acc, -r.lr))


def first_epoch_at(run: Run, level: float) -> int | None:
    """The first epoch after which the validation accuracy is at least ``level``."""
    return next((epoch for epoch, acc in enumerate(run.val_acc) if acc >= level), None)


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


def convergence_figure(chosen: list[Run], args: argparse.Namespace) -> Figure:
    """Validation accuracy and relative training cost against epochs, at each loss's best η."""
    figure = Figure(figsize=(11, 3.8))
    acc_ax, cost_ax = figure.subplots(1, 2)
    for run in chosen:
        label = f"{run.loss}, η={run.lr:g}"
        epochs = range(len(run.val_acc))
        acc_ax.plot(epochs, run.val_acc, "-o", markersize=2.5, color=COLOURS[run.loss], label=label)
        relative = [c / run.cost[0] for c in run.cost]
        cost_ax.plot(epochs, relative, "-o", markersize=2.5, color=COLOURS[run.loss], label=label)
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


def gradient_table(gradients: dict[str, Tensor], probabilities: Tensor) -> str:
    """The Markdown table of ``|∂C/∂z|`` at the table's ``ŷ`` values."""
    lines = [
        "| ŷ (y = 1) | z = log(ŷ/(1−ŷ)) | MAE: ŷ(1−ŷ) | MSE: 2ŷ(1−ŷ)² | BCE: 1−ŷ | BCE ÷ MSE |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for i, p in enumerate(probabilities.tolist()):
        mae, mse, bce = (gradients[name][i].item() for name in ("MAE", "MSE", "BCE"))
        z = torch.logit(probabilities[i]).item()
        lines.append(f"| {p:g} | {z:.2f} | {mae:.4g} | {mse:.4g} | {bce:.4g} | {bce / mse:.3g} |")
    return "\n".join(lines)


def sweep_table(runs: list[Run], lrs: list[float]) -> str:
    """``recent_val_acc`` of every (loss, η); each loss's chosen η in bold."""
    lines = [
        "| loss | " + " | ".join(f"η = {lr:g}" for lr in lrs) + " |",
        "| --- |" + " --- |" * len(lrs),
    ]
    for loss in LOSSES:
        chosen = best(runs, loss)
        cells = []
        for run in (r for r in runs if r.loss == loss):
            cell = f"{run.recent_val_acc:.3f}"
            cells.append(f"**{cell}**" if run is chosen else cell)
        lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_table(chosen: list[Run], test: dict[str, dict[str, float]], level: float) -> str:
    """The Markdown table of the chosen runs' measured numbers."""
    lines = [
        f"| loss | η | own training cost: start → end | epoch val acc ≥ {level:g} | "
        f"val acc (last {WINDOW} epochs) | final val acc | test acc | confidently wrong (train) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in chosen:
        epoch = first_epoch_at(run, level)
        numbers = test[run.loss]
        lines.append(
            f"| {run.loss} | {run.lr:g} | {run.cost[0]:.4f} → {run.cost[-1]:.4f} | "
            f"{'never' if epoch is None else epoch} | {run.recent_val_acc:.3f} | "
            f"{run.val_acc[-1]:.3f} | "
            f"{numbers['test_acc']:.3f} | {numbers['wrong']:.0f} |"
        )
    return "\n".join(lines)


def findings(
    gradients: dict[str, Tensor],
    chosen: list[Run],
    test: dict[str, dict[str, float]],
    level: float,
    n_test: int,
) -> str:
    """Interpretation sentences computed from the numbers, so they always match the tables."""
    g = {name: gradient[-1].item() for name, gradient in gradients.items()}
    p = PROBABILITIES[-1]
    epochs = {run.loss: first_epoch_at(run, level) for run in chosen}
    reached = ", ".join(
        f"{loss} never" if epoch is None else f"{loss} after epoch {epoch}"
        for loss, epoch in epochs.items()
    )
    accs = {run.loss: test[run.loss]["test_acc"] for run in chosen}
    ranked = " ≥ ".join(
        f"{loss} ({acc:.3f})" for loss, acc in sorted(accs.items(), key=lambda kv: -kv[1])
    )
    mean = sum(accs.values()) / len(accs)
    error = math.sqrt(mean * (1 - mean) / n_test)  # binomial standard error of one accuracy
    threshold = 2 * math.sqrt(2) * error  # two standard errors of a difference
    spread = max(accs.values()) - min(accs.values())
    wrong = {run.loss: test[run.loss]["wrong"] for run in chosen}
    most = [loss for loss, count in wrong.items() if count == max(wrong.values())]
    leader = ""
    if len(most) == 1 and wrong[most[0]] > 0:
        leader = f"; most under {most[0]}"
        if most[0] == "MAE":
            leader += ", whose gradient is the smallest for such examples (table above)"
    return "\n".join(
        [
            f"- **Gradient**: for a cat predicted ŷ = {p:g}, |∂C/∂z| is {g['BCE']:.3g} with BCE, "
            f"{g['MSE']:.2g} with MSE and {g['MAE']:.2g} with MAE: BCE's push is "
            f"{g['BCE'] / g['MSE']:.0f}× MSE's and {g['BCE'] / g['MAE']:.0f}× MAE's. Through "
            "the sigmoid, MSE's and MAE's gradients shrink with ŷ (σ' = ŷ(1 − ŷ)), "
            "BCE's tends to 1: the tutorial's argument, measured.",
            f"- **Convergence**: validation accuracy first reached {level:g} — {reached}.",
            f"- **Accuracy**: test accuracy ranks {ranked}. With one seed and {n_test} test "
            f"images each accuracy has a binomial standard error of about {error:.3f}, so a gap "
            f"under about {threshold:.3f} (two standard errors of a difference) is not evidence "
            f"of a real difference; the spread here is {spread:.3f}, "
            + ("below" if spread < threshold else "above")
            + " that.",
            f"- **Confidently wrong** training images (|ŷ − y| > {CONFIDENTLY_WRONG:g}) after "
            "the last epoch: "
            + ", ".join(f"{count:.0f} ({loss})" for loss, count in wrong.items())
            + f"{leader}.",
        ]
    )


def write_readme(out: Path, args: argparse.Namespace, sections: dict[str, str]) -> None:
    """Rewrite ``out/README.md`` from the setup and the measured ``sections``."""
    sizes = [3 * args.image_size**2, *HIDDEN, 1]
    tiny = " --tiny" if args.tiny else ""
    text = f"""# MAE vs MSE vs binary cross-entropy

**Question.** The tutorial (section 3) offers three cost functions — mean absolute error,
mean squared error and binary cross-entropy — and says cross-entropy penalises confident but
wrong predictions much more. How large is the gradient each gives a confidently wrong
prediction, and how do they compare when they train the same cat/not-cat network?

**Command** (from the repository root; regenerates every plot and this README):

```bash
.venv/bin/python experiments/losses/run.py{tiny}
```

## Setup

- Gradients: logits z = log(ŷ/(1 − ŷ)) for ŷ from 10⁻⁴ to 0.99 and target y = 1, in float64,
  through `gdtorch.nn.Sigmoid` and `gdtorch.nn.MAELoss` / `MSELoss` / `BCELoss`
  (`reduction="sum"`), backpropagated by gdtorch's hand-written backward passes; the column
  headers give the hand-derived closed forms, which the measured values match to
  {sections["closed_form_error"]} (largest relative difference).
- Data: `SyntheticCats` through `CatDataModule(mode="minibatch")` (seed {args.seed}):
  {args.n_train} training, {args.n_val} validation, {args.n_test} test images of
  {args.image_size}×{args.image_size} pixels, mini-batches of {args.batch_size}, reshuffled
  every epoch.
- Network: `gdtorch.nn.MLP({sizes}, output_activation="sigmoid")` (ReLU hidden layers), one
  set of initial weights drawn with `torch.manual_seed({args.seed})` and loaded into every run;
  `gdtorch.optim.GradientDescent` (no momentum, constant η), {args.epochs} epochs; a plain
  training loop.
- Learning rates: the three losses' gradients differ in scale (see the table below), so one
  shared η would favour one of them. Each loss is trained at every η in {args.lrs}, and the η
  with the best validation accuracy averaged over the last {WINDOW} epochs is kept (the curves
  jump from epoch to epoch, so a single epoch would be a noisy choice; test images are not used
  to choose). Test accuracy is that of the weights after the last epoch.
- Run: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()};
  whole study {sections["wall"]} s wall time.

## Results

### The gradient at the logit of a confidently wrong prediction

{sections["gradient_table"]}

![|dC/dz| against the prediction](gradients.png)

### Learning-rate grid: validation accuracy, mean of the last {WINDOW} epochs

{sections["sweep_table"]}

### Training with each loss at its chosen η

{sections["results_table"]}

"own training cost": each loss's value on the whole training set, so the three columns are on
different scales; "confidently wrong": training images with |ŷ − y| > {CONFIDENTLY_WRONG:g}.

![validation accuracy and relative training cost against epochs](convergence.png)

## What the numbers show

{sections["findings"]}
"""
    (out / "README.md").write_text(text)


def main(argv: list[str] | None = None) -> None:
    """Measure the gradients, train every (loss, η), draw the plots and rewrite the README."""
    started = time.perf_counter()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    table_points = torch.tensor(PROBABILITIES, dtype=torch.float64)
    curve_points = torch.logspace(-4, -0.005, 200, dtype=torch.float64)
    table_gradients = logit_gradients(table_points)
    error = max(
        ((table_gradients[name] - form(table_points)).abs() / form(table_points)).max().item()
        for name, form in CLOSED_FORMS.items()
    )
    save(gradients_figure(logit_gradients(curve_points), curve_points), args.out / "gradients.png")

    data = datamodule("minibatch", args)
    torch.manual_seed(args.seed)
    init = copy.deepcopy(
        MLP([data.input_size, *HIDDEN, 1], output_activation="sigmoid").state_dict()
    )
    runs = [train(loss, lr, data, init, args) for loss in LOSSES for lr in args.lrs]
    chosen = [best(runs, loss) for loss in LOSSES]
    test = {}
    for run in chosen:
        y_hat, y = predictions(run.net, train_eval_loader(data))
        wrong = ((y_hat - y).abs() > CONFIDENTLY_WRONG).sum().item()
        test[run.loss] = {
            "test_acc": accuracy(*predictions(run.net, data.test_dataloader())),
            "wrong": wrong,
        }
    save(convergence_figure(chosen, args), args.out / "convergence.png")

    sections = {
        "closed_form_error": f"{error:.1e}",
        "gradient_table": gradient_table(table_gradients, table_points),
        "sweep_table": sweep_table(runs, args.lrs),
        "results_table": results_table(chosen, test, args.target_acc),
        "findings": findings(table_gradients, chosen, test, args.target_acc, args.n_test),
        "wall": f"{time.perf_counter() - started:.0f}",
    }
    write_readme(args.out, args, sections)
    print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
