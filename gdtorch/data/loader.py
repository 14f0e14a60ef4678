"""``TensorBatchLoader``: batches sliced straight out of in-memory tensors."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

__all__ = ["TensorBatchLoader", "Updates", "first_update"]

_SEED_STRIDE = 0x9E3779B1  # spreads (seed, epoch) pairs over distinct generator seeds


class Updates:
    """Several consecutive batches served as one, each gathered when its update runs.

    Iterating gives the ``(images, targets)`` batches of ``batch_size`` examples in order (the
    last may be smaller): rows ``index[k·batch_size : (k+1)·batch_size]`` of ``images`` and
    ``targets``, or consecutive slices of them (views) without an ``index``. A loader with
    ``updates_per_batch > 1`` yields these. A training step that receives one takes one
    gradient-descent update per batch in it, in order (see ``CatClassifier``), so that the
    trainer's fixed cost per batch is paid once for several updates.

    A batch is gathered only when its update runs, so it is still in the CPU's cache when the
    forward pass reads it (gathering the whole group first made mini-batch epochs 2.6× slower
    on the cat network). Lightning leaves an ``Updates`` as it is: the training step moves each
    batch to the device and precision of the run.

    Args:
        images: ``(N, ...)`` images the batches are drawn from.
        targets: ``(N,)`` their targets.
        batch_size: examples per update.
        index: the rows of the batches, in order; ``None`` for all of ``images``, in order.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        index: torch.Tensor | None = None,
    ) -> None:
        self.images, self.targets = images, targets
        self.batch_size, self.index = batch_size, index

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        size = self.batch_size
        if self.index is None:
            return zip(self.images.split(size), self.targets.split(size), strict=True)
        return (
            (self.images.index_select(0, rows), self.targets.index_select(0, rows))
            for rows in self.index.split(size)
        )

    def __len__(self) -> int:
        rows = len(self.targets) if self.index is None else len(self.index)
        return math.ceil(rows / self.batch_size)


def first_update(batch: tuple[torch.Tensor, torch.Tensor] | Updates) -> tuple[torch.Tensor, ...]:
    """The ``(images, targets)`` of the first update a training batch takes."""
    return next(iter(batch)) if isinstance(batch, Updates) else tuple(batch)


class TensorBatchLoader:
    """An index-based loader over images and targets that are already tensors.

    Each batch is ``(images[idx], targets[idx])`` for a slice ``idx`` of one permutation per
    epoch, so there is no per-sample Python work, no worker process and no collation. It
    works wherever a ``torch.utils.data.DataLoader`` is iterated, Lightning's ``Trainer``
    included (Lightning accepts any re-iterable object with ``__len__``).

    Shuffling is reproducible and resumable: epoch ``e`` uses the permutation drawn by a
    generator seeded from ``(seed, e)``, and ``epoch`` counts the passes started so far.

    In a distributed run (``world_size > 1``) every process draws the same order, pads it by
    wrapping around to a multiple of ``world_size`` and keeps every ``world_size``-th index from
    ``rank`` on, as ``torch.utils.data.DistributedSampler`` does: the shards are disjoint, equal
    in size, and together cover the whole set each epoch.

    Args:
        images: ``(N, ...)`` tensor.
        targets: ``(N,)`` tensor.
        batch_size: samples per batch; the last batch of an epoch may be smaller.
        shuffle: draw a new order every epoch; otherwise batches follow the tensor order.
        seed: seed of the shuffling.
        normalize: optional per-channel ``(mean, std)``, each ``(C,)``: batches of images are
            returned as ``(images - mean) / std``, computed once for all the images on the
            first pass (and again after :meth:`to`), not per batch.
        rank: this process's index in a distributed run.
        world_size: the number of processes sharing the data.
        updates_per_batch: how many consecutive batches to serve together as one
            :class:`Updates`; ``1`` serves each ``(images, targets)`` on its own. The batches, and
            their order, are the same either way.

    Example:
        >>> loader = TensorBatchLoader(torch.zeros(10, 3, 8, 8), torch.zeros(10), batch_size=4)
        >>> len(loader), [len(y) for _, y in loader]
        (3, [4, 4, 2])
        >>> grouped = TensorBatchLoader(torch.zeros(10, 3), torch.zeros(10), 4, updates_per_batch=2)
        >>> len(grouped), [[len(y) for _, y in updates] for updates in grouped]
        (2, [[4, 4], [2]])
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        normalize: tuple[torch.Tensor, torch.Tensor] | None = None,
        rank: int = 0,
        world_size: int = 1,
        updates_per_batch: int = 1,
    ) -> None:
        if len(images) != len(targets):
            raise ValueError(
                f"images and targets must have the same length, got {len(images)} and "
                f"{len(targets)}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if (
            isinstance(updates_per_batch, bool)
            or not isinstance(updates_per_batch, int)
            or updates_per_batch <= 0
        ):
            raise ValueError(f"updates_per_batch must be a positive int, got {updates_per_batch!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank!r}")
        self.images = images
        self.targets = targets
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank = rank
        self.world_size = world_size
        self.updates_per_batch = updates_per_batch
        self.mean, self.std = (None, None) if normalize is None else normalize
        self._normalized: torch.Tensor | None = None

    def __len__(self) -> int:
        """Batches per epoch for this process: ``⌈shard / (batch_size × updates_per_batch)⌉``."""
        return math.ceil(self.shard_size / (self.batch_size * self.updates_per_batch))

    @property
    def shard_size(self) -> int:
        """Samples this process sees per epoch: ``ceil(N / world_size)`` (``N`` alone)."""
        return math.ceil(len(self.targets) / self.world_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor] | Updates]:
        order = self._order()
        self.epoch += 1
        images, targets = self._served_images(), self.targets
        n = len(targets) if order is None else len(order)
        size, group = self.batch_size, self.batch_size * self.updates_per_batch
        for start in range(0, n, group):
            if self.updates_per_batch > 1:
                if order is None:
                    end = start + group
                    yield Updates(images[start:end], targets[start:end], size)
                else:
                    yield Updates(images, targets, size, order[start : start + group])
            elif order is None:
                yield images[start : start + size], targets[start : start + size]
            else:
                idx = order[start : start + size]
                # index_select: cheaper than advanced indexing images[idx]
                yield images.index_select(0, idx), targets.index_select(0, idx)

    def _served_images(self) -> torch.Tensor:
        """The images as batches serve them: normalised once, on the first pass."""
        if self.mean is None:
            return self.images
        if self._normalized is None:
            mean, std = self.mean.view(-1, 1, 1), self.std.view(-1, 1, 1)
            self._normalized = (self.images - mean) / std
        return self._normalized

    def _order(self) -> torch.Tensor | None:
        """This epoch's indices for this process, or ``None`` for plain slices in tensor order."""
        n = len(self.targets)
        if not self.shuffle and self.world_size == 1:
            return None
        if self.shuffle:
            generator = torch.Generator().manual_seed(
                (self.seed * _SEED_STRIDE + self.epoch) % 2**63
            )
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            padding = self.shard_size * self.world_size - n
            order = torch.cat([order, order[:padding]])[self.rank :: self.world_size]
        return order.to(self.targets.device)

    def to(self, device: torch.device | str) -> TensorBatchLoader:
        """Move the tensors (and normalisation statistics) to ``device``, once; returns ``self``.

        With the data on the training device, each batch is a slice on that device and
        Lightning's per-batch transfer has nothing left to copy.
        """
        self.images = self.images.to(device)
        self.targets = self.targets.to(device)
        if self.mean is not None:
            self.mean, self.std = self.mean.to(device), self.std.to(device)
        self._normalized = None
        return self
