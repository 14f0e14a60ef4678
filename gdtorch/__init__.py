"""gdtorch: gradient descent and backpropagation written out by hand, as drop-in PyTorch parts.

``import gdtorch.functional as GF``, ``from gdtorch.nn import Linear, ...`` and
``from gdtorch.optim import GradientDescent`` are the main entry points.
"""

from gdtorch import functional, nn, optim
from gdtorch._validation import set_validation, validation_enabled
from gdtorch.gradient_audit import AuditReport, AuditRow, audit

__all__ = [
    "AuditReport",
    "AuditRow",
    "__version__",
    "audit",
    "functional",
    "nn",
    "optim",
    "set_validation",
    "validation_enabled",
]
__version__ = "0.1.0"
