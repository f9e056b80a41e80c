"""estbench: how accurate are gradient estimators for stochastic binary networks?

The public API; everything else is importable but not promised to stay.
"""

from ._version import __version__
from .checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from .errors import CheckpointError, EstbenchError, MemoryBudgetError, ModelError
from .estimators import Estimator, Problem, default_registry, get_estimator
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
    "Estimator",
    "ExactResult",
    "MemoryBudgetError",
    "ModelError",
    "Problem",
    "__version__",
    "convert_coding",
    "default_registry",
    "random_sbn",
    "exact_gradient",
    "exact_loss",
    "flatten_layer",
    "flatten_layers",
    "get_estimator",
    "load_checkpoint",
    "model_from_checkpoint",
    "plan_exact",
    "save_checkpoint",
    "state_bits",
    "unflatten_layer",
]
