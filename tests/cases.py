"""Input forms shared by the tests: every shape and memory layout a drop-in module must accept."""

from __future__ import annotations

import torch


def with_layout(tensor: torch.Tensor, layout: str) -> torch.Tensor:
    """``tensor`` re-laid out as ``"contiguous"``, ``"channels_last"`` or ``"non_contiguous"``."""
    if layout == "channels_last":
        return tensor.contiguous(memory_format=torch.channels_last)
    if layout == "non_contiguous":
        return tensor.transpose(-1, -2).contiguous().transpose(-1, -2)
    return tensor


# (name, shape, layout): every input form a drop-in module must accept.
SHAPE_CASES = [
    ("scalar", (), "contiguous"),
    ("vector", (5,), "contiguous"),
    ("column", (6, 1), "contiguous"),
    ("nchw_channels_last", (2, 3, 4, 5), "channels_last"),
    ("non_contiguous", (4, 6), "non_contiguous"),
    ("empty", (0, 3), "contiguous"),
]
