"""CARMS, binary case (issue 19), beside ARMS.

* with p <= 1/2 (the minority state on the copula's lower tail) CARMS is ARMS: equal estimates on
  the same noise (the pairwise importance-weighted sum reduces to ARMS's form; deterministic);
* with p > 1/2 its single-unit mean and variance follow from the copula's count distribution
  (exact), checked by Monte Carlo (200k draws, |z| < 4.5: false-fail rate about 1e-5 per z);
* statistical unbiasedness on the three depth-3 networks of tests/test_score_estimators.py (20k
  draws, per-coordinate Bonferroni at 1e-3 plus the aggregate test; fixed seeds), and the
  negative control -- the same K antithetic samples with the importance weights dropped (r = 1,
  plain leave-one-out) -- rejected by the same harness;
* cost and conformance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from estbench.estimators import get_estimator
from estbench.kinds.sbn.estimators.score_noise import CARMS, arms_joint, copula_pair_pmf
from estbench.kinds.sbn.problems import bernoulli_toy
from estbench.testing import check_estimator

from .test_score_estimators import (
    IDX,
    N_DRAWS,
    STAT_NETS,
    copula_count_pmf,
    problem_of,
    stat_problems,  # noqa: F401 (fixture)
    unbiasedness,
)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_pair_pmf_is_a_pmf_with_the_right_marginals():
    p = torch.linspace(0, 1, 41, dtype=torch.float64)
    for K in (2, 3, 4, 7):
        p11, p10, p00 = copula_pair_pmf(p, K)
        torch.testing.assert_close(p11 + 2 * p10 + p00, torch.ones_like(p))
        torch.testing.assert_close(p11 + p10, p)
        assert bool((torch.stack([p11, p10, p00]) >= -1e-15).all())
    # K = 2 is perfectly antithetic: v2 = 1 - v1.
    p11, _, _ = copula_pair_pmf(p, 2)
    torch.testing.assert_close(p11, (2 * p - 1).clamp_min(0))


@pytest.mark.parametrize("theta", [-0.3, -1.7, -3.0])
@pytest.mark.parametrize("K", [3, 4, 6])
def test_carms_is_arms_when_on_is_the_minority(theta, K):
    """p < 1/2: both put "on" on the copula's lower tail, so the estimates agree on any noise."""
    pr = bernoulli_toy(theta, 0.2)
    noise = [
        torch.rand(500, K, 1, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ]
    a = get_estimator(f"carms(k={K})").estimate(pr, noise)
    b = get_estimator(f"arms(k={K})").estimate(pr, noise)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("theta", [0.4, 1.7])
def test_carms_toy_with_on_the_majority_by_monte_carlo(theta):
    """p > 1/2: the count S of ones among K = 4 copula samples (on iff v < p) has the pmf of
    ``copula_count_pmf(p, K)``, and g_hat = p q D S (K - S) / (K (K-1) (p - C(p, p))): exact mean
    g and exact variance; 200k draws, |z| < 4.5 for the mean and for the variance. ARMS (which
    flips) has another variance here, so the two are different estimators."""
    t, K, S = 0.2, 4, 200_000
    pr = bernoulli_toy(theta, t)
    p = sigmoid(theta)
    q, delta = 1 - p, 1 - 2 * t
    g = p * q * delta
    pmf = copula_count_pmf(p, K)
    counts = np.arange(K + 1)
    J = float(arms_joint(torch.tensor(p, dtype=torch.float64), K))
    values = p * q * delta * counts * (K - counts) / (K * (K - 1) * (p - J))
    exact_mean = float((pmf * values).sum())
    exact_var = float((pmf * values**2).sum()) - exact_mean**2
    assert exact_mean == pytest.approx(g, rel=1e-12)
    d = get_estimator("carms").draw(pr, S, generator=torch.Generator().manual_seed(1))[:, IDX]
    d = d.numpy()
    assert abs(d.mean() - g) / (d.std() / math.sqrt(S)) < 4.5
    sq = (d - g) ** 2
    assert abs(sq.mean() - exact_var) / (sq.std() / math.sqrt(S)) < 4.5
    arms = get_estimator("arms").draw(pr, S, generator=torch.Generator().manual_seed(1))[:, IDX]
    sq_arms = (arms.numpy() - g) ** 2
    assert abs(sq_arms.mean() - exact_var) / (sq_arms.std() / math.sqrt(S)) > 10


@pytest.mark.parametrize("net", list(STAT_NETS))
@pytest.mark.parametrize("spec", ["carms", "carms(k=3)"])
def test_carms_is_unbiased(stat_problems, net, spec):  # noqa: F811
    """As tests/test_score_estimators.py::test_noise_estimators_are_unbiased (false-fail rate
    <= 1e-3 for the z part, about 1e-3 to 2 % for the aggregate part; fixed seeds)."""
    pr, g = stat_problems[net]
    draws = get_estimator(spec).draw(pr, N_DRAWS, generator=torch.Generator().manual_seed(11))
    passed, detail = unbiasedness(draws, g)
    assert passed, f"{spec} on {net}: {detail}"


class CARMSWithoutWeights(CARMS):
    """Negative control: the antithetic samples treated as independent (r = 1, plain LOO), whose
    mean is (p - C(p, p)) / (p q) times the gradient."""

    def pair_ratios(self, p, q, z):
        return torch.ones_like(super().pair_ratios(p, q, z))


@pytest.mark.parametrize("net", list(STAT_NETS))
def test_negative_control_without_importance_weights(stat_problems, net):  # noqa: F811
    pr, g = stat_problems[net]
    draws = CARMSWithoutWeights().draw(pr, N_DRAWS, generator=torch.Generator().manual_seed(11))
    passed, detail = unbiasedness(draws, g)
    assert not passed, detail


def test_cost_and_metadata():
    pr = problem_of((5, 5, 5), seed=0, n_points=2)
    assert get_estimator("carms").evals_per_draw(pr.model) == 10  # 1 + (K - 1) L
    assert get_estimator("carms(k=6)").evals_per_draw(pr.model) == 16
    est = get_estimator("carms")
    assert est.family == "score-function" and est.unbiased_layers(pr.model) == set(range(4))


def test_conformance():
    check_estimator("carms")


def test_reproducible_and_chunked():
    pr = problem_of((3, 2, 3), seed=1, coding="01", noise="gaussian", head="softmax", n_points=3)
    est = get_estimator("carms")
    a = est.draw(pr, 64, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, est.draw(pr, 64, generator=torch.Generator().manual_seed(5)))
    small = est.draw(
        pr, 64, generator=torch.Generator().manual_seed(5), memory_budget=5 * est.bytes_per_draw(pr)
    )
    assert small.shape == a.shape and torch.isfinite(small).all()
