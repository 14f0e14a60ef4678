"""``TensorBatchLoader``: batches sliced straight out of in-memory tensors."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

__all__ = ["TensorBatchLoader"]

_SEED_STRIDE = 0x9E3779B1  # spreads (seed, epoch) pairs over distinct generator seeds


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
            returned as ``(images - mean) / std``.
        rank: this process's index in a distributed run.
        world_size: the number of processes sharing the data.

    Example:
        >>> loader = TensorBatchLoader(torch.zeros(10, 3, 8, 8), torch.zeros(10), batch_size=4)
        >>> len(loader), [len(y) for _, y in loader]
        (3, [4, 4, 2])
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
    ) -> None:
        if len(images) != len(targets):
            raise ValueError(
                f"images and targets must have the same length, got {len(images)} and "
                f"{len(targets)}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
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
        self.mean, self.std = (None, None) if normalize is None else normalize

    def __len__(self) -> int:
        """Batches per epoch for this process: ``ceil(shard / batch_size)``."""
        return math.ceil(self.shard_size / self.batch_size)

    @property
    def shard_size(self) -> int:
        """Samples this process sees per epoch: ``ceil(N / world_size)`` (``N`` alone)."""
        return math.ceil(len(self.targets) / self.world_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        self.epoch += 1
        n = len(self.targets) if order is None else len(order)
        for start in range(0, n, self.batch_size):
            if order is None:
                images = self.images[start : start + self.batch_size]
                targets = self.targets[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                # index_select: several times faster than advanced indexing images[idx]
                images = self.images.index_select(0, idx)
                targets = self.targets.index_select(0, idx)
            if self.mean is not None:
                images = (images - self.mean.view(-1, 1, 1)) / self.std.view(-1, 1, 1)
            yield images, targets

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
        return self
