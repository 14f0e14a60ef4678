"""How hard is ``SyntheticCats``? Logistic regression vs a 4-layer MLP on raw pixels.

The classic cat/not-cat assignment this imitates gets about 70% test accuracy from logistic
regression and about 80% from an MLP [12288, 20, 7, 5, 1]. This script measures both on
``SyntheticCats`` with plain ``torch.nn`` and ``torch.optim.Adam`` (so it does not depend on the
rest of gdtorch), over several seeds, and prints a Markdown table. It also times the generator
(with one and two CPU threads) and saves a grid of examples, cats first, to ``examples.png``.

Run from the repository root::

    .venv/bin/python experiments/data_difficulty/run.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

from gdtorch.data import SyntheticCats

HERE = Path(__file__).resolve().parent


def generation_rate(image_size: int, n: int = 5000, repeats: int = 3) -> float:
    """Images per second drawn by ``SyntheticCats`` (best of ``repeats`` timings)."""
    SyntheticCats(256, image_size)  # warm-up
    best = float("inf")
    for seed in range(repeats):
        start = time.perf_counter()
        SyntheticCats(n, image_size, seed=seed)
        best = min(best, time.perf_counter() - start)
    return n / best


def models(input_size: int) -> dict[str, nn.Module]:
    """The two models compared, both ending in one logit."""
    return {
        "logistic regression": nn.Linear(input_size, 1),
        f"MLP [{input_size}, 20, 7, 5, 1]": nn.Sequential(
            nn.Linear(input_size, 20),
            nn.ReLU(),
            nn.Linear(20, 7),
            nn.ReLU(),
            nn.Linear(7, 5),
            nn.ReLU(),
            nn.Linear(5, 1),
        ),
    }


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return ((model(x).squeeze(1) > 0).float() == y).float().mean().item()


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, args, seed: int) -> None:
    """Mini-batch Adam on binary cross-entropy (with logits) for ``args.epochs`` epochs."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(args.epochs):
        for idx in torch.randperm(len(x), generator=generator).split(args.batch_size):
            optimizer.zero_grad()
            loss_fn(model(x[idx]).squeeze(1), y[idx]).backward()
            optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    args = parser.parse_args()

    threads = torch.get_num_threads()
    for n_threads in sorted({1, min(2, threads)}):
        torch.set_num_threads(n_threads)
        print(
            f"generation, {n_threads} thread(s): {generation_rate(args.image_size):,.0f} images/s"
        )
    torch.set_num_threads(threads)

    results: dict[str, list[tuple[float, float]]] = {}
    for seed in args.seeds:
        start = time.perf_counter()
        train = SyntheticCats(args.n_train, args.image_size, seed=2 * seed)
        test = SyntheticCats(args.n_test, args.image_size, seed=2 * seed + 1)
        generated = time.perf_counter() - start
        mean = train.images.mean(dim=(0, 2, 3), keepdim=True)
        std = train.images.std(dim=(0, 2, 3), keepdim=True)
        x_train = ((train.images - mean) / std).flatten(1)
        x_test = ((test.images - mean) / std).flatten(1)
        for name in models(x_train.shape[1]):
            torch.manual_seed(seed)
            model = models(x_train.shape[1])[name]
            fit(model, x_train, train.targets, args, seed)
            scores = (
                accuracy(model, x_train, train.targets),
                accuracy(model, x_test, test.targets),
            )
            results.setdefault(name, []).append(scores)
            print(
                f"seed {seed} ({generated:.1f}s to generate) {name}: "
                f"train {scores[0]:.3f} test {scores[1]:.3f}",
                flush=True,
            )

    print(
        f"\n{args.n_train} train / {args.n_test} test images at {args.image_size}x"
        f"{args.image_size}, seeds {args.seeds}, Adam lr={args.lr}, batch {args.batch_size}, "
        f"{args.epochs} epochs\n"
    )
    print("| model | train accuracy | test accuracy (mean ± sd) |\n| --- | --- | --- |")
    for name, scores in results.items():
        train_acc = [s[0] for s in scores]
        test_acc = [s[1] for s in scores]
        spread = statistics.stdev(test_acc) if len(test_acc) > 1 else 0.0
        print(
            f"| {name} | {statistics.mean(train_acc):.3f} | "
            f"{statistics.mean(test_acc):.3f} ± {spread:.3f} |"
        )

    examples = SyntheticCats(32, args.image_size, seed=0)
    order = torch.argsort(examples.targets, descending=True, stable=True)
    torchvision.utils.save_image(examples.images[order], HERE / "examples.png", nrow=8, padding=2)


if __name__ == "__main__":
    main()
