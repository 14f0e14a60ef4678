"""Batch vs stochastic vs mini-batch gradient descent from the same initial weights.

The tutorial's section 6: batch gradient descent computes every update from the whole training
set, stochastic gradient descent from one example, mini-batch gradient descent from a small
batch. This study trains one network (``MLP([n, 20, 7, 5, 1])``, binary cross-entropy on logits,
``GradientDescent``) from the same initial weights on the same ``SyntheticCats`` split in the
three modes for the same number of epochs, in a plain loop so that every update can be timed and
recorded. It plots the training loss against epochs, updates and wall-clock time, reports the
test accuracy, and draws the three weight paths on one shared plane of the cost landscape, and
rewrites the README beside it with the numbers of the run.

Run from the repository root::

    .venv/bin/python experiments/gd_modes/run.py
"""

from __future__ import annotations

import argparse
import copy
import datetime
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torch.nn.utils import parameters_to_vector

from gdtorch.data import CatDataModule, TensorBatchLoader
from gdtorch.landscape import filter_normalized_directions, loss_surface, project
from gdtorch.nn import MLP, BCEWithLogitsLoss
from gdtorch.optim import GradientDescent

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/common.py
from common import datamodule, machine, save, train_eval_loader

HERE = Path(__file__).resolve().parent
MODES = ("batch", "minibatch", "stochastic")
LABELS = {"batch": "batch", "minibatch": "mini-batch", "stochastic": "stochastic"}
COLOURS = {"batch": "tab:blue", "minibatch": "tab:green", "stochastic": "tab:red"}
HIDDEN = (20, 7, 5)


@dataclass
class Arm:
    """What one gradient-descent mode did: its curves, test accuracy and weight path.

    Every list holds one value per evaluation: before training, then after each epoch.
    """

    mode: str
    lr: float
    batch_size: int
    updates: list[int]
    seconds: list[float]
    train_loss: list[float]
    val_acc: list[float]
    test_acc: float
    path: Tensor
    record_every: int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--tiny`` shrinks every size so the study runs in seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the PNGs and README")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
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
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.tiny:
        args.epochs, args.n_train, args.n_val, args.n_test = 2, 64, 32, 32
        args.image_size, args.batch_size, args.points, args.resolution = 16, 16, 4, 5
    return args


def evaluate(
    net: torch.nn.Module, loss_fn: torch.nn.Module, loader: TensorBatchLoader
) -> tuple[float, float]:
    """Mean loss and accuracy (logit > 0 means cat) of ``net`` over ``loader``."""
    total, correct, count = 0.0, 0.0, 0
    with torch.no_grad():
        for images, targets in loader:
            logits = net(images)
            targets = targets.view_as(logits)
            total += loss_fn(logits, targets).item() * len(targets)
            correct += ((logits > 0).float() == targets).sum().item()
            count += len(targets)
    return total / count, correct / count


def train(data: CatDataModule, lr: float, init: dict[str, Tensor], args: argparse.Namespace) -> Arm:
    """Train from the weights ``init`` in ``data.mode`` for ``args.epochs`` epochs.

    The clock runs only while batches are drawn and updates are made; evaluating and recording
    weights (every ``record_every`` updates, and at the end) happen with the clock stopped.
    """
    mode = data.mode
    net = MLP([data.input_size, *HIDDEN, 1])
    net.load_state_dict(init)
    loss_fn = BCEWithLogitsLoss()
    optimizer = GradientDescent(net.parameters(), lr=lr)
    loader = data.train_dataloader()
    train_loader, val_loader = train_eval_loader(data), data.val_dataloader()
    record_every = max(1, args.epochs * len(loader) // args.points)
    path = [parameters_to_vector(net.parameters()).detach().clone()]
    updates, seconds, train_loss, val_acc = [], [], [], []
    count, elapsed = 0, 0.0
    for epoch in range(args.epochs + 1):
        if epoch:  # epoch 0 only evaluates the initial weights
            start = time.perf_counter()
            for images, targets in loader:
                optimizer.zero_grad()
                loss_fn(net(images), targets.view(-1, 1)).backward()
                optimizer.step()
                count += 1
                if count % record_every == 0:
                    paused = time.perf_counter()
                    path.append(parameters_to_vector(net.parameters()).detach().clone())
                    start += time.perf_counter() - paused
            elapsed += time.perf_counter() - start
        updates.append(count)
        seconds.append(elapsed)
        train_loss.append(evaluate(net, loss_fn, train_loader)[0])
        val_acc.append(evaluate(net, loss_fn, val_loader)[1])
    if updates[-1] % record_every:
        path.append(parameters_to_vector(net.parameters()).detach().clone())
    print(
        f"{mode}: lr={lr} loss {train_loss[0]:.4f} -> {train_loss[-1]:.4f} "
        f"in {updates[-1]} updates, {seconds[-1]:.1f} s",
        flush=True,
    )
    return Arm(
        mode=mode,
        lr=lr,
        batch_size=loader.batch_size,
        updates=updates,
        seconds=seconds,
        train_loss=train_loss,
        val_acc=val_acc,
        test_acc=evaluate(net, loss_fn, data.test_dataloader())[1],
        path=torch.stack(path),
        record_every=record_every,
    )


def principal_plane(paths: list[Tensor], origin: Tensor) -> tuple[Tensor, Tensor]:
    """The two orthonormal directions along which the displacements ``θ − θ₀`` vary most.

    The top two right singular vectors of the stacked displacements of every recorded point of
    every path (PCA without centring, so that the plane passes through θ₀), each signed so that
    the paths' end points lie on its positive side on average.
    """
    displacements = torch.cat([path[1:] - origin for path in paths]).to(torch.float64)
    _, _, vh = torch.linalg.svd(displacements, full_matrices=False)
    ends = torch.stack([path[-1] - origin for path in paths]).to(torch.float64)
    signs = torch.sign((ends @ vh[:2].T).sum(0))
    signs[signs == 0] = 1.0
    d1, d2 = (vh[:2] * signs[:, None]).to(origin.dtype)
    return d1, d2


def share_in_plane(point: Tensor, origin: Tensor, directions: tuple[Tensor, Tensor]) -> float:
    """``‖P(θ − θ₀)‖ / ‖θ − θ₀‖``: how much of a displacement the plane holds (1 = all)."""
    displacement = (point - origin).to(torch.float64)
    alpha, beta = project(point, origin, directions)
    in_plane = alpha * directions[0].to(torch.float64) + beta * directions[1].to(torch.float64)
    return (in_plane.norm() / displacement.norm()).item()


def plane_grid(
    coordinates: list[Tensor], resolution: int, span: float | None
) -> tuple[Tensor, Tensor]:
    """Grids of ``α`` and ``β`` that hold θ₀ and every projected path.

    With ``span=None`` the grids fit the paths with a 15% margin; otherwise both are
    ``[−r, r]`` with ``r = max(span, 1.1 max |coordinate|)``.
    """
    points = torch.cat([*coordinates, torch.zeros(1, 2, dtype=torch.float64)])
    if span is None:
        low, high = points.min(0).values, points.max(0).values
        margin = 0.15 * (high - low).clamp_min(1e-12)
        low, high = (low - margin).tolist(), (high + margin).tolist()
    else:
        radius = max(span, 1.1 * points.abs().max().item())
        low, high = [-radius, -radius], [radius, radius]
    return tuple(torch.linspace(low[i], high[i], resolution, dtype=torch.float64) for i in range(2))


def landscape(
    arms: list[Arm],
    net: torch.nn.Module,
    batch: tuple[Tensor, Tensor],
    directions: tuple[Tensor, Tensor],
    resolution: int,
    span: float | None,
    title: str,
) -> Figure:
    """The training cost on the plane ``θ₀ + α d₁ + β d₂`` with every arm's path drawn on it.

    ``span`` sets the grid as :func:`plane_grid` does.
    """
    origin = arms[0].path[0]
    coordinates = [project(arm.path, origin, directions) for arm in arms]
    alphas, betas = plane_grid(coordinates, resolution, span)
    surface = loss_surface(net, BCEWithLogitsLoss(), [batch], directions, origin, alphas, betas)
    figure = Figure(figsize=(6.4, 5.0))
    ax = figure.subplots()
    x, y, z = alphas.numpy(), betas.numpy(), surface.T.numpy()
    filled = ax.contourf(x, y, z, levels=30, cmap="viridis")
    ax.contour(x, y, z, levels=15, colors="black", linewidths=0.3, alpha=0.5)
    figure.colorbar(filled, ax=ax, label="training cost C (BCE)")
    for arm, path in zip(arms, coordinates, strict=True):
        ax.plot(
            *path.T.numpy(),
            "-o",
            color=COLOURS[arm.mode],
            markersize=2.5,
            linewidth=1.2,
            label=f"{LABELS[arm.mode]} (a point every {arm.record_every} update(s))",
        )
        ax.plot(
            *path[-1].numpy(), "*", color=COLOURS[arm.mode], markersize=12, markeredgecolor="white"
        )
    ax.plot(0.0, 0.0, "s", color="orange", markersize=7, label="θ₀ (shared start)")
    ax.set_xlabel("α (along d₁)")
    ax.set_ylabel("β (along d₂)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="best", fontsize=7)
    figure.tight_layout()
    return figure


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
        axes[1].plot(arm.updates[1:], arm.train_loss[1:], **style)
        axes[2].plot(arm.seconds, arm.train_loss, **style)
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


def first_below(arm: Arm, level: float) -> int | None:
    """Index of the first evaluation at which ``arm``'s training loss is at most ``level``."""
    return next((i for i, loss in enumerate(arm.train_loss) if loss <= level), None)


def rises(values: list[float]) -> int:
    """How many times a value is larger than the one before it."""
    return sum(later > earlier for earlier, later in itertools.pairwise(values))


def each(arms: list[Arm], fmt) -> str:
    """``fmt(arm) (mode)`` for every arm, joined by commas."""
    return ", ".join(f"{fmt(arm)} ({LABELS[arm.mode]})" for arm in arms)


def table(arms: list[Arm], shares: dict[str, tuple[float, float]]) -> str:
    """The README's Markdown table of measured numbers, one row per mode."""
    lines = [
        "| mode | η | batch size | updates | training time (s) | ms / update | "
        "final training loss | final val acc | test acc | in PCA plane | in random plane |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm in arms:
        pca, rand = shares[arm.mode]
        lines.append(
            f"| {LABELS[arm.mode]} | {arm.lr:g} | {arm.batch_size} | {arm.updates[-1]} | "
            f"{arm.seconds[-1]:.1f} | {1000 * arm.seconds[-1] / arm.updates[-1]:.3g} | "
            f"{arm.train_loss[-1]:.4f} | {arm.val_acc[-1]:.3f} | {arm.test_acc:.3f} | "
            f"{pca:.0%} | {rand:.1%} |"
        )
    return "\n".join(lines)


def findings(arms: list[Arm], shares: dict[str, tuple[float, float]]) -> str:
    """Interpretation sentences computed from the numbers, so they always match the table."""
    batch = next(arm for arm in arms if arm.mode == "batch")
    level = batch.train_loss[-1]
    reached = []
    for arm in arms:
        if arm is batch:
            continue
        i = first_below(arm, level)
        reached.append(
            f"{LABELS[arm.mode]} never reached it"
            if i is None
            else f"{LABELS[arm.mode]} reached it by the end of epoch {i} "
            f"({arm.updates[i]} updates, {arm.seconds[i]:.1f} s)"
        )
    ranked = " ≤ ".join(
        f"{LABELS[a.mode]} ({a.train_loss[-1]:.4f})"
        for a in sorted(arms, key=lambda a: a.train_loss[-1])
    )
    pca = min(share[0] for share in shares.values())
    rand = max(share[1] for share in shares.values())
    lines = [
        f"- **Per epoch** (the same examples seen): after {len(batch.updates) - 1} epochs the "
        f"training loss ranks {ranked}; test accuracy "
        + each(arms, lambda a: f"{a.test_acc:.3f}")
        + ".",
        f"- **Per update**: batch gradient descent's {batch.updates[-1]} full-gradient updates "
        f"brought the training loss to {level:.4f}; " + "; ".join(reached) + ".",
        "- **Per second**: an update took "
        + each(arms, lambda a: f"{1000 * a.seconds[-1] / a.updates[-1]:.3g} ms")
        + "; an epoch "
        + each(arms, lambda a: f"{a.seconds[-1] / (len(a.seconds) - 1):.2f} s")
        + ".",
        "- **Ups**: the epoch-end training loss rose from one epoch to the next "
        + each(arms, lambda a: f"{rises(a.train_loss)} times")
        + ". Batch gradient descent follows the exact gradient, so each of its rises is a step "
        "too long for the local curvature; the other two also follow sampled, noisy gradients.",
        f"- **Landscape**: the shared PCA plane holds at least {pca:.0%} of every mode's final "
        f"displacement θ_T − θ₀, the random filter-normalised plane at most {rand:.1%}, which "
        "is why the paths barely leave θ₀ on the random plane.",
    ]
    return "\n".join(lines)


def write_readme(
    out: Path,
    args: argparse.Namespace,
    arms: list[Arm],
    shares: dict[str, tuple[float, float]],
    n_parameters: int,
    wall: float,
) -> None:
    """Rewrite ``out/README.md`` with the setup, the table, the plots and the findings."""
    sizes = [3 * args.image_size**2, *HIDDEN, 1]
    tiny = " --tiny" if args.tiny else ""
    text = f"""# Batch vs stochastic vs mini-batch gradient descent

**Question.** The tutorial (section 6) says batch gradient descent takes accurate but expensive
steps, stochastic gradient descent cheap but noisy ones, and mini-batch sits between. Starting
from the *same* initial weights on the *same* data, how do the three compare per epoch, per
update and per second of training, in test accuracy, and where do their paths go on the cost
landscape?

**Command** (from the repository root; regenerates every plot and this README):

```bash
.venv/bin/python experiments/gd_modes/run.py{tiny}
```

## Setup

- Data: `SyntheticCats` through `CatDataModule` (seed {args.seed}): {args.n_train} training,
  {args.n_val} validation, {args.n_test} test images of {args.image_size}×{args.image_size}
  pixels, normalised per channel with the training statistics.
- Network: `gdtorch.nn.MLP({sizes})` (ReLU, {n_parameters:,} parameters), one set of initial
  weights drawn with `torch.manual_seed({args.seed})` and loaded into every mode; loss
  `gdtorch.nn.BCEWithLogitsLoss`; optimiser `gdtorch.optim.GradientDescent` (no momentum, no
  weight decay, constant η); {args.epochs} epochs for every mode; a plain training loop.
- Modes (`CatDataModule(mode=...)`): batch = all {args.n_train} examples per update,
  mini-batch = {args.batch_size}, stochastic = 1; mini-batch and stochastic reshuffle every epoch.
- Learning rates: η = {args.lr_batch:g} (batch), {args.lr_minibatch:g} (mini-batch),
  {args.lr_stochastic:g} (stochastic). Why the script's defaults 0.3, 0.03, 0.0005: in a 30-epoch
  pilot on this setup mini-batch trained at η = 0.01, 0.03 and 0.1 (0.01 slowly, 0.03 and 0.1
  with occasional loss spikes) and takes the middle one; stochastic takes the mini-batch η
  scaled with the batch size (η ∝ batch size: 0.03 / 64 ≈ 0.0005), as a one-example gradient
  is far noisier; batch takes the one of 0.1, 0.3 and 1.0 that reached the lowest training
  loss in the pilot (η = 1 oscillated without progress; linear scaling would have given 0.9).
- Timing: the clock runs only while batches are drawn and updates are made (not while the loss
  is evaluated or weights recorded); one process, {args.threads} torch thread(s).
- Landscape: origin θ₀ = the shared initial weights; each mode's weights recorded every
  `k` updates (k = total updates / {args.points}) and at the end. The plane is spanned by the top
  two principal directions of all three paths' displacements θ − θ₀ (Li et al. 2018, §7:
  random directions miss optimisation paths), the same plane for all three; the cost
  C(θ₀ + α d₁ + β d₂) on a {args.resolution}×{args.resolution} grid is computed with
  `gdtorch.lightning.landscape.loss_surface` on the whole training set and the paths are placed
  with `project`. For comparison, the same paths on the plane of two random filter-normalised
  directions (`filter_normalized_directions`, seed {args.seed}) over α, β ∈ [−1, 1] (the
  `LossLandscape` callback instead draws the plane through θ₀ and the path's end).
- Run: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()};
  whole study {wall:.0f} s wall time. The machine is shared, so times are indicative.

## Results

{table(arms, shares)}

"in PCA / random plane": the share ‖P(θ_T − θ₀)‖ / ‖θ_T − θ₀‖ of the final displacement that
lies in that plane.

![training loss against epochs, updates and time](loss_curves.png)

![the three paths on the shared PCA plane](landscape_pca.png)

![the three paths on a random filter-normalised plane](landscape_random.png)

## What the numbers show

{findings(arms, shares)}

The landscape is a 2-D slice: a path point's colour is the cost at its projection, not at the
weights themselves, and the PCA plane is fitted to these very paths.
"""
    (out / "README.md").write_text(text)


def main(argv: list[str] | None = None) -> None:
    """Train the three modes, draw the plots and rewrite the README."""
    started = time.perf_counter()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    net = MLP([3 * args.image_size**2, *HIDDEN, 1])
    init = copy.deepcopy(net.state_dict())
    lrs = {"batch": args.lr_batch, "minibatch": args.lr_minibatch, "stochastic": args.lr_stochastic}
    data = {mode: datamodule(mode, args) for mode in MODES}
    arms = [train(data[mode], lrs[mode], init, args) for mode in MODES]

    images, targets = next(iter(data["batch"].train_dataloader()))
    batch = (images, targets.view(-1, 1))
    origin = arms[0].path[0]
    planes = {
        "pca": principal_plane([arm.path for arm in arms], origin),
        "random": filter_normalized_directions(net, torch.Generator().manual_seed(args.seed)),
    }
    shares = {
        arm.mode: tuple(
            share_in_plane(arm.path[-1], origin, planes[name]) for name in ("pca", "random")
        )
        for arm in arms
    }
    save(curves(arms), args.out / "loss_curves.png")
    views = {  # plane: (grid span, title)
        "pca": (None, "d₁, d₂: the paths' two principal directions"),
        "random": (1.0, "d₁, d₂: random, filter-normalised (span 1)"),
    }
    for name, directions in planes.items():
        span, title = views[name]
        figure = landscape(arms, net, batch, directions, args.resolution, span, title)
        save(figure, args.out / f"landscape_{name}.png")
    n_parameters = sum(p.numel() for p in net.parameters())
    write_readme(args.out, args, arms, shares, n_parameters, time.perf_counter() - started)
    print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
