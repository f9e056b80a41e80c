"""Gradient estimators for SBNs: the contract (base), shared operations (ops), one module per
family, and the registry that also loads third-party plugins."""

from .base import Estimator, EstimatorError, Hyper, PathEstimator, Problem
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
    "PathEstimator",
    "Problem",
    "Registry",
    "build_registry",
    "default_registry",
    "get_estimator",
    "parse_spec",
    "split_specs",
]
