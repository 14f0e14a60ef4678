"""What every cat/not-cat dataset shares: in-memory image and target tensors, and their helpers."""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torch.utils.data import TensorDataset

__all__ = ["CatImageDataset", "balanced_indices", "resize_images"]


class CatImageDataset(TensorDataset):
    """A cat/not-cat dataset held in memory as two tensors.

    Indexing gives ``(image, target)`` like any map-style dataset, and the whole tensors are
    exposed so that a loader can slice batches without per-sample Python work.

    Args:
        images: float32 tensor of shape ``(N, 3, H, W)`` with values in ``[0, 1]``.
        targets: float32 tensor of shape ``(N,)``: ``1.0`` = cat, ``0.0`` = not cat.
    """

    classes = ("not cat", "cat")

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
        if targets.shape != images.shape[:1]:
            raise ValueError(
                f"targets must have shape ({images.shape[0]},), got {tuple(targets.shape)}"
            )
        super().__init__(images.float(), targets.float())

    @property
    def images(self) -> torch.Tensor:
        """All images, float32 ``(N, 3, H, W)`` in ``[0, 1]``."""
        return self.tensors[0]

    @property
    def targets(self) -> torch.Tensor:
        """All labels, float32 ``(N,)``: ``1.0`` = cat, ``0.0`` = not cat."""
        return self.tensors[1]


def balanced_indices(targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Indices that keep every sample of the rarer class and as many, drawn at random, of the other.

    Args:
        targets: ``(N,)`` tensor of 0/1 labels.
        generator: CPU generator that decides which samples of the larger class are kept.

    Returns:
        Sorted ``int64`` indices into ``targets``, half of them positives, half negatives.

    Raises:
        ValueError: a class is absent, so that balancing would keep nothing.
    """
    positives = torch.nonzero(targets == 1).flatten()
    negatives = torch.nonzero(targets == 0).flatten()
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError(
            f"cannot balance {len(targets)} examples of which {len(positives)} are cats and "
            f"{len(negatives)} non-cats: balancing keeps as many of each class as of the rarer "
            f"one, which would keep none. Add examples of the missing class, or turn balancing "
            f"off (balance=False, data.balance=false)."
        )
    n = min(len(positives), len(negatives))
    keep = [
        group[torch.randperm(len(group), generator=generator)[:n]]
        for group in (positives, negatives)
    ]
    return torch.cat(keep).sort().values


def resize_images(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Resize a batch of square images to ``image_size``, antialiased; a no-op at the same size.

    Args:
        images: float ``(N, 3, H, W)`` tensor.
        image_size: the side of the output images.

    Returns:
        ``(N, 3, image_size, image_size)`` tensor, clamped to ``[0, 1]``.
    """
    if images.shape[-2:] == (image_size, image_size):
        return images
    resized = F.interpolate(
        images, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
    )
    return resized.clamp_(0.0, 1.0)
