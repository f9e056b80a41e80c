"""Double control variates and RODEO for stochastic binary weights (issue 19): ``weight-dcv`` and
``weight-rodeo``.

* exact: with sign activations the only randomness is the weights' K i.i.d. samples per group;
  the estimator depends on them only through their bits, so the mean is a finite sum over every
  joint state of the K samples of every Bernoulli pair (K x #weights bits, each with probability
  p or q), to 1e-10, at alpha = 0 (leave-one-out REINFORCE; the weights kind has no estimator of
  its own for it) and at a fixed alpha != 0 per group; the negative control (the correction's sign
  flipped) fails it;
* statistical unbiasedness with stochastic activations and the fitted alpha (per-coordinate z,
  Bonferroni, false-fail rate 1e-3 per test, fixed seeds), both weight modes, the hard-sigmoid
  weight noise; the negative control rejected by the same harness;
* ``weight-rodeo``: exact in the same way with a random control network and alpha, beta != 0; the
  zero control is ``weight-dcv`` at alpha = 0 draw for draw; statistically unbiased with a trained
  control; negative control (the Stein operator weighted by the current state's probability)
  fails the exact test;
* cost, reproducibility and conformance (``check_estimator``).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from estbench.estimators import get_estimator
from estbench.kinds.sbn.estimators.loo_cv import leave_one_out_mean
from estbench.kinds.weights.exact import exact_gradient
from estbench.kinds.weights.loo_cv import WeightDoubleCV, WeightRODEO
from estbench.kinds.weights.model import WeightProblem
from estbench.kinds.weights.paths import Uniforms
from estbench.testing import check_estimator

from .test_weights_estimators import net, problem_of, z_test
from .test_weights_logit_st import with_mode

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class FlippedCorrection(WeightDoubleCV):
    """Negative control: the correction's sign flipped (+ alpha gbar_{-i} F'(theta))."""

    @staticmethod
    def layer_parts(s):
        hbar = leave_one_out_mean(s.grad)
        c = (hbar * (s.bits - s.p)).sum(-1)
        A = (s.f - leave_one_out_mean(s.f))[..., None] * s.score
        B = (c - leave_one_out_mean(c))[..., None] * s.score + hbar * s.pdf
        return A, B


# ---- exact: every joint state of the K samples (sign activations) -----------------------------


def exact_problem() -> WeightProblem:
    """Sign activations, Bernoulli first and hidden pairs (2 + 2 weights), mse head."""
    return problem_of(
        (1, 2),
        ("bernoulli", "bernoulli", "real"),
        seed=4,
        coding="pm1",
        activation="sign",
        head="mse",
        eta_scale=1.2,
    )


def pattern_mean(estimator, problem: WeightProblem, alphas) -> torch.Tensor:
    """E[g] = sum over the K-bit states of every weight (i.i.d.) of P(state) g(state); the
    uniform of a one is p/2, of a zero (1 + p)/2 (per-point weights: the same for every point)."""
    m, K = problem.model, estimator.params["k"]
    layers = m.bernoulli_layers
    p = torch.cat([m.probs(k)[0].reshape(-1) for k in layers])
    n = p.numel()
    bits = torch.tensor(list(itertools.product((0.0, 1.0), repeat=K * n)), dtype=F64)
    bits = bits.reshape(-1, K, n)  # [C, sample, weight]
    prob = torch.where(bits == 1, p, 1 - p).flatten(1).prod(1)
    assert abs(float(prob.sum()) - 1) < 1e-12
    u = torch.where(bits == 1, p / 2, (1 + p) / 2)
    parts = iter(torch.split(u, [m.params[k].numel() for k in layers], dim=2))
    N = problem.n_points
    weights = []
    for k, kind in enumerate(m.kinds):
        if kind != "bernoulli":
            weights.append(None)
            continue
        w = next(parts).reshape(-1, K, *m.params[k].shape)
        if estimator.per_point:
            w = w[:, :, None].expand(-1, -1, N, -1, -1)
        weights.append(w)
    g = estimator.estimate(problem, Uniforms(weights, [None] * m.depth), alphas)
    return (prob[:, None] * g).sum(0)


@pytest.mark.parametrize(
    ("k", "mode"), [(3, "shared"), (2, "per-point")], ids=["k3-shared", "k2-per-point"]
)
@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_exactly_unbiased_over_every_joint_state(k, mode, alpha):
    pr = exact_problem()  # 4 weights: 2^12 (K = 3) or 2^8 (K = 2) joint states
    est = WeightDoubleCV(k=k, weights=mode)
    alphas = torch.tensor([alpha, -0.5 * alpha], dtype=F64)
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    mean = pattern_mean(est, pr, alphas)
    assert float(exact.abs().max()) > 1e-2
    torch.testing.assert_close(mean, exact, rtol=0, atol=1e-10)


def test_the_correction_changes_the_draws_and_its_flip_fails_the_exact_test():
    pr = exact_problem()
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    alphas = torch.tensor([0.8, -0.4], dtype=F64)
    est = WeightDoubleCV(k=3)
    noise = est.sample_noise(pr, 50, gen(1))
    a0 = est.estimate(pr, noise, alphas * 0)
    a1 = est.estimate(pr, noise, alphas)
    assert float((a0 - a1).abs().max()) > 1e-3  # the control variate is active
    mean = pattern_mean(FlippedCorrection(k=3), pr, alphas)
    assert float((mean - exact).abs().max()) > 1e-2


# ---- statistical unbiasedness -----------------------------------------------------------------

S_DRAWS = 20000


def hard_sigmoid_problem() -> WeightProblem:
    """Hard-sigmoid weights (eta_scale 1: some deterministic), uniform activations, {0, 1}."""
    return problem_of(
        (2, 2),
        ("real", "bernoulli", "real"),
        seed=13,
        activation="uniform",
        n_points=3,
        eta_scale=1.0,
        weight_noise="uniform",
    )


@pytest.mark.parametrize(
    ("name", "mode"),
    [("logistic-01", "shared"), ("gaussian-pm1", "per-point"), ("hard-sigmoid", "shared")],
)
def test_statistically_unbiased(name, mode):
    pr = hard_sigmoid_problem() if name == "hard-sigmoid" else net(name)
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    est = get_estimator(with_mode("weight-dcv", mode))
    alphas = est.prepare(pr, gen(3))
    assert float(alphas.abs().max()) > 0  # fitted, not zero
    draws = est.draw(pr, S_DRAWS, generator=gen(11), context=alphas)
    z, threshold = z_test(draws, exact)
    assert z < threshold, (z, threshold)


def test_alpha_zero_is_statistically_unbiased():
    pr = net("logistic-01")
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    draws = get_estimator("weight-dcv(warmup=0)").draw(pr, S_DRAWS, generator=gen(12))
    z, threshold = z_test(draws, exact)
    assert z < threshold, (z, threshold)


def test_negative_control_fails_the_statistical_test():
    pr = net("logistic-01")
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    est = FlippedCorrection()
    alphas = torch.full((est.n_groups(pr.model),), 1.0, dtype=F64)
    draws = est.draw(pr, S_DRAWS, generator=gen(11), context=alphas)
    z, threshold = z_test(draws, exact)
    assert z > 2 * threshold, (z, threshold)


# ---- cost, reproducibility, conformance -------------------------------------------------------


def test_cost_and_claims():
    stochastic = net("logistic-01")  # 1 Bernoulli pair, 2 stochastic layers: 3 groups
    sign = net("sign-pm1")  # 2 Bernoulli pairs, no stochastic layer
    for name in ("weight-dcv", "weight-rodeo"):
        est = get_estimator(name)
        assert est.evals_per_draw(stochastic.model) == 1 + 3 * 3
        assert get_estimator(f"{name}(k=2)").evals_per_draw(sign.model) == 1 + 2
        assert est.wrt == "eta" and est.family == "score-function"
        model = stochastic.model
        assert est.unbiased_layers(model) == frozenset(range(model.depth + 1))


def test_reproducible_and_chunked():
    pr = net("gaussian-pm1", n_points=3)
    est = get_estimator("weight-dcv(weights=per-point)")
    a = est.draw(pr, 64, generator=gen(5))
    assert torch.equal(a, est.draw(pr, 64, generator=gen(5)))
    assert not torch.equal(a, est.draw(pr, 64, generator=gen(6)))
    small = est.draw(pr, 64, generator=gen(5), memory_budget=5 * est.bytes_per_draw(pr))
    assert small.shape == a.shape and torch.isfinite(small).all()


# ---- RODEO ------------------------------------------------------------------------------------


class CurrentStateStein(WeightRODEO):
    """Negative control: the Stein operator weighted by the current state's probability."""

    def sbn_rodeo(self):
        rodeo = super().sbn_rodeo()
        rodeo.flip_probability = lambda s: torch.where(s.bits == 1, s.p, s.q)
        return rodeo


def random_control(est: WeightRODEO, problem: WeightProblem):
    control = est.random_control(problem, gen(7))
    G = control.alpha.numel()
    control.alpha = torch.linspace(0.5, 1.5, G, dtype=F64)
    control.beta = torch.linspace(-0.7, 0.9, G, dtype=F64)
    control.c = 0.3 * torch.randn(control.c.shape, generator=gen(8), dtype=F64)
    return control


@pytest.mark.parametrize(
    ("k", "mode"), [(3, "shared"), (2, "per-point")], ids=["k3-shared", "k2-per-point"]
)
def test_rodeo_exactly_unbiased_over_every_joint_state(k, mode):
    pr = exact_problem()
    est = WeightRODEO(k=k, weights=mode, hidden=8)
    control = random_control(est, pr)
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    mean = pattern_mean(est, pr, control)
    torch.testing.assert_close(mean, exact, rtol=0, atol=1e-10)
    noise = est.sample_noise(pr, 50, gen(1))
    zero = est.estimate(pr, noise, est.zero_control(pr))
    assert float((est.estimate(pr, noise, control) - zero).abs().max()) > 1e-3
    wrong = CurrentStateStein(k=k, weights=mode, hidden=8)
    assert float((pattern_mean(wrong, pr, control) - exact).abs().max()) > 1e-2


@pytest.mark.parametrize(("name", "mode"), [("logistic-01", "shared"), ("sign-pm1", "per-point")])
def test_rodeo_zero_control_is_dcv_at_alpha_zero(name, mode):
    pr = net(name, n_points=3)
    a = get_estimator(with_mode("weight-rodeo(train_steps=0)", mode)).draw(
        pr, 100, generator=gen(4)
    )
    b = get_estimator(with_mode("weight-dcv(warmup=0)", mode)).draw(pr, 100, generator=gen(4))
    assert float(a.abs().max()) > 1e-3
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_rodeo_trained_is_statistically_unbiased():
    pr = net("gaussian-pm1")
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    est = get_estimator("weight-rodeo(train_steps=20, hidden=8)")
    control = est.prepare(pr, gen(3))
    assert float(control.alpha.abs().max()) > 0  # trained
    draws = est.draw(pr, S_DRAWS, generator=gen(11), context=control)
    z, threshold = z_test(draws, exact)
    assert z < threshold, (z, threshold)


@pytest.mark.parametrize(
    "spec",
    [
        "weight-dcv",
        "weight-dcv(k=2, weights=per-point)",
        "weight-rodeo(train_steps=10, hidden=8)",
    ],
)
def test_conformance(spec):
    check_estimator(spec)
