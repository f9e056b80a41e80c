"""relaxed family (in progress)."""

from __future__ import annotations

from .base import Estimator

ESTIMATORS: list[type[Estimator]] = []
