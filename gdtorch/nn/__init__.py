"""Layer 3: ``torch.nn`` faces over gdtorch's hand-written Functions.

Every class subclasses its ``torch.nn`` namesake and overrides only ``forward``: constructor
signatures, parameter and buffer names, ``state_dict`` keys, initialisation and ``repr`` are
torch's own, so a gdtorch module is a drop-in replacement (and ``isinstance`` checks still pass).
"""

from gdtorch.nn.activation import ReLU, Sigmoid, Tanh
from gdtorch.nn.convert import ConvertSummary, convert, convert_summary
from gdtorch.nn.linear import Linear
from gdtorch.nn.loss import BCELoss, BCEWithLogitsLoss, L1Loss, MAELoss, MSELoss
from gdtorch.nn.mlp import MLP

__all__ = [
    "MLP",
    "BCELoss",
    "BCEWithLogitsLoss",
    "ConvertSummary",
    "L1Loss",
    "Linear",
    "MAELoss",
    "MSELoss",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "convert",
    "convert_summary",
]
