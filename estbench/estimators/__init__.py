"""The estimator contract (``base``) and the registry (``registry``) that collects every problem
kind's estimators and third-party plugins. The estimators themselves live with their kind
(``estbench/kinds/<kind>/``)."""

from .base import Estimator, EstimatorError, Hyper
from .registry import (
    DuplicateEstimatorError,
    Registry,
    build_registry,
    default_registry,
    get_estimator,
    parse_spec,
    split_specs,
)

__all__ = [
    "DuplicateEstimatorError",
    "Estimator",
    "EstimatorError",
    "Hyper",
    "Registry",
    "build_registry",
    "default_registry",
    "get_estimator",
    "parse_spec",
    "split_specs",
]
