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
    # A learned control (relax, rodeo and their ports) is unbiased for every value of what it
    # learns, so a short training checks the same claim as the default hundred steps (which
    # their own test files train and check), at a fraction of the time.
    hypers = REGISTRY[name].cls.hyperparameters
    spec = f"{name}(train_steps=10)" if "train_steps" in hypers else name
    report = check_estimator(REGISTRY.create(spec), raise_on_failure=False)
    assert report.passed, report.format()
