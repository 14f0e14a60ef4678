"""Layer 6: ``predict`` — ``P(cat)`` for image files from a trained checkpoint.

``gdtorch-predict`` (:func:`gdtorch.cli.predict_main`) prints what :func:`predict` returns; from
Python the one call is ``CatClassifier.load_from_checkpoint(path).predict_images(paths)``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from gdtorch.data import image_files, load_image
from gdtorch.data.datamodule import EVAL_BATCH_SIZE
from gdtorch.lightning import CatClassifier

THRESHOLD = 0.5  # a cat when P(cat) > THRESHOLD, as torchmetrics' binary accuracy counts


@dataclass(frozen=True)
class Prediction:
    """One image's answer: its file, ``P(cat)``, and ``cat`` or ``not-cat``."""

    path: Path
    probability: float

    @property
    def label(self) -> str:
        return "cat" if self.probability > THRESHOLD else "not-cat"


@dataclass(frozen=True)
class Failure:
    """A path that gave no prediction, and why, in one line."""

    path: Path
    reason: str


def image_paths(paths: Iterable[str | Path]) -> Iterator[Path | Failure]:
    """The files of ``paths``, each folder replaced by its images (recursively, sorted).

    A folder's files are those :class:`~gdtorch.data.ImageFolderCats` would read (image
    extensions, hidden entries skipped); a file named on its own is kept whatever its extension,
    so that a bad one is reported rather than skipped. A missing path or an empty folder yields
    a :class:`Failure`.
    """
    for path in map(Path, paths):
        if path.is_dir():
            files = image_files(path)
            yield from files or [Failure(path, "the folder holds no image files")]
        elif path.is_file():
            yield path
        else:
            yield Failure(path, "no such file or folder")


def predict(
    model: CatClassifier, paths: Iterable[str | Path], batch_size: int = EVAL_BATCH_SIZE
) -> tuple[list[Prediction], list[Failure]]:
    """``P(cat)`` of every image in ``paths`` (files or folders); a bad file fails alone.

    Args:
        model: a trained classifier, e.g. ``CatClassifier.load_from_checkpoint(path)``.
        paths: image files, or folders searched recursively for images.
        batch_size: images per forward pass.

    Returns:
        ``(predictions, failures)``: one :class:`Prediction` per image read, in the order of
        ``paths``, and one :class:`Failure` per path that gave none (unreadable image, missing
        path, folder without images).
    """
    predictions: list[Prediction] = []
    failures: list[Failure] = []
    batch: list[tuple[Path, torch.Tensor]] = []

    def flush() -> None:
        probabilities = model.predict_decoded(torch.stack([image for _, image in batch]))
        for (path, _), probability in zip(batch, probabilities.tolist(), strict=True):
            predictions.append(Prediction(path, probability))
        batch.clear()

    for path in image_paths(paths):
        if isinstance(path, Failure):
            failures.append(path)
            continue
        try:
            batch.append((path, load_image(path, model.image_size)))
        except ValueError as err:
            failures.append(Failure(path, str(err)))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return predictions, failures


def write_csv(predictions: Iterable[Prediction], file: str | Path) -> None:
    """Writes ``path,p_cat,label`` rows, one per prediction, under a header line."""
    with open(file, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "p_cat", "label"])
        for prediction in predictions:
            writer.writerow([prediction.path, repr(prediction.probability), prediction.label])
