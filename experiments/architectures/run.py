"""Logistic regression vs [n, 7, 1] vs [n, 20, 7, 5, 1]: the classic cat/not-cat comparison.

The classic assignment behind the tutorial trains three networks on 64×64 cat photos: logistic
regression on raw pixels, a 2-layer network ``[12288, 7, 1]`` and a 4-layer network
``[12288, 20, 7, 5, 1]``. This study trains the same three on ``SyntheticCats`` (and on CIFAR-10
cat-vs-rest when a copy is given), each through gdtorch's own pipeline — ``gdtorch.train.run``
on a Hydra config composed from ``conf/``, exactly what ``gdtorch-train model=...`` runs — over
several seeds, and writes ``results.json`` and the README rendered from it.

Run from the repository root::

    .venv/bin/python -m experiments.architectures
    GDTORCH_CIFAR10_ROOT=<folder> .venv/bin/python -m experiments.architectures

``GDTORCH_CIFAR10_ROOT`` (or ``--cifar-root``) is the folder that holds
``cifar-10-batches-py``; without one the CIFAR-10 part is skipped and the README says so.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from hydra import compose, initialize_config_dir
from matplotlib.figure import Figure

from experiments.common import SCORING_BATCH, classify, run_record, save, study_parser
from experiments.render import publish
from gdtorch.cli import CONFIG_DIR
from gdtorch.data import TensorBatchLoader
from gdtorch.train import run

HERE = Path(__file__).resolve().parent
MODELS = {"logistic": "logistic regression", "two_layer": "2-layer", "four_layer": "4-layer"}
HIDDEN = {"logistic": [], "two_layer": [7], "four_layer": [20, 7, 5]}
COLOURS = {"logistic": "tab:grey", "two_layer": "tab:orange", "four_layer": "tab:blue"}
CIFAR_ENV = "GDTORCH_CIFAR10_ROOT"


class AccuracyHistory(L.Callback):
    """Records train and validation accuracy after every training epoch, and those of the
    weights that are tested (the best checkpoint), into a JSON file.

    Accuracies are computed here, on the datamodule's whole training and validation splits,
    so they do not depend on the order in which Lightning logs its metrics.

    Args:
        path: where to write ``{"epochs": [{"train_acc", "val_acc"}, ...], "tested_train_acc",
            "tested_val_acc", "image_size", "split_sizes"}``.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.epochs: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        data = trainer.datamodule
        self.epochs.append(
            {
                "train_acc": _accuracy(pl_module, data, data.train_set),
                "val_acc": _accuracy(pl_module, data, data.val_set),
            }
        )

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        data = trainer.datamodule
        record = {
            "epochs": self.epochs,
            "tested_train_acc": _accuracy(pl_module, data, data.train_set),
            "tested_val_acc": _accuracy(pl_module, data, data.val_set),
            "image_size": data.image_size,
            "split_sizes": [len(split) for split in (data.train_set, data.val_set, data.test_set)],
        }
        self.path.write_text(json.dumps(record))


def _accuracy(module: L.LightningModule, data: Any, split: Any) -> float:
    """Accuracy of ``module`` (``P(cat) > ½``) on ``split``, normalised like training."""
    batches = TensorBatchLoader(
        split.images, split.targets, SCORING_BATCH, normalize=(data.mean, data.std)
    )
    return classify(module, batches, probability=module.cat_probability).accuracy


@dataclass
class Result:
    """One trained model: its final metrics from ``run`` and its per-epoch history."""

    model: str
    seed: int
    metrics: dict[str, float]
    history: list[dict[str, float]]
    train_acc: float
    val_acc: float
    seconds: float
    image_size: int
    split_sizes: list[int]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--tiny`` shrinks every size."""
    parser = study_parser(__doc__.splitlines()[0], HERE)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--lr-logistic", type=float, default=0.003)
    parser.add_argument("--lr-two-layer", type=float, default=0.03)
    parser.add_argument("--lr-four-layer", type=float, default=0.03)
    parser.add_argument(
        "--cifar-root",
        type=Path,
        default=os.environ.get(CIFAR_ENV),
        help=f"folder holding cifar-10-batches-py (default: ${CIFAR_ENV})",
    )
    args = parser.parse_args(argv)
    args.synthetic_data, args.cifar_data = [], []
    if args.tiny:
        args.seeds, args.max_epochs = args.seeds[:1], 2
        args.synthetic_data = [
            "data.n_train=64",
            "data.n_val=32",
            "data.n_test=32",
            "data.image_size=16",
        ]
        args.cifar_data = ["data.n_train=24", "data.n_val=8", "data.n_test=8"]
    return args


def cifar_skipped(root: Path | None) -> str | None:
    """``None`` when CIFAR-10 can be read from ``root``, else why not: ``unset`` or ``missing``."""
    if root is None:
        return "unset"
    if not (root / "cifar-10-batches-py").is_dir():
        return "missing"
    return None


def train_one(
    model: str, seed: int, lr: float, data_overrides: list[str], args: argparse.Namespace
) -> Result:
    """``gdtorch.train.run`` on ``conf/train.yaml`` with ``model``, ``seed`` and ``lr``."""
    with tempfile.TemporaryDirectory() as tmp:
        history_path = Path(tmp) / "history.json"
        overrides = [
            f"paths.output_dir={tmp}",
            f"model={model}",
            f"seed={seed}",
            f"optimizer.lr={lr}",
            "trainer=cpu",
            f"trainer.max_epochs={args.max_epochs}",
            "~logger",
            "~callbacks.early_stopping",
            "callbacks.checkpoint.monitor=val/acc",
            "callbacks.checkpoint.mode=max",
            "+trainer.enable_progress_bar=false",
            "+trainer.enable_model_summary=false",
            f"+callbacks.history._target_={__name__}.{AccuracyHistory.__qualname__}",
            f"+callbacks.history.path={history_path}",
            *data_overrides,
        ]
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        started = time.perf_counter()
        metrics = run(cfg)
        seconds = time.perf_counter() - started
        record = json.loads(history_path.read_text())
    return Result(
        model=model,
        seed=seed,
        metrics=metrics,
        history=record["epochs"],
        train_acc=record["tested_train_acc"],
        val_acc=record["tested_val_acc"],
        seconds=seconds,
        image_size=record["image_size"],
        split_sizes=record["split_sizes"],
    )


def learning_rates(args: argparse.Namespace) -> dict[str, float]:
    return {
        "logistic": args.lr_logistic,
        "two_layer": args.lr_two_layer,
        "four_layer": args.lr_four_layer,
    }


def train_all(data_overrides: list[str], args: argparse.Namespace) -> list[Result]:
    """Every model at every seed on one data source."""
    lrs = learning_rates(args)
    results = []
    for model in MODELS:
        for seed in args.seeds:
            result = train_one(model, seed, lrs[model], data_overrides, args)
            print(
                f"{model} seed {seed}: test acc {result.metrics['test/acc']:.3f} "
                f"({len(result.history)} epochs, {result.seconds:.0f} s)",
                flush=True,
            )
            results.append(result)
    return results


def over_seeds(values: list[float]) -> dict[str, Any]:
    """The values, their mean and sample standard deviation (0 for a single value)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"values": values, "mean": statistics.mean(values), "sd": sd}


def source_record(
    title: str, plot: str, results: list[Result], args: argparse.Namespace
) -> dict[str, Any]:
    """One data source's numbers: its splits, each model over the seeds, and each run."""
    size = results[0].image_size
    lrs = learning_rates(args)
    models = []
    for model in MODELS:
        rows = [r for r in results if r.model == model]
        sizes = [3 * size**2, *HIDDEN[model], 1]
        models.append(
            {
                "model": model,
                "sizes": sizes,
                "parameters": sum((a + 1) * b for a, b in itertools.pairwise(sizes)),
                "lr": lrs[model],
                "train_acc": over_seeds([r.train_acc for r in rows]),
                "val_acc": over_seeds([r.val_acc for r in rows]),
                "test_acc": over_seeds([r.metrics["test/acc"] for r in rows]),
                "test_auroc": over_seeds([r.metrics["test/auroc"] for r in rows]),
                "seconds": over_seeds([r.seconds for r in rows]),
            }
        )
    return {
        "title": title,
        "plot": plot,
        "image_size": size,
        "split_sizes": results[0].split_sizes,
        "models": models,
        "runs": [
            {"model": r.model, "seed": r.seed, "seconds": r.seconds, "history": r.history}
            for r in results
        ],
    }


def figure(results: list[Result], title: str) -> Figure:
    """Accuracy against epochs (first seed) and test accuracy per model (every seed)."""
    fig = Figure(figsize=(11, 4.4))
    curves_ax, bars_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    first_seed = results[0].seed
    for result in results:
        if result.seed != first_seed:
            continue
        epochs = range(1, len(result.history) + 1)
        colour = COLOURS[result.model]
        name = MODELS[result.model]
        train_acc = [h["train_acc"] for h in result.history]
        val_acc = [h["val_acc"] for h in result.history]
        curves_ax.plot(epochs, train_acc, "--", color=colour, label=f"{name}, train")
        curves_ax.plot(epochs, val_acc, "-", color=colour, label=f"{name}, validation")
    curves_ax.set_xlabel("epoch")
    curves_ax.set_ylabel("accuracy")
    curves_ax.set_title(f"{title}: accuracy during training (seed {first_seed})", fontsize=10)
    curves_ax.grid(alpha=0.3)
    curves_ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.17))
    for i, model in enumerate(MODELS):
        accs = [r.metrics["test/acc"] for r in results if r.model == model]
        bars_ax.bar(i, statistics.mean(accs), color=COLOURS[model], alpha=0.6)
        bars_ax.plot([i] * len(accs), accs, "ko", markersize=4)
    bars_ax.set_xticks(range(len(MODELS)), list(MODELS.values()))
    bars_ax.set_ylim(0.4, 1.0)
    bars_ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    bars_ax.set_ylabel("test accuracy (best checkpoint)")
    bars_ax.set_title("test accuracy: mean (bar) and each seed (dot)", fontsize=10)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    """Train every model at every seed, draw the plots, write the results and the README."""
    started = time.perf_counter()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results = train_all(args.synthetic_data, args)
    save(figure(results, "SyntheticCats"), args.out / "accuracy_synthetic.png")
    sources = {"synthetic": source_record("SyntheticCats", "accuracy_synthetic.png", results, args)}
    skipped = cifar_skipped(args.cifar_root)
    if skipped is None:
        cifar = ["data=cifar10", f"data.root={args.cifar_root}", *args.cifar_data]
        results = train_all(cifar, args)
        save(figure(results, "CIFAR-10"), args.out / "accuracy_cifar10.png")
        sources["cifar10"] = source_record("CIFAR-10 cats", "accuracy_cifar10.png", results, args)
    else:
        print(f"CIFAR-10 skipped: the folder is {skipped}")
        sources["cifar10"] = {"title": "CIFAR-10 cats", "skipped": skipped}
    settings = {
        "seeds": args.seeds,
        "max_epochs": args.max_epochs,
        "lrs": learning_rates(args),
        "threads": args.threads,
        "tiny": args.tiny,
    }
    record = {"run": run_record(started), "settings": settings, "sources": sources}
    publish("architectures", record, args.out)
