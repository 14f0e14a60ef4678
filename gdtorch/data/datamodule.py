"""``CatDataModule``: cat/not-cat splits served for batch, stochastic or mini-batch descent."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from gdtorch.data.base import CatImageDataset, balanced_indices
from gdtorch.data.cifar import CIFAR10Cats
from gdtorch.data.folder import ImageFolderCats
from gdtorch.data.loader import TensorBatchLoader
from gdtorch.data.synthetic import SyntheticCats

__all__ = ["MIN_STD", "MODES", "SOURCES", "CatDataModule"]

SOURCES = ("synthetic", "cifar10", "folder")
MODES = ("batch", "stochastic", "minibatch")
EVAL_BATCH_SIZE = 1024  # validation and test batches: any size gives the same metrics
# A channel whose training pixels spread less than one 8-bit level is as good as constant:
# dividing by its std would blow any other value up (by 8 million at float32's eps), so it is
# centred but not scaled, as scikit-learn's StandardScaler treats a constant feature.
MIN_STD = 1 / 255


class CatDataModule(L.LightningDataModule):
    """Train/val/test splits of a cat/not-cat source, as one of the tutorial's three GD modes.

    Sources:

    - ``"synthetic"``: :class:`SyntheticCats`, drawn in memory (no download, no files); the
      splits are drawn with seeds ``3 * seed``, ``3 * seed + 1`` and ``3 * seed + 2``.
    - ``"cifar10"``: :class:`CIFAR10Cats` from ``root``. Validation and training images are
      drawn without overlap from the 50,000 training images, test images from the 10,000 test
      images.
    - ``"folder"``: :class:`ImageFolderCats` from ``root``, in one of two layouts:

      - flat, ``root/<class>/...``: test, validation and training images are drawn at random
        without overlap from all the photos;
      - fixed, ``root/train/<class>/...`` and ``root/test/<class>/...`` (torchvision's
        ``ImageFolder`` users, Kaggle's cats-vs-dogs): the test split is all of ``root/test``,
        as given (``n_test`` does not apply), and validation and training images are drawn
        without overlap from ``root/train``, so that results compare with anyone else's on
        the same split. The layout is fixed exactly when ``root`` holds sub-folders named
        ``train`` and ``test``; each is checked as a photo folder of its own (the positive
        class present, another class beside it, no empty class). A ``root`` with only one of
        them, or with other folders beside them (e.g. ``val``), is refused: rename a class
        folder called ``train`` or ``test``, or move the other folders out.

    Modes, for the training loader (validation and test are served in fixed order, in batches
    of ``EVAL_BATCH_SIZE``):

    - ``"batch"``: the whole training set in one batch, so each update sees every example;
    - ``"stochastic"``: one example per batch, in a new random order every epoch;
    - ``"minibatch"``: ``batch_size`` examples per batch, in a new random order every epoch.

    With ``updates_per_batch > 1`` (stochastic and mini-batch modes) the training loader serves
    that many consecutive batches at a time as one :class:`Updates`; ``CatClassifier`` takes one
    update per batch in it, so the result is the same and the trainer's cost per batch is paid
    once for several updates. Lightning's batch counts (``limit_train_batches``,
    ``overfit_batches``, the progress bar) then count these groups. Under a distributed strategy
    each batch is one update (DDP synchronises the gradients once per forward of its wrapper).

    All data lives in memory as tensors and is served by :class:`TensorBatchLoader`. Images are
    normalised per channel with the mean and standard deviation of the training split only
    (``mean``, ``std``); ``train_set``/``val_set``/``test_set`` keep the raw ``[0, 1]`` images.
    A channel whose training pixels vary by less than one 8-bit level (std below
    :data:`MIN_STD` = 1/255, e.g. a few solid-colour images) is centred but not scaled (its
    ``std`` is 1), with a warning: dividing by a near-zero std would blow other images up.

    What every split must hold, checked in ``setup`` before any training: at least one example
    (the sizes must leave one for a ``None`` ``n_train``), and for the training split at least
    one cat and one non-cat, as a classifier learns nothing from one class. A validation or
    test split of one class only is allowed, with a warning (its accuracy counts that class
    only, and AUROC needs both: torchmetrics reports 0).

    With ``device="auto"`` (the default) ``setup`` moves the tensors once to the trainer's
    accelerator when they take at most a quarter of its free memory, so every batch is a slice
    already on the device; otherwise (and on the CPU) they stay in host memory and Lightning
    copies each batch over. ``device`` may also name a device, or be ``None`` for the CPU.

    Args:
        source: one of ``"synthetic"``, ``"cifar10"``, ``"folder"``.
        root: data folder (``cifar10``: the folder holding ``cifar-10-batches-py``; ``folder``:
            the folder of class sub-folders). Unused by ``synthetic``.
        mode: one of ``"batch"``, ``"stochastic"``, ``"minibatch"``.
        batch_size: examples per training batch in ``minibatch`` mode.
        image_size: side of the square images; CIFAR-10's 32×32 images are resized to it.
        n_train: training examples; for ``cifar10`` and ``folder``, ``None`` takes all that
            remain after the other splits (at least one must remain).
        n_val: validation examples.
        n_test: test examples; for ``cifar10``, ``None`` takes the whole test set. Ignored by
            a fixed ``train/`` + ``test/`` photo folder, whose test split is all of ``test/``.
        seed: seeds the synthetic images, the splits, the balancing and the shuffling.
        num_workers: threads that decode photos for the ``folder`` source.
        balance: ``cifar10`` and ``folder``: keep as many non-cats as cats (drawn by ``seed``)
            before splitting. CIFAR-10 has one cat in ten images. ``None`` (the default) means
            on for random splits (``cifar10``, a flat photo folder) and off for a fixed
            ``train/`` + ``test/`` photo folder; there ``True`` balances the pool that
            validation and training are drawn from, never the given test set.
        positive_class: ``folder``: the class sub-folder that holds the cats.
        download: ``cifar10``: download CIFAR-10 into ``root`` in ``prepare_data`` if missing.
        device: where to keep the tensors: ``"auto"`` (the trainer's accelerator when the data
            fits, see above), a device such as ``"cuda"``, or ``None`` for the CPU.
        updates_per_batch: training batches served together as one :class:`Updates` (see
            above); ``1`` serves every batch on its own. Batch mode always serves one.
        normalization: per-channel ``(mean, std)`` to normalise every split with, instead of
            the training split's statistics: a trained model's (``CatClassifier.input_mean``,
            ``input_std``), to evaluate it on other data exactly as it was trained.

    Raises:
        ValueError: an unknown ``source`` or ``mode``, a non-positive size, a ``balance`` other
            than ``True``, ``False`` or ``None``, or a missing ``root``; in ``setup``, sizes
            that the data cannot fill (training included: at least one example), a training
            split without both classes, balancing data that lacks a class, or a photo folder
            with only one of ``train/`` and ``test/`` or other folders beside them. Each
            message names the sizes asked for, the examples there are (after balancing, and
            before it) and the settings to change.

    Example:
        >>> dm = CatDataModule(mode="minibatch", batch_size=32, n_train=64, n_val=16, n_test=16)
        >>> dm.setup()
        >>> images, targets = next(iter(dm.train_dataloader()))
        >>> tuple(images.shape), dm.input_size
        ((32, 3, 64, 64), 12288)
    """

    def __init__(
        self,
        source: str = "synthetic",
        root: str | Path | None = None,
        mode: str = "minibatch",
        batch_size: int = 64,
        image_size: int = 64,
        n_train: int | None = 2000,
        n_val: int = 500,
        n_test: int | None = 500,
        seed: int = 0,
        num_workers: int = 0,
        *,
        balance: bool | None = None,
        positive_class: str = "cat",
        download: bool = False,
        device: str | torch.device | None = "auto",
        updates_per_batch: int = 1,
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}; got {source!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        sizes = {
            "batch_size": batch_size,
            "image_size": image_size,
            "n_val": n_val,
            "updates_per_batch": updates_per_batch,
        }
        optional = {"n_train": n_train, "n_test": n_test}
        if source == "synthetic":
            sizes.update(optional)
        else:
            sizes.update({k: v for k, v in optional.items() if v is not None})
            if root is None:
                raise ValueError(f"source {source!r} needs root (data.root): the data folder")
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ValueError(
                f"seed must be an int from 0 to 4294967295 (2**32 - 1: the seeds numpy and "
                f"Lightning accept), got {seed!r}"
            )
        if balance is not None and not isinstance(balance, bool):
            raise ValueError(
                f"balance (data.balance) must be true, false or null (on for random splits, off "
                f"for a fixed train/ + test/ photo folder), got {balance!r}"
            )
        self.save_hyperparameters()
        self.source, self.root, self.mode = source, root, mode
        self.batch_size, self.image_size = batch_size, image_size
        self.n_train, self.n_val, self.n_test = n_train, n_val, n_test
        self.seed, self.num_workers = seed, num_workers
        self.balance, self.positive_class, self.download = balance, positive_class, download
        self.device = device
        self.updates_per_batch = updates_per_batch
        self.normalization = _checked_normalization(normalization)
        self.train_set: CatImageDataset | None = None
        self.val_set: CatImageDataset | None = None
        self.test_set: CatImageDataset | None = None
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self._train_loader: TensorBatchLoader | None = None
        self._resume_epoch = 0
        self._fixed = False  # a photo folder with fixed train/ and test/ splits (setup sets it)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(3, image_size, image_size)``."""
        return (3, self.image_size, self.image_size)

    @property
    def input_size(self) -> int:
        """Features of one flattened image, e.g. 12288 at 64×64: the first layer's width."""
        return 3 * self.image_size * self.image_size

    def prepare_data(self) -> None:
        """Download CIFAR-10 if asked to (Lightning runs this on one process only)."""
        if self.source == "cifar10" and self.download:
            CIFAR10Cats.download(self.root)

    def setup(self, stage: str | None = None) -> None:
        """Build the three splits and the training statistics, once for every ``stage``."""
        if self.train_set is not None:
            return
        splits = {
            "synthetic": self._synthetic_splits,
            "cifar10": self._cifar_splits,
            "folder": self._folder_splits,
        }[self.source]()
        self._check_classes(*splits)
        device = self._data_device(splits)
        if device is not None:
            splits = [CatImageDataset(s.images.to(device), s.targets.to(device)) for s in splits]
        self.train_set, self.val_set, self.test_set = splits
        images = self.train_set.images
        if self.normalization is not None:
            mean, std = self.normalization
            self.mean = torch.tensor(mean, dtype=images.dtype, device=images.device)
            self.std = torch.tensor(std, dtype=images.dtype, device=images.device)
            return
        self.mean = images.mean(dim=(0, 2, 3))
        self.std = _scales(images.std(dim=(0, 2, 3)))

    def _check_classes(
        self, train: CatImageDataset, val: CatImageDataset, test: CatImageDataset
    ) -> None:
        """Refuse a training split without both classes; warn of a one-class val or test split.

        Raises:
            ValueError: the training split holds no cat or no non-cat.
        """
        if not _both_classes(train):
            if self.source == "synthetic":
                fix = "SyntheticCats draws half of n_train as cats: raise data.n_train to 2 or more"
            elif self.n_train is not None:
                fix = f"Raise data.n_train (now {self.n_train}): the random draw took one class"
            else:
                held_out = "data.n_val" if self._fixed else "data.n_val or data.n_test"
                fix = f"Lower {held_out} to leave more for training"
            if self.source != "synthetic":
                fix += ", or set data.balance=true if one class is rare"
            raise ValueError(
                f"the training split holds {_counts(train)}: a classifier needs cats and "
                f"non-cats to learn from. {fix}."
            )
        for stage, split, setting in (("val", val, "n_val"), ("test", test, "n_test")):
            if _both_classes(split):
                continue
            name = {"val": "validation", "test": "test"}[stage]
            rank_zero_warn(
                f"the {name} split holds {_counts(split)}: {stage}/auroc needs both classes "
                f"(torchmetrics reports 0 without) and {stage}/acc counts one class only: raise "
                f"data.{setting} (now {getattr(self, setting)}) to draw both."
            )

    def _data_device(self, splits: list[CatImageDataset]) -> torch.device | str | None:
        """Where the tensors go: ``device``, or for ``"auto"`` the trainer's GPU if they fit."""
        if self.device != "auto":
            return self.device
        root = None if self.trainer is None else self.trainer.strategy.root_device
        if root is None or root.type != "cuda":
            return None
        nbytes = sum(s.images.nbytes + s.targets.nbytes for s in splits)
        free, _ = torch.cuda.mem_get_info(root)
        return root if nbytes <= free // 4 else None

    def train_dataloader(self) -> TensorBatchLoader:
        """Training batches for ``mode``, reshuffled every epoch unless ``mode="batch"``.

        When the trainer overfits (``overfit_batches > 0``) the batches are served in tensor
        order instead, so that every epoch trains on the same few, as Lightning does for a
        ``DataLoader`` by swapping in a ``SequentialSampler``, with the same warning.

        A loader asked for again (Lightning's ``reload_dataloaders_every_n_epochs``) continues
        the sequence of orders: epoch ``e`` is shuffled the same way whether or not the loader
        was rebuilt, and after a resume from :meth:`state_dict`.

        Under a distributed strategy each process gets its own shard of every epoch (see
        :class:`TensorBatchLoader`): in ``batch`` mode the processes' batches together are the
        whole training set, so the averaged gradient is the full-batch gradient; in
        ``minibatch`` mode ``batch_size`` is per process, as with Lightning's samplers.
        """
        train_set = self._require(self.train_set)
        trainer = self.trainer
        rank, world_size = (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)
        if len(train_set) % world_size:
            rank_zero_warn(
                f"n_train={len(train_set)} is not a multiple of the {world_size} processes: each "
                f"epoch repeats {world_size - len(train_set) % world_size} example(s) so that "
                f"every process gets as many, and the result differs slightly from one "
                f"process's. Set data.n_train to a multiple of {world_size} for the same result."
            )
        # As Lightning does for a DataLoader's sampler: overfitting means the same batches.
        overfit = trainer is not None and trainer.overfit_batches > 0
        if overfit and self.mode != "batch":
            rank_zero_warn(
                "You requested to overfit but enabled train dataloader shuffling. We are turning"
                " off the train dataloader shuffling for you."
            )
        batch_size = {
            "batch": math.ceil(len(train_set) / world_size),  # each process: its whole shard
            "stochastic": 1,
            "minibatch": self.batch_size,
        }
        loader = TensorBatchLoader(
            train_set.images,
            train_set.targets,
            batch_size[self.mode],
            shuffle=self.mode != "batch" and not overfit,
            seed=self.seed,
            normalize=(self.mean, self.std),
            rank=rank,
            world_size=world_size,
            updates_per_batch=self.updates_per_batch if world_size == 1 else 1,
        )
        loader.epoch = self._train_epoch()  # a rebuilt loader continues the sequence of orders
        self._train_loader = loader
        return loader

    def val_dataloader(self) -> TensorBatchLoader:
        """Validation batches, normalised with the training statistics, in fixed order."""
        return self._eval_loader(self._require(self.val_set))

    def test_dataloader(self) -> TensorBatchLoader:
        """Test batches, normalised with the training statistics, in fixed order."""
        return self._eval_loader(self._require(self.test_set))

    def state_dict(self) -> dict[str, Any]:
        """The shuffling position, so that a resumed run continues the same sequence of orders."""
        return {"train_epoch": self._train_epoch()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_epoch = state_dict["train_epoch"]
        if self._train_loader is not None:
            self._train_loader.epoch = self._resume_epoch

    def _train_epoch(self) -> int:
        """Training epochs started so far: the next one is shuffled with this epoch's order."""
        return self._resume_epoch if self._train_loader is None else self._train_loader.epoch

    def _eval_loader(self, dataset: CatImageDataset) -> TensorBatchLoader:
        return TensorBatchLoader(
            dataset.images, dataset.targets, EVAL_BATCH_SIZE, normalize=(self.mean, self.std)
        )

    def _require(self, dataset: CatImageDataset | None) -> CatImageDataset:
        if dataset is None:
            raise RuntimeError(
                "CatDataModule.setup() must run before its dataloaders are asked for"
            )
        return dataset

    def _synthetic_splits(self) -> list[CatImageDataset]:
        sizes = (self.n_train, self.n_val, self.n_test)
        return [
            SyntheticCats(n, self.image_size, seed=3 * self.seed + k) for k, n in enumerate(sizes)
        ]

    def _cifar_splits(self) -> list[CatImageDataset]:
        balance = self._balances(fixed=False)

        def load(train: bool) -> CIFAR10Cats:
            return CIFAR10Cats(self.root, train, self.image_size, balance, self.seed)

        generator = torch.Generator().manual_seed(self.seed)
        hint = (
            ", or set data.balance=false to draw from every image (CIFAR-10 has one cat in ten)"
            if balance
            else ""
        )
        kept = " (balanced by data.balance: every cat and as many non-cats)" if balance else ""
        sizes = {"n_val": self.n_val, "n_train": self.n_train}
        what = f"CIFAR-10's training set in {self.root}{kept}"
        val, train = _draw(load(True), sizes, generator, what, hint)
        what = f"CIFAR-10's test set in {self.root}{kept}"
        (test,) = _draw(load(False), {"n_test": self.n_test}, generator, what, hint)
        return [train, val, test]

    def _balances(self, fixed: bool) -> bool:
        """Whether to balance: ``balance``, or when it is ``None``, on unless the split is fixed."""
        return not fixed if self.balance is None else self.balance

    def _folder_splits(self) -> list[CatImageDataset]:
        def load(folder: str | Path) -> ImageFolderCats:
            return ImageFolderCats(folder, self.positive_class, self.image_size, self.num_workers)

        generator = torch.Generator().manual_seed(self.seed)
        fixed = _fixed_split_folders(self.root)
        self._fixed = fixed is not None
        balance = self._balances(fixed is not None)
        pool = self.root if fixed is None else fixed[0]
        photos: CatImageDataset = load(pool)
        what, hint = f"photo folder {pool}", ""
        if balance:
            keep = balanced_indices(photos.targets, generator)
            if len(keep) < len(photos):
                what += f", balanced (data.balance) from {_counts(photos)},"
                hint = f", or set data.balance=false to split all {len(photos)} images"
            photos = CatImageDataset(photos.images[keep], photos.targets[keep])
        if fixed is None:
            sizes = {"n_test": self.n_test, "n_val": self.n_val, "n_train": self.n_train}
            test, val, train = _draw(photos, sizes, generator, what, hint)
            return [train, val, test]
        train_folder, test_folder = fixed
        test = load(test_folder)  # as given: never drawn from, never balanced
        sizes = {"n_val": self.n_val, "n_train": self.n_train}
        val, train = _draw(photos, sizes, generator, what, hint)
        rank_zero_info(
            f"photo folder {self.root}: fixed split, test = all {len(test)} images of "
            f"{test_folder} (data.n_test is ignored); validation {len(val)} and training "
            f"{len(train)} images drawn from {train_folder}"
            f"{' (balanced)' if balance else ''}"
        )
        return [train, val, test]


def _fixed_split_folders(root: str | Path) -> tuple[Path, Path] | None:
    """``(root/train, root/test)`` when ``root`` is a fixed-split photo folder, else ``None``.

    A root holding sub-folders named ``train`` and ``test`` is a fixed split; one with neither
    is a flat folder of classes (or does not exist, which ``ImageFolderCats`` reports).

    Raises:
        ValueError: ``root`` holds only one of ``train`` and ``test``, or other (non-hidden)
            folders beside both.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        return None
    folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    parts = folders & {"train", "test"}
    if not parts:
        return None
    layouts = (
        f"either a fixed split, {root}/train/<class>/... and {root}/test/<class>/... (each "
        f"holding the class sub-folders, e.g. {root}/train/cat and {root}/train/other), or a "
        f"flat folder, {root}/<class>/..., with no class folder named 'train' or 'test'"
    )
    if len(parts) == 1:
        (found,) = parts
        (missing,) = {"train", "test"} - parts
        raise ValueError(
            f"photo folder {root} (data.root) holds {root / found} but no {root / missing}: "
            f"expected {layouts}. Add {root / missing}, or rename the class folder {found!r}."
        )
    others = sorted(folders - parts)
    if others:
        raise ValueError(
            f"photo folder {root} (data.root) holds train/ and test/ but also {others}: "
            f"expected {layouts}. Move {others} out of {root} (a fixed split uses only train/ "
            f"and test/, and draws validation from train/)."
        )
    return root / "train", root / "test"


def _checked_normalization(
    normalization: tuple[Sequence[float], Sequence[float]] | None,
) -> tuple[list[float], list[float]] | None:
    """``normalization`` as two lists of three floats, the stds positive.

    Raises:
        ValueError: it is not a ``(mean, std)`` pair of three numbers each, or a std is not > 0.
    """
    if normalization is None:
        return None
    try:
        mean, std = ([float(v) for v in values] for values in normalization)
    except (TypeError, ValueError):
        mean = std = []
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(
            f"normalization must be a (mean, std) pair of three per-channel numbers, the stds "
            f"> 0; got {normalization!r}"
        )
    return mean, std


def _draw(
    dataset: CatImageDataset,
    sizes: dict[str, int | None],
    generator: torch.Generator,
    what: str = "the data",
    hint: str = "",
) -> list[CatImageDataset]:
    """Disjoint random subsets of ``dataset`` of the given sizes; a last ``None`` takes the rest.

    Args:
        dataset: what to draw from.
        sizes: subset sizes by setting name, e.g. ``{"n_val": 50, "n_train": None}``.
        generator: decides which examples go where.
        what: names ``dataset`` in errors, e.g. the folder it was read from.
        hint: ends the fix an error proposes, e.g. ``", or set data.balance=false ..."``.

    Raises:
        ValueError: the sizes add up to more examples than ``dataset`` has, or leave none for
            a last ``None`` (the rest). The message names the sizes asked for, the examples
            there are (cats and others) and the settings to change.
    """
    wanted = sum(n for n in sizes.values() if n is not None)
    *_, (last, last_n) = sizes.items()
    asked = ", ".join(
        f"{name}={'None (the rest)' if n is None else n}" for name, n in sizes.items()
    )
    have = f"{what} has only {_counts(dataset)}"
    if wanted > len(dataset):
        settings = _listed([f"data.{name}" for name in sizes if sizes[name] is not None])
        raise ValueError(
            f"asked for {asked} but {have}: lower {settings} to add up to at most "
            f"{len(dataset)}{hint}."
        )
    if last_n is None and wanted == len(dataset):
        others = [f"data.{name}" for name in sizes if name != last]
        fix = (
            f"lower {_listed(others)} to add up to less than {len(dataset)}"
            if others
            else "add images"
        )
        raise ValueError(
            f"asked for {asked} but {have}, which leaves no example for {last}: {fix}{hint}."
        )
    order = torch.randperm(len(dataset), generator=generator)
    subsets, start = [], 0
    for n in sizes.values():
        idx = order[start:] if n is None else order[start : start + n]
        start += len(idx)
        subsets.append(CatImageDataset(dataset.images[idx], dataset.targets[idx]))
    return subsets


def _both_classes(dataset: CatImageDataset) -> bool:
    return 0 < int(dataset.targets.sum()) < len(dataset)


def _counts(dataset: CatImageDataset) -> str:
    """``"130 examples (50 cats, 80 non-cats)"``: the size of ``dataset`` and of its classes."""
    cats = int(dataset.targets.sum())
    return (
        f"{_plural(len(dataset), 'example')} ({_plural(cats, 'cat')}, "
        f"{_plural(len(dataset) - cats, 'non-cat')})"
    )


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _listed(names: list[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]


def _scales(std: torch.Tensor) -> torch.Tensor:
    """The per-channel ``std`` to normalise by: 1 where below :data:`MIN_STD`, with a warning."""
    flat = std < MIN_STD
    if std.device.type != "meta" and bool(flat.any()):  # meta tensors have no values to test
        channels = ", ".join(
            f"{'RGB'[c]} (std {std[c].item():.2g})" for c in flat.nonzero().flatten().tolist()
        )
        rank_zero_warn(
            f"the training images hardly vary in channel {channels}: less than one 8-bit level "
            f"(std < 1/255). It is centred but not scaled (std taken as 1), so that other "
            f"images are not blown up; more varied training images avoid this."
        )
    return torch.where(flat, torch.ones_like(std), std)
