"""Layer 5, training: the cat/not-cat LightningModule and its callbacks."""

from gdtorch.lightning.audit import GradientAudit, GradientAuditError
from gdtorch.lightning.checkpoint_io import AtomicCheckpointIO
from gdtorch.lightning.landscape import LossLandscape
from gdtorch.lightning.module import CatClassifier
from gdtorch.lightning.nonfinite import NonFiniteLossError, NonFiniteLossGuard
from gdtorch.lightning.tensorboard import TensorBoardExtras

__all__ = [
    "AtomicCheckpointIO",
    "CatClassifier",
    "GradientAudit",
    "GradientAuditError",
    "LossLandscape",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "TensorBoardExtras",
]
