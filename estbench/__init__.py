"""estbench: how accurate are gradient estimators for stochastic binary networks?

The public API; everything else is importable but not promised to stay.

Names are imported on first use (PEP 562), so ``import estbench`` and the command line's
``--help``, ``cases`` and ``checkpoints`` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import CheckpointError, EstbenchError, MemoryBudgetError, ModelError

if TYPE_CHECKING:
    from .estimators import Estimator, default_registry, get_estimator
    from .kinds.sbn.checkpoint import (
        Checkpoint,
        load_checkpoint,
        model_from_checkpoint,
        save_checkpoint,
    )
    from .kinds.sbn.exact import ExactResult, exact_gradient, exact_loss, plan_exact
    from .kinds.sbn.model import (
        HEADS,
        NOISES,
        SBN,
        Problem,
        convert_coding,
        flatten_layer,
        flatten_layers,
        random_sbn,
        state_bits,
        unflatten_layer,
    )

_LAZY = {
    "Checkpoint": "kinds.sbn.checkpoint",
    "load_checkpoint": "kinds.sbn.checkpoint",
    "model_from_checkpoint": "kinds.sbn.checkpoint",
    "save_checkpoint": "kinds.sbn.checkpoint",
    "Estimator": "estimators",
    "Problem": "kinds.sbn.model",
    "default_registry": "estimators",
    "get_estimator": "estimators",
    "ExactResult": "kinds.sbn.exact",
    "exact_gradient": "kinds.sbn.exact",
    "exact_loss": "kinds.sbn.exact",
    "plan_exact": "kinds.sbn.exact",
    "HEADS": "kinds.sbn.model",
    "NOISES": "kinds.sbn.model",
    "SBN": "kinds.sbn.model",
    "convert_coding": "kinds.sbn.model",
    "flatten_layer": "kinds.sbn.model",
    "flatten_layers": "kinds.sbn.model",
    "random_sbn": "kinds.sbn.model",
    "state_bits": "kinds.sbn.model",
    "unflatten_layer": "kinds.sbn.model",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
