"""gdtorch: gradient descent and backpropagation written out by hand, as drop-in PyTorch parts.

``import gdtorch.functional as GF``, ``from gdtorch.nn import Linear, ...`` and
``from gdtorch.optim import GradientDescent`` are the main entry points.

``with gdtorch.handwritten():`` runs any code's ``F.linear``, ``F.relu``, ``torch.sigmoid``, ...
and functional losses through gdtorch's hand-written backward.

``import gdtorch`` alone loads nothing yet: ``gdtorch.nn``, ``gdtorch.functional``,
``gdtorch.optim``, ``gdtorch.audit``, ``gdtorch.handwritten`` and ``gdtorch.set_validation`` are
imported on first use (PEP 562), so that ``gdtorch-train --help`` answers without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("functional", "nn", "optim")
_ATTRIBUTES = {
    "set_validation": "gdtorch._validation",
    "validation_enabled": "gdtorch._validation",
    "AuditReport": "gdtorch.gradient_audit",
    "AuditRow": "gdtorch.gradient_audit",
    "audit": "gdtorch.gradient_audit",
    "handwritten": "gdtorch.handwritten_mode",
    "HandwrittenReport": "gdtorch.handwritten_mode",
}
__all__ = ["__version__", *_SUBMODULES, *_ATTRIBUTES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"gdtorch.{name}")
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'gdtorch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
