"""One contract test over the whole registry, plugins included: every estimator passes
``estbench.testing.check_estimator`` (shapes, determinism, zero loss, and its unbiasedness claim
against exact gradients; false-fail rate 2e-3 per estimator, fixed seeds)."""

from __future__ import annotations

import pytest

from estbench.estimators import default_registry
from estbench.testing import check_estimator

REGISTRY = default_registry()


def test_registry_loaded_without_problems():
    assert not REGISTRY.problems


@pytest.mark.parametrize("name", list(REGISTRY))
def test_estimator_conforms(name):
    report = check_estimator(REGISTRY.create(name), raise_on_failure=False)
    assert report.passed, report.format()
