"""The estimator contract, exact path moments, and the first estimators (REINFORCE, ST).

Pattern for every estimator family:
* exact-expectation tests (deterministic) for path estimators via ``path_moments``;
* closed forms of spec §5.1 on ``bernoulli_toy``;
* known exact values on ``anchor_network`` (spec §5.3) and the seed networks;
* a negative control that must fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from estbench.estimators import get_estimator
from estbench.kinds.sbn.checkpoint import load_checkpoint
from estbench.kinds.sbn.exact import exact_gradient
from estbench.kinds.sbn.model import Problem
from estbench.kinds.sbn.moments import path_moments
from estbench.kinds.sbn.problems import ANCHOR_EXACT_GRADIENT, anchor_network, bernoulli_toy

from .conftest import random_problem


def rel(a, b) -> float:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return float((a - b).norm() / b.norm())


def problem_of(widths, **kw) -> Problem:
    return Problem.create(*random_problem(widths, **kw))


def test_anchor_network_exact_values():
    """Spec §5.3: E f = 1.3564515629 and the exact gradient row of its table."""
    pr = anchor_network()
    r = exact_gradient(pr.model, pr.X, pr.Y)
    assert float(r.loss) == pytest.approx(1.3564515629, abs=1e-10)
    g = r.layer_vectors()
    for k in (0, 1):
        assert g[k].tolist() == pytest.approx(ANCHOR_EXACT_GRADIENT[k], abs=2e-6)


@pytest.mark.parametrize(
    "spec", ["reinforce", "reinforce(baseline=constant, c=1.3)", "reinforce(baseline=oracle)"]
)
@pytest.mark.parametrize("widths", [(3, 3, 3), (2, 3, 2, 3)])
def test_reinforce_is_exactly_unbiased(spec, widths):
    pr = problem_of(widths, seed=21, head="softmax", coding="pm1")
    m = path_moments(get_estimator(spec), pr)
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    assert rel(m.mean, exact) < 1e-12


def test_reinforce_frozen_baseline_is_unbiased_given_its_baseline():
    pr = problem_of((3, 3, 2), seed=4, head="mse", coding="01", noise="gaussian")
    est = get_estimator("reinforce(baseline=frozen, warmup=20)")
    context = est.prepare(pr, torch.Generator().manual_seed(0))
    m = path_moments(est, pr, context=context)
    assert rel(m.mean, exact_gradient(pr.model, pr.X, pr.Y).flat()) < 1e-12
    plain = path_moments(get_estimator("reinforce"), pr)
    assert m.variance.sum() < plain.variance.sum()  # the point of a baseline


def test_st_expectation_on_the_anchor_network():
    """Spec §5.3 row 'E ST (2 sigma')', +-1 coding."""
    m = path_moments(get_estimator("st"), anchor_network())
    got = m.layer_means()
    assert got[0].tolist() == pytest.approx(
        [-0.173537, 0.086768, 0.18078, -0.09039, -0.173537, 0.18078], abs=2e-6
    )
    assert got[1].tolist() == pytest.approx(
        [
            -0.123524,
            -0.089562,
            0.154576,
            0.091176,
            -0.045917,
            0.013332,
            -0.31911,
            0.337534,
            -0.150339,
        ],
        abs=2e-6,
    )


@pytest.mark.parametrize(("spec", "key"), [("reinforce", "score"), ("st", "st")])
def test_seed_net_expectations(seed_checkpoint, spec, key):
    ckpt = load_checkpoint(seed_checkpoint)
    pr = Problem.create(ckpt.model(coding="01"), *ckpt.data())
    means = path_moments(get_estimator(spec), pr).layer_means()
    for k, v in enumerate(means):
        assert rel(v, ckpt.extra[f"{key}_expected_grad_layer{k}"]) < 1e-10, f"layer{k}"


@pytest.mark.parametrize("theta,t", [(0.3, 0.45), (-1.7, 0.2), (2.5, 0.49)])
def test_bernoulli_closed_forms(theta, t):
    """Spec §5.1 for f(b) = (b - t)^2: REINFORCE and principled ST, mean and variance."""
    pr = bernoulli_toy(theta, t)
    p = 1 / (1 + np.exp(-theta))
    g = p * (1 - p) * (1 - 2 * t)
    idx = 1  # layer0 = [dW0 (input is 0), db0]
    r = path_moments(get_estimator("reinforce"), pr)
    assert float(r.mean[idx]) == pytest.approx(g, rel=1e-12)
    var_reinforce = p * (1 - p) * ((1 - p) * (1 - t) ** 4 + p * t**4) - g**2
    assert float(r.variance[idx]) == pytest.approx(var_reinforce, rel=1e-10)
    s = path_moments(get_estimator("st"), pr)
    assert float(s.mean[idx]) == pytest.approx(2 * (p - t) * p * (1 - p), rel=1e-12)
    assert float(s.variance[idx]) == pytest.approx(4 * p**3 * (1 - p) ** 3, rel=1e-10)


def test_bernoulli_numeric_anchors():
    """Spec §5.1 anchor rows: g, Var REINFORCE, E ST, Var ST."""
    for (theta, t), (g, var_r, e_st, var_st) in {
        (0.3, 0.45): (0.02444583, 0.01468029, 0.06084202, 0.05843518),
        (-1.7, 0.2): (0.07836345, 0.03912427, -0.0118942, 8.911419e-3),
    }.items():
        pr = bernoulli_toy(theta, t)
        r = path_moments(get_estimator("reinforce"), pr)
        s = path_moments(get_estimator("st"), pr)
        assert float(r.mean[1]) == pytest.approx(g, rel=1e-6)
        assert float(r.variance[1]) == pytest.approx(var_r, rel=1e-6)
        assert float(s.mean[1]) == pytest.approx(e_st, rel=1e-5)
        assert float(s.variance[1]) == pytest.approx(var_st, rel=1e-6)


def test_st_is_biased_below_the_head_and_unbiased_in_it():
    """Negative control for the exact-expectation test: ST's bias is found, except in the head."""
    pr = problem_of((3, 3, 3), seed=2, head="softmax")
    m = path_moments(get_estimator("st"), pr).layer_means()
    exact = exact_gradient(pr.model, pr.X, pr.Y).layer_vectors()
    assert all(rel(m[k], exact[k]) > 1e-3 for k in range(3))
    assert rel(m[3], exact[3]) < 1e-12


@pytest.mark.parametrize("spec", ["reinforce", "st"])
def test_draws_match_exact_moments(spec):
    """Monte Carlo draws agree with the exact moments: |z| < 4.9 on every coordinate
    (Bonferroni at alpha = 1e-3 over P <= 60 coordinates; fixed seed), variance within 5 %."""
    pr = problem_of((2, 3, 2), seed=9, head="logistic", coding="01", n_points=4)
    m = path_moments(get_estimator(spec), pr)
    d = get_estimator(spec).draw(pr, 40000, generator=torch.Generator().manual_seed(3))
    z = (d.mean(0) - m.mean) / (m.variance.sqrt() / 40000**0.5).clamp_min(1e-300)
    assert float(z.abs().max()) < 4.9
    assert float(d.var(0).sum()) == pytest.approx(float(m.variance.sum()), rel=0.05)


def test_draws_are_reproducible_and_chunk_sized_by_the_budget():
    pr = problem_of((3, 3), seed=1)
    est = get_estimator("st")
    a = est.draw(pr, 300, generator=torch.Generator().manual_seed(5))
    b = est.draw(pr, 300, generator=torch.Generator().manual_seed(5))
    c = est.draw(pr, 300, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (300, pr.n_params) and a.dtype == torch.float64
    small = est.draw(
        pr,
        300,
        generator=torch.Generator().manual_seed(5),
        memory_budget=est.bytes_per_draw(pr) * 7,
    )  # 43 chunks of <= 7 draws
    assert small.shape == a.shape and torch.isfinite(small).all()
