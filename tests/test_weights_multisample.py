"""ARMS and CARMS for stochastic binary weights (issue 19): ``weight-arms`` and ``weight-carms``.

* exact: with sign activations the only randomness is the weights' copulas; both estimators depend
  on them only through the K bits of each weight, whose joint law is exchangeable with the count
  distribution of the Dirichlet copula (``copula_count_pmf``, tests/test_score_estimators.py), so
  the mean is a finite sum over every joint bit pattern (deterministic, to 1e-12), here with
  weights on both sides of p = 1/2; the negative controls (ARMS without its flip, CARMS without its
  importance weights) fail the same exact test;
* reductions on the same noise (deterministic): K = 2 is ``weight-disarm``; ``weight-carms`` equals
  ``weight-arms`` when every Bernoulli (weights and units) has p < 1/2, and differs otherwise;
* statistical unbiasedness with stochastic activations (per-coordinate z, Bonferroni, false-fail
  rate 1e-3 per test, fixed seeds), both weight modes, the hard-sigmoid weight noise, and the
  negative control rejected by the same harness;
* cost, reproducibility and conformance (``check_estimator``).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from estbench.estimators import get_estimator
from estbench.kinds.weights.estimators import WeightDisARM
from estbench.kinds.weights.exact import exact_gradient
from estbench.kinds.weights.model import WeightProblem
from estbench.kinds.weights.multisample import WeightARMS, WeightCARMS
from estbench.kinds.weights.paths import Uniforms, draw_uniforms
from estbench.testing import check_estimator

from .test_score_estimators import copula_count_pmf
from .test_weights_estimators import net, problem_of, z_test
from .test_weights_logit_st import with_mode

F64 = torch.float64
NEW = ("weight-arms", "weight-carms")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- exact: every joint bit pattern of the copulas (sign activations) -------------------------


def exact_problem() -> WeightProblem:
    """Sign activations, Bernoulli first and hidden pairs (2 + 2 weights), mse head."""
    pr = problem_of(
        (1, 2),
        ("bernoulli", "bernoulli", "real"),
        seed=4,
        coding="pm1",
        activation="sign",
        head="mse",
        eta_scale=1.2,
    )
    p = torch.cat([pr.model.probs(k)[0].reshape(-1) for k in pr.model.bernoulli_layers])
    assert bool((p < 0.45).any()) and bool((p > 0.55).any())  # both sides of 1/2
    return pr


def pattern_mean(estimator, problem: WeightProblem, flip: bool) -> torch.Tensor:
    """E[g] = sum over the K-bit patterns of every weight of P(pattern) g(pattern).

    The K samples of a weight are exchangeable, so P(pattern) = pmf(c) / C(K, c) with c its count
    of ones: the count of copula samples below p (no flip), or, flipped (p >= 1/2), K minus the
    count below q. The estimator reads the copula samples v; v is chosen inside the cell that
    gives each pattern (u = p/2 for a one, (1 + p)/2 for a zero; v = 1 - u when flipped)."""
    m, K = problem.model, estimator.params["k"]
    layers = m.bernoulli_layers
    ps = [m.probs(k)[0].reshape(-1) for k in layers]
    p = torch.cat(ps)
    n = p.numel()
    patterns = torch.tensor(list(itertools.product((0.0, 1.0), repeat=K * n)), dtype=F64)
    bits = patterns.reshape(-1, n, K)  # [C, weight, sample]
    counts = bits.sum(-1).long()
    prob = torch.ones(bits.shape[0], dtype=F64)
    for j in range(n):
        pj = float(p[j])
        flipped = flip and pj >= 0.5
        low = 1 - pj if flipped else pj  # P(a copula sample is below the threshold)
        pmf = copula_count_pmf(low, K)
        assert abs(pmf.sum() - 1) < 1e-12 and abs((pmf * range(K + 1)).sum() - K * low) < 1e-12
        if flipped:
            pmf = pmf[::-1]  # ones = K - (samples below q)
        table = torch.tensor([pmf[c] / math.comb(K, c) for c in range(K + 1)], dtype=F64)
        prob = prob * table[counts[:, j]]
    assert abs(float(prob.sum()) - 1) < 1e-12
    u = torch.where(bits == 1, p[:, None] / 2, (1 + p[:, None]) / 2)
    if flip:
        u = torch.where(p[:, None] >= 0.5, 1 - u, u)
    v = u.transpose(1, 2)  # [C, K, weight]
    parts = iter(torch.split(v, [m.params[k].numel() for k in layers], dim=2))
    weights = [
        next(parts).reshape(-1, K, *m.params[k].shape) if kind == "bernoulli" else None
        for k, kind in enumerate(m.kinds)
    ]
    g = estimator.estimate(problem, Uniforms(weights, [None] * m.depth))
    return (prob[:, None] * g).sum(0)


class ARMSWithoutFlip(WeightARMS):
    """Negative control: every copula sample on the lower tail (on iff v < p), ARMS's debiasing
    factor for m = min(p, q) kept -- biased for p > 1/2."""

    def sample_uniforms(self, v, p, q):
        return v


class CARMSWithoutWeights(WeightCARMS):
    """Negative control: the antithetic samples treated as independent (r = 1, plain leave-one-out
    REINFORCE), whose mean is (p - C(p, p)) / (p q) times the gradient."""

    def pair_ratios(self, bits, p, q):
        return torch.ones_like(super().pair_ratios(bits, p, q))


@pytest.mark.parametrize(
    ("estimator", "flip"), [(WeightARMS(k=3), True), (WeightCARMS(k=3), False)], ids=NEW
)
def test_exactly_unbiased_over_the_copula_patterns(estimator, flip):
    pr = exact_problem()  # 4 weights, K = 3: 4096 joint patterns
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    mean = pattern_mean(estimator, pr, flip)
    assert float(exact.abs().max()) > 1e-2
    torch.testing.assert_close(mean, exact, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("estimator", "flip"),
    [(ARMSWithoutFlip(k=3), False), (CARMSWithoutWeights(k=3), False)],
    ids=["arms-without-flip", "carms-without-weights"],
)
def test_negative_controls_fail_the_exact_test(estimator, flip):
    pr = exact_problem()
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    mean = pattern_mean(estimator, pr, flip)
    assert float((mean - exact).abs().max()) > 1e-2


# ---- reductions on the same noise -------------------------------------------------------------


def antithetic_pair(noise: Uniforms) -> Uniforms:
    """K = 2 copula samples (v, 1 - v): the Dirichlet copula with K = 2 (v_2 = 1 - v_1)."""

    def pair(u):
        return None if u is None else torch.stack((u, 1 - u), 1)

    return Uniforms([pair(u) for u in noise.weights], [pair(v) for v in noise.states])


@pytest.mark.parametrize(
    ("name", "mode"), [("logistic-01", "shared"), ("gaussian-pm1", "per-point")]
)
def test_carms_with_two_samples_is_disarm(name, mode):
    """Stochastic activations, weights and units with p on both sides of 1/2: r = max(p, q)."""
    pr = net(name, n_points=3)
    noise = draw_uniforms(pr, 200, gen(2), mode == "per-point")
    carms = WeightCARMS(k=2, weights=mode).estimate(pr, antithetic_pair(noise))
    disarm = WeightDisARM(weights=mode).estimate(pr, noise)
    assert float(disarm.abs().max()) > 1e-2
    torch.testing.assert_close(carms, disarm, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", ["shared", "per-point"])
def test_arms_with_two_samples_is_disarm(mode):
    """Sign activations: DisARM's uniform is ARMS's first sample uniform (flipped for p >= 1/2)."""
    pr = net("sign-pm1")
    m = pr.model
    noise = draw_uniforms(pr, 200, gen(3), mode == "per-point")
    flipped = Uniforms(
        [
            None if u is None else torch.where(m.probs(k)[0] >= 0.5, 1 - u, u)
            for k, u in enumerate(noise.weights)
        ],
        noise.states,
    )
    arms = WeightARMS(k=2, weights=mode).estimate(pr, antithetic_pair(noise))
    disarm = WeightDisARM(weights=mode).estimate(pr, flipped)
    torch.testing.assert_close(arms, disarm, rtol=1e-9, atol=1e-12)


def minority_problem(activation: str) -> WeightProblem:
    """Every Bernoulli with p < 1/2: eta < 0 and, for stochastic units, biases of -4 (|W x| <= 2
    for two ±1 inputs in {0, 1}, and the real first layer's inputs are small)."""
    pr = net("logistic-01", activation=activation, n_points=3)
    m = pr.model
    params = tuple(
        -W.abs() if kind == "bernoulli" else W for W, kind in zip(m.params, m.kinds, strict=True)
    )
    biases = (*(torch.full_like(b, -4.0) for b in m.biases[:-1]), m.biases[-1])
    return WeightProblem.create(m.replace(params=params, biases=biases), 0.2 * pr.X, pr.Y)


@pytest.mark.parametrize("activation", ["logistic", "sign"])
def test_carms_is_arms_when_every_p_is_below_half(activation):
    pr = minority_problem(activation)
    for spec in ("k=3", "k=4, weights=per-point"):
        a = get_estimator(f"weight-carms({spec})").draw(pr, 300, generator=gen(5))
        b = get_estimator(f"weight-arms({spec})").draw(pr, 300, generator=gen(5))
        assert float(a.abs().max()) > 1e-3
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_carms_is_not_arms_when_some_p_is_above_half():
    pr = net("logistic-01")
    a = get_estimator("weight-carms").draw(pr, 300, generator=gen(5))
    b = get_estimator("weight-arms").draw(pr, 300, generator=gen(5))
    assert float((a - b).abs().max()) > 1e-3


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


@pytest.mark.parametrize("spec", [*NEW, "weight-carms(k=3)"])
@pytest.mark.parametrize(
    ("name", "mode"),
    [("logistic-01", "shared"), ("gaussian-pm1", "per-point"), ("hard-sigmoid", "shared")],
)
def test_statistically_unbiased(spec, name, mode):
    pr = hard_sigmoid_problem() if name == "hard-sigmoid" else net(name)
    if name == "hard-sigmoid":
        eta = pr.model.params[1]
        assert bool((eta.abs() > 1).any()) and bool((eta.abs() < 1).any())
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    est = get_estimator(with_mode(spec, mode))
    draws = est.draw(pr, S_DRAWS, generator=gen(11))
    z, threshold = z_test(draws, exact)
    assert z < threshold, (z, threshold)


def test_negative_control_fails_the_statistical_test():
    pr = net("logistic-01")
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    draws = CARMSWithoutWeights().draw(pr, S_DRAWS, generator=gen(11))
    z, threshold = z_test(draws, exact)
    assert z > 2 * threshold, (z, threshold)


# ---- cost, reproducibility, conformance -------------------------------------------------------


def test_cost_and_claims():
    stochastic = net("logistic-01")  # 1 Bernoulli pair, 2 stochastic layers: 3 groups
    sign = net("sign-pm1")  # 2 Bernoulli pairs, no stochastic layer
    for name in NEW:
        est = get_estimator(name)
        assert est.evals_per_draw(stochastic.model) == 1 + 3 * 3
        assert get_estimator(f"{name}(k=2)").evals_per_draw(sign.model) == 1 + 2
        assert est.wrt == "eta" and est.family == "score-function"
        model = stochastic.model
        assert est.unbiased_layers(model) == frozenset(range(model.depth + 1))


@pytest.mark.parametrize("name", NEW)
def test_reproducible_and_chunked(name):
    pr = net("gaussian-pm1", n_points=3)
    est = get_estimator(f"{name}(weights=per-point)")
    a = est.draw(pr, 64, generator=gen(5))
    assert torch.equal(a, est.draw(pr, 64, generator=gen(5)))
    assert not torch.equal(a, est.draw(pr, 64, generator=gen(6)))
    small = est.draw(pr, 64, generator=gen(5), memory_budget=5 * est.bytes_per_draw(pr))
    assert small.shape == a.shape and torch.isfinite(small).all()


@pytest.mark.parametrize("spec", [*NEW, "weight-carms(k=2, weights=per-point)"])
def test_conformance(spec):
    check_estimator(spec)
