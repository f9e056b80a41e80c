"""Straight-through variants, DARN / binary ReinMax and the deterministic mean field.

The ST-type estimators' only randomness is the sampled path, so their mean and variance are
computed exactly by path enumeration (``path_moments``) -- no sampling error, no flaky tests:
closed forms of spec §5.1 on ``bernoulli_toy``, the §5.3 anchor network, invariances, and exact
negative controls (a known-biased estimator must show its bias). The mean field is checked
against the seed study's stored AP1 gradients and against autograd.
"""

from __future__ import annotations

import math

import pytest
import torch

from estbench.estimators import get_estimator
from estbench.kinds.sbn.checkpoint import load_checkpoint
from estbench.kinds.sbn.exact import exact_gradient
from estbench.kinds.sbn.model import Problem, convert_coding
from estbench.kinds.sbn.moments import path_moments
from estbench.kinds.sbn.problems import anchor_network, bernoulli_toy

from .conftest import random_problem

F64 = torch.float64
DB0 = 1  # flat index of db0 on the toy: layer0 = [dW0 (its input is 0), db0]
ST_VARIANTS = [
    "st-identity",
    "st-hardtanh",
    "st-tanh",
    "st-slope(s=2.0)",
    "st-slope(s=0.5, form=hard)",
    "darn",
]


def rel(a, b) -> float:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return float((a - b).norm() / b.norm())


def problem_of(widths, **kw) -> Problem:
    return Problem.create(*random_problem(widths, **kw))


def recoded(pr: Problem, coding: str) -> Problem:
    return Problem.create(convert_coding(pr.model, coding), pr.X, pr.Y)


def toy_moments(spec: str, theta: float, t: float, coding: str = "01") -> tuple[float, float]:
    pr = bernoulli_toy(theta, t)
    if coding == "pm1":  # head (1/2, 1/2): z = (x + 1)/2, the same f on the states
        pr = recoded(pr, "pm1")
    m = path_moments(get_estimator(spec), pr)
    return float(m.mean[DB0]), float(m.variance[DB0])


# ---- spec §5.1: the single Bernoulli, f(b) = (b - t)^2 with real extension (beta - t)^2 ------

TOY = [(0.3, 0.45), (-1.7, 0.2), (2.5, 0.49), (0.8, 0.1)]


@pytest.mark.parametrize(("theta", "t"), TOY)
def test_toy_closed_forms(theta, t):
    p = 1 / (1 + math.exp(-theta))
    g = p * (1 - p) * (1 - 2 * t)
    inside = float(abs(theta) <= 1)
    sech2 = 1 - math.tanh(theta) ** 2
    expected = {  # spec §5.1: (mean, variance) of db0
        ("st-identity", "01"): (2 * (p - t), 4 * p * (1 - p)),
        ("st-identity", "pm1"): (p - t, p * (1 - p)),
        ("darn", "01"): (g, p * (1 - p) * ((1 - p) * (1 - t) ** 2 + p * t**2) - g**2),
    }
    # hardtanh, tanh and DARN are coding invariant: the +-1 forms hold in both codings.
    for coding in ("01", "pm1"):
        expected["st-hardtanh", coding] = ((p - t) * inside, p * (1 - p) * inside)
        expected["st-tanh", coding] = ((p - t) * sech2, p * (1 - p) * sech2**2)
    expected["darn", "pm1"] = expected["darn", "01"]
    for (spec, coding), (mean, var) in expected.items():
        got_mean, got_var = toy_moments(spec, theta, t, coding)
        assert got_mean == pytest.approx(mean, rel=1e-12, abs=1e-15), (spec, coding)
        assert got_var == pytest.approx(var, rel=1e-10, abs=1e-15), (spec, coding)


def test_toy_numeric_anchors():
    """Spec §5.1 rows: identity ST {0,1} means and Var DARN."""
    assert toy_moments("st-identity", 0.3, 0.45)[0] == pytest.approx(0.248885, abs=1e-6)
    assert toy_moments("st-identity", -1.7, 0.2)[0] == pytest.approx(-0.09106947, rel=1e-6)
    assert toy_moments("darn", 0.3, 0.45)[1] == pytest.approx(0.05930832, rel=1e-6)
    assert toy_moments("darn", -1.7, 0.2)[1] == pytest.approx(0.06534242, rel=1e-6)


@pytest.mark.parametrize("noise", ["logistic", "gaussian", "uniform"])
def test_darn_is_unbiased_for_a_quadratic_loss_in_one_layer(noise):
    """One binary layer, mse head: f is quadratic in x, so DARN's trapezoid-rule mean
    F'(a) (f'(0) + f'(1))/2 is exact for every noise -- this checks the general-F form
    D = (b - 1/2) * score. Negative control with the same exact test: principled ST is biased
    here, because (beta - y)^2 is not multilinear off the cube (P10)."""
    pr = problem_of((4,), seed=3, head="mse", coding="01", noise=noise)
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    assert rel(path_moments(get_estimator("darn"), pr).mean, exact) < 1e-12
    assert rel(path_moments(get_estimator("st"), pr).mean, exact) > 1e-3


# ---- spec §5.3: the deep anchor network (+-1 coding, logistic noise) --------------------------


@pytest.mark.parametrize(
    ("spec", "row0", "row1"),
    [
        (
            "st-identity",
            [-1.507863, 0.753931, 0.885856, -0.442928, -1.507863, 0.885856],
            [
                -0.349828,
                -0.118121,
                0.357595,
                0.14505,
                -0.107654,
                0.071513,
                -0.845278,
                0.829909,
                -0.411597,
            ],
        ),
        (
            "darn",
            [-0.223568, 0.111784, 0.200798, -0.100399, -0.223568, 0.200798],
            [
                -0.183661,
                -0.062823,
                0.185975,
                0.033028,
                -0.068153,
                -0.060984,
                -0.366915,
                0.364121,
                -0.166472,
            ],
        ),
    ],
)
def test_anchor_network_expectations(spec, row0, row1):
    got = path_moments(get_estimator(spec), anchor_network()).layer_means()
    assert got[0].tolist() == pytest.approx(row0, abs=2e-6)
    assert got[1].tolist() == pytest.approx(row1, abs=2e-6)


@pytest.mark.parametrize("spec", ST_VARIANTS)
def test_biased_below_the_head_and_unbiased_in_it(spec):
    """The claim ``unbiased_layers == {L}``, checked exactly, with the bias of every binary layer
    detected by the same exact comparison (negative control)."""
    pr = problem_of((3, 3, 2), seed=2, head="softmax", coding="pm1")
    est = get_estimator(spec)
    assert est.unbiased_layers(pr.model) == {pr.model.depth} and est.unbiased == "head only"
    mean = path_moments(est, pr).layer_means()
    exact = exact_gradient(pr.model, pr.X, pr.Y).layer_vectors()
    assert all(rel(mean[k], exact[k]) > 1e-3 for k in range(pr.model.depth))
    assert rel(mean[-1], exact[-1]) < 1e-12


# ---- invariances --------------------------------------------------------------------------


def test_slope_one_is_principled_st_and_hard_slope_one_is_hardtanh():
    pr = problem_of((3, 2, 3), seed=8, head="logistic", coding="01", noise="gaussian")
    seed = dict(generator=torch.Generator().manual_seed(4))
    st = get_estimator("st").draw(pr, 400, **seed)
    seed = dict(generator=torch.Generator().manual_seed(4))
    assert torch.equal(get_estimator("st-slope").draw(pr, 400, **seed), st)
    assert torch.equal(
        get_estimator("st-slope(s=1.0)").draw(pr, 400, generator=torch.Generator().manual_seed(4)),
        st,
    )
    hard = get_estimator("st-slope(form=hard)").draw(
        pr, 400, generator=torch.Generator().manual_seed(4)
    )
    hardtanh = get_estimator("st-hardtanh").draw(
        pr, 400, generator=torch.Generator().manual_seed(4)
    )
    assert torch.equal(hard, hardtanh)


@pytest.mark.parametrize("coding", ["pm1", "01"])
def test_hardtanh_is_principled_st_under_uniform_noise(coding):
    """F = clip((a + 1)/2) gives 2F' = 1[|a| <= 1]; scale 1.6 puts units on both sides of 1."""
    pr = problem_of((3, 3), seed=5, head="softmax", coding=coding, noise="uniform", scale=1.6)
    a = path_moments(get_estimator("st-hardtanh"), pr)
    b = path_moments(get_estimator("st"), pr)
    torch.testing.assert_close(a.mean, b.mean, rtol=1e-14, atol=1e-16)
    torch.testing.assert_close(a.variance, b.variance, rtol=1e-14, atol=1e-16)
    # ... and the bias is not trivially zero: the other noises make them differ.
    other = problem_of((3, 3), seed=5, head="softmax", coding=coding, scale=1.6)
    assert (
        rel(
            path_moments(get_estimator("st-hardtanh"), other).mean,
            path_moments(get_estimator("st"), other).mean,
        )
        > 1e-2
    )


@pytest.mark.parametrize(
    "spec", ["st-hardtanh", "st-tanh", "st-slope(s=3.0)", "darn", "mean-field"]
)
def test_coding_invariance_of_the_first_layer(spec):
    """Coding-invariant proxies scale D by 2 in +-1 coding (P1): the first layer's exact mean
    and variance are the same for the same network in either coding."""
    pr = problem_of((2, 3, 2), seed=6, head="softmax", coding="pm1")
    other = recoded(pr, "01")
    n0 = pr.model.layer_sizes[0]
    est = get_estimator(spec)
    if spec == "mean-field":
        a, b = est.gradient(pr)[:n0], est.gradient(other)[:n0]
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
        return
    a, b = path_moments(est, pr), path_moments(est, other)
    torch.testing.assert_close(a.mean[:n0], b.mean[:n0], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(a.variance[:n0], b.variance[:n0], rtol=1e-12, atol=1e-15)


def test_identity_st_is_not_coding_invariant():
    """Spec §4.1: identity ST in {0,1} is +-1 identity ST with D = 2, so the first layer's
    estimate is 2^L times the +-1 one (each binary layer and the head double the signal)."""
    pr = problem_of((2, 3, 2), seed=6, head="softmax", coding="pm1")
    other = recoded(pr, "01")
    n0 = pr.model.layer_sizes[0]
    est = get_estimator("st-identity")
    a = est.draw(pr, 300, generator=torch.Generator().manual_seed(1))[:, :n0]
    b = est.draw(other, 300, generator=torch.Generator().manual_seed(1))[:, :n0]
    torch.testing.assert_close(b, 2**pr.model.depth * a, rtol=1e-12, atol=1e-14)


# ---- the deterministic mean field (AP1 / "tanh") -------------------------------------------


def test_mean_field_matches_the_seed_study(seed_checkpoint):
    ckpt = load_checkpoint(seed_checkpoint)
    pr = Problem.create(ckpt.model(coding="01"), *ckpt.data())
    est = get_estimator("mean-field")
    d = est.draw(pr, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(d[0], d[1]) and torch.equal(d[0], d[2])
    for k, v in enumerate(pr.split(d[0])):
        assert rel(v, ckpt.extra[f"ap1_grad_layer{k}"]) < 1e-10, f"layer{k}"


def _mean_field_autograd(pr: Problem) -> torch.Tensor:
    m = pr.model
    params = [
        t.detach().clone().requires_grad_()
        for pair in zip(m.weights, m.biases, strict=True)
        for t in pair
    ]
    x = pr.X
    for k in range(m.depth):
        mu = m.noise.cdf(x @ params[2 * k].T + params[2 * k + 1])
        x = mu if m.coding == "01" else 2 * mu - 1
    loss = m.head.loss(x @ params[-2].T + params[-1], pr.Y).mean()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


@pytest.mark.parametrize("noise", ["logistic", "gaussian", "uniform"])
@pytest.mark.parametrize(
    ("coding", "head"), [("pm1", "softmax"), ("01", "mse"), ("pm1", "logistic")]
)
def test_mean_field_equals_autograd(noise, coding, head):
    pr = problem_of((3, 4, 2), seed=10, head=head, coding=coding, noise=noise)
    got = get_estimator("mean-field").draw(pr, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(got[1], _mean_field_autograd(pr), rtol=1e-12, atol=1e-14)


def test_mean_field_metadata():
    est = get_estimator("mean-field")
    pr = problem_of((2, 2), seed=1)
    assert est.stochastic is False and est.family == "deterministic"
    assert est.unbiased_layers(pr.model) == frozenset()


# ---- contract -----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [*ST_VARIANTS, "mean-field"])
@pytest.mark.parametrize("noise", ["logistic", "gaussian", "uniform"])
@pytest.mark.parametrize(
    ("coding", "head"), [("pm1", "softmax"), ("01", "mse"), ("01", "logistic")]
)
def test_smoke_every_noise_coding_and_head(spec, noise, coding, head):
    """Smoke test: shape, dtype and finiteness (values are tested above)."""
    pr = problem_of((2, 3), seed=12, head=head, coding=coding, noise=noise, n_points=4)
    d = get_estimator(spec).draw(pr, 40, generator=torch.Generator().manual_seed(0))
    assert d.shape == (40, pr.n_params) and d.dtype == F64
    assert torch.isfinite(d).all()


@pytest.mark.parametrize("spec", [*ST_VARIANTS, "mean-field"])
def test_reproducible(spec):
    pr = problem_of((3, 3), seed=1)
    est = get_estimator(spec)
    a = est.draw(pr, 200, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, est.draw(pr, 200, generator=torch.Generator().manual_seed(5)))
    differs = not torch.equal(a, est.draw(pr, 200, generator=torch.Generator().manual_seed(6)))
    assert differs == est.stochastic
