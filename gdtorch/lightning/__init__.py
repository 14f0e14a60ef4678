"""Layer 5, training: the cat/not-cat LightningModule and its callbacks."""

from gdtorch.lightning.audit import GradientAudit, GradientAuditError
from gdtorch.lightning.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointError,
    training_checkpoint_progress,
)
from gdtorch.lightning.landscape import LossLandscape
from gdtorch.lightning.module import CatClassifier
from gdtorch.lightning.nonfinite import NonFiniteLossError, NonFiniteLossGuard
from gdtorch.lightning.tensorboard import TensorBoardExtras

__all__ = [
    "AtomicCheckpointIO",
    "CatClassifier",
    "CheckpointError",
    "GradientAudit",
    "GradientAuditError",
    "LossLandscape",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "TensorBoardExtras",
    "training_checkpoint_progress",
]
