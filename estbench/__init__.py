"""estbench: how accurate are gradient estimators for stochastic binary networks?

The public API; everything else is importable but not promised to stay.
"""

from ._version import __version__
from .checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from .errors import CheckpointError, EstbenchError, MemoryBudgetError, ModelError
from .exact import ExactResult, exact_gradient, exact_loss, plan_exact
from .model import (
    HEADS,
    NOISES,
    SBN,
    convert_coding,
    flatten_layer,
    flatten_layers,
    random_sbn,
    state_bits,
    unflatten_layer,
)

__all__ = [
    "HEADS",
    "NOISES",
    "SBN",
    "Checkpoint",
    "CheckpointError",
    "EstbenchError",
    "ExactResult",
    "MemoryBudgetError",
    "ModelError",
    "__version__",
    "convert_coding",
    "random_sbn",
    "exact_gradient",
    "exact_loss",
    "flatten_layer",
    "flatten_layers",
    "load_checkpoint",
    "model_from_checkpoint",
    "plan_exact",
    "save_checkpoint",
    "state_bits",
    "unflatten_layer",
]
