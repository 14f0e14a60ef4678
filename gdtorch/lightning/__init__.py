"""Layer 5, training: the cat/not-cat LightningModule and its callbacks."""

from gdtorch.lightning.audit import GradientAudit, GradientAuditError
from gdtorch.lightning.landscape import LossLandscape
from gdtorch.lightning.module import CatClassifier
from gdtorch.lightning.tensorboard import TensorBoardExtras

__all__ = [
    "CatClassifier",
    "GradientAudit",
    "GradientAuditError",
    "LossLandscape",
    "TensorBoardExtras",
]
