"""How hard is ``SyntheticCats``? Logistic regression vs a 4-layer MLP on raw pixels.

The classic cat/not-cat assignment this imitates gets about 70% test accuracy from logistic
regression and about 80% from an MLP [12288, 20, 7, 5, 1]. This study measures both on
``SyntheticCats`` with plain ``torch.nn`` and ``torch.optim.Adam`` (so it does not depend on the
rest of gdtorch), over several seeds. It also measures how fast the generator draws images (with
one and two CPU threads), saves a grid of examples, cats first, to ``examples.png``, and writes
``results.json`` and the README rendered from it.

Run from the repository root::

    .venv/bin/python -m experiments.data_difficulty
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from experiments.common import classify, run_record, study_parser, train_epochs
from experiments.render import publish
from gdtorch.data import SyntheticCats

HERE = Path(__file__).resolve().parent
HIDDEN = {"logistic": [], "mlp": [20, 7, 5]}


class Shuffled:
    """Mini-batches of ``(x, y)``, in a new order drawn from ``generator`` at each pass."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.x, self.y, self.batch_size, self.generator = x, y, batch_size, generator

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for idx in torch.randperm(len(self.x), generator=self.generator).split(self.batch_size):
            yield self.x[idx], self.y[idx]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--tiny`` shrinks every size."""
    parser = study_parser(__doc__.splitlines()[0], HERE)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--generated", type=int, default=5000, help="images per speed timing")
    parser.add_argument("--repeats", type=int, default=3, help="speed timings, the best kept")
    args = parser.parse_args(argv)
    if args.tiny:
        args.n_train, args.n_test, args.image_size, args.seeds = 64, 32, 16, args.seeds[:1]
        args.epochs, args.generated, args.repeats = 2, 256, 1
    return args


def generation_rate(image_size: int, n: int, repeats: int) -> float:
    """Images per second drawn by ``SyntheticCats`` (best of ``repeats`` timings)."""
    SyntheticCats(256, image_size)  # warm-up
    best = float("inf")
    for seed in range(repeats):
        start = time.perf_counter()
        SyntheticCats(n, image_size, seed=seed)
        best = min(best, time.perf_counter() - start)
    return n / best


def network(model: str, input_size: int) -> nn.Module:
    """``model``'s network in plain ``torch.nn``: linear layers with ReLUs between, one logit."""
    sizes = [input_size, *HIDDEN[model], 1]
    linears = [nn.Linear(fan_in, fan_out) for fan_in, fan_out in itertools.pairwise(sizes)]
    if len(linears) == 1:
        return linears[0]
    hidden = [layer for linear in linears[:-1] for layer in (linear, nn.ReLU())]
    return nn.Sequential(*hidden, linears[-1])


def main(argv: list[str] | None = None) -> None:
    """Time the generator, train both models at every seed, write the results and README."""
    started = time.perf_counter()
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    generation = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rate = generation_rate(args.image_size, args.generated, args.repeats)
        generation.append({"threads": threads, "images_per_second": rate})
        print(f"generation, {threads} thread(s): {rate:,.0f} images/s", flush=True)
    torch.set_num_threads(args.threads)

    scores: dict[str, dict[str, list[float]]] = {m: {"train": [], "test": []} for m in HIDDEN}
    for seed in args.seeds:
        train = SyntheticCats(args.n_train, args.image_size, seed=2 * seed)
        test = SyntheticCats(args.n_test, args.image_size, seed=2 * seed + 1)
        mean = train.images.mean(dim=(0, 2, 3), keepdim=True)
        std = train.images.std(dim=(0, 2, 3), keepdim=True)
        x_train = ((train.images - mean) / std).flatten(1)
        x_test = ((test.images - mean) / std).flatten(1)
        torch.manual_seed(seed)  # each model's initial weights, the same for every run
        nets = {model: network(model, x_train.shape[1]) for model in HIDDEN}
        for model, net in nets.items():
            batches = Shuffled(
                x_train, train.targets, args.batch_size, torch.Generator().manual_seed(seed)
            )
            optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
            train_epochs(net, nn.BCEWithLogitsLoss(), optimizer, batches, args.epochs)
            for split, x, y in (("train", x_train, train.targets), ("test", x_test, test.targets)):
                scores[model][split].append(classify(net, [(x, y)]).accuracy)
            print(
                f"seed {seed} {model}: train {scores[model]['train'][-1]:.3f} "
                f"test {scores[model]['test'][-1]:.3f}",
                flush=True,
            )

    examples = SyntheticCats(32, args.image_size, seed=0)
    order = torch.argsort(examples.targets, descending=True, stable=True)
    torchvision.utils.save_image(
        examples.images[order], args.out / "examples.png", nrow=8, padding=2
    )
    publish("data_difficulty", results(args, generation, scores, started), args.out)


def results(
    args: argparse.Namespace,
    generation: list[dict[str, float]],
    scores: dict[str, dict[str, list[float]]],
    started: float,
) -> dict[str, Any]:
    """Everything the README says, as numbers."""
    input_size = 3 * args.image_size**2
    gaps = [mlp - linear for linear, mlp in zip(*(scores[m]["test"] for m in HIDDEN), strict=True)]
    models = []
    for model, split in scores.items():
        test = torch.tensor(split["test"], dtype=torch.float64)
        models.append(
            {
                "model": model,
                "sizes": [input_size, *HIDDEN[model], 1],
                "train_acc": split["train"],
                "test_acc": split["test"],
                "train_acc_mean": sum(split["train"]) / len(split["train"]),
                "test_acc_mean": test.mean().item(),
                "test_acc_sd": test.std().item() if len(test) > 1 else 0.0,
            }
        )
    settings = {key: value for key, value in vars(args).items() if key != "out"}
    return {
        "run": run_record(started),
        "settings": settings,
        "generation": generation,
        "models": models,
        "test_gap": {"min": min(gaps), "max": max(gaps)},
    }
