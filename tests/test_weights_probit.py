"""The probit weight model: W = sign(eta + L), L standard normal, so P(W = +1) = Phi(eta)
(``weight_noise="gaussian"``). The solver, REINFORCE, ARM/DisARM and the relaxations only use
F_w, F_w' and F_w^{-1}; these tests check them for this third noise against the same independent
references as the sigmoid and hard-sigmoid models, with negative controls."""

from __future__ import annotations

import math

import pytest
import torch

from estbench.cases import parse_case
from estbench.runner import CaseRunner
from estbench.weights import (
    WeightARM,
    WeightConcrete,
    WeightDisARM,
    WeightReinforce,
    WeightStraightThrough,
    WeightStraightThroughGumbelSoftmax,
    exact_gradient,
    exact_loss,
)
from estbench.weights.paths import draw_uniforms

from .test_weights_estimators import z_test
from .test_weights_exact import close, joint_oracle
from .test_weights_hardsigmoid import (
    ALPHA,
    S_DRAWS,
    SigmoidScoreReinforce,
    exact_mean,
    gen,
    make,
    without_logit_scale,  # noqa: F401 (a fixture)
)
from .test_weights_hardsigmoid import NETS as HS_NETS
from .test_weights_relaxed import autograd_estimates

F64 = torch.float64
# The hard-sigmoid tests' networks (two kinds of first layer, three activations), probit weights.
NETS = {name: HS_NETS[name] for name in ("logistic-01", "sign-pm1", "gaussian-01-deep")}


def net(name):
    return make(**NETS[name], weight_noise="gaussian", eta_scale=1.5)


def test_probabilities_means_and_jacobian_are_the_probit():
    m = net("logistic-01").model
    eta = m.params[1]
    p, q = m.probs(1)
    assert torch.allclose(p, 0.5 * (1 + torch.erf(eta / math.sqrt(2))), rtol=1e-14)
    assert torch.allclose(p + q, torch.ones_like(p), rtol=0, atol=1e-15)
    assert torch.allclose(m.means(1), torch.erf(eta / math.sqrt(2)), rtol=1e-14)
    phi = torch.exp(-eta * eta / 2) / math.sqrt(2 * math.pi)
    assert torch.allclose(m.mean_jacobian(1), 2 * phi, rtol=1e-14)
    assert "weight noise gaussian" in m.describe()


@pytest.mark.parametrize("name", list(NETS))
def test_exact_matches_joint_enumeration(name):
    problem = net(name)
    got = exact_gradient(problem.model, problem.X, problem.Y)
    for wrt in ("eta", "mu"):
        loss, pairs = joint_oracle(problem.model, problem.X, problem.Y, wrt=wrt)
        assert abs(float(got.loss - loss)) <= 1e-13 * float(loss)
        flat = torch.cat([torch.cat((t.reshape(-1), b)) for t, b in pairs])
        assert close(got.flat(wrt), flat), wrt


def test_exact_matches_finite_differences():
    problem = net("gaussian-01-deep")
    m, h = problem.model, 1e-6
    got = exact_gradient(m, problem.X, problem.Y)
    for k in m.bernoulli_layers:
        eta = m.params[k]
        moved = [eta.clone(), eta.clone()]
        moved[0][0, 0] += h
        moved[1][0, 0] -= h
        values = [
            float(
                exact_loss(
                    m.replace(params=tuple(e if j == k else P for j, P in enumerate(m.params))),
                    problem.X,
                    problem.Y,
                )
            )
            for e in moved
        ]
        fd = (values[0] - values[1]) / (2 * h)
        g = float(got.grads[k][0][0, 0])
        assert abs(fd - g) <= 1e-7 * max(1e-3, abs(g)), (k, fd, g)


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("mode", ["shared", "per-point"])
def test_reinforce_is_exactly_unbiased(name, mode):
    problem = net(name)
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    mean = exact_mean(WeightReinforce(weights=mode), problem)
    assert float((mean - exact).abs().max()) <= 1e-10 * (1 + float(exact.abs().max()))


def test_sigmoid_score_fails_the_exact_test():
    problem = net("sign-pm1")
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    mean = exact_mean(SigmoidScoreReinforce(), problem)
    assert float((mean - exact).abs().max()) > 1e-2 * float(exact.abs().max())


def test_st_wrt_eta_is_st_wrt_mu_times_twice_the_normal_density():
    problem = net("logistic-01")
    a = WeightStraightThrough().draw(problem, 16, generator=gen(3))
    b = WeightStraightThrough(wrt="mu").draw(problem, 16, generator=gen(3))
    m = problem.model
    n = m.params[1].numel()
    start = sum(m.layer_sizes[:1])
    factor = m.mean_jacobian(1).reshape(-1)
    assert torch.allclose(a[:, start : start + n], b[:, start : start + n] * factor, rtol=1e-14)
    assert not torch.allclose(a[:, start : start + n], b[:, start : start + n])


@pytest.mark.parametrize("cls", [WeightARM, WeightDisARM])
@pytest.mark.parametrize(("name", "mode"), [("logistic-01", "shared"), ("sign-pm1", "per-point")])
def test_pair_estimators_are_statistically_unbiased(cls, name, mode):
    """Per-coordinate z-test with Bonferroni, false-fail rate ALPHA = 1e-3 per test."""
    problem = net(name)
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    draws = cls(weights=mode).draw(problem, S_DRAWS, generator=gen(11))
    z, threshold = z_test(draws, exact, ALPHA)
    assert z < threshold, (z, threshold)


def test_arm_without_the_logit_scale_fails_the_z_test(without_logit_scale):  # noqa: F811
    problem = net("logistic-01")
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    draws = WeightARM().draw(problem, S_DRAWS, generator=gen(11))
    z, threshold = z_test(draws, exact, ALPHA)
    assert z > 2 * threshold, (z, threshold)


@pytest.mark.parametrize("mode", ["shared", "per-point"])
@pytest.mark.parametrize("cls", [WeightConcrete, WeightStraightThroughGumbelSoftmax])
def test_relaxations_equal_autograd_of_the_relaxed_pass(cls, mode):
    problem = net("logistic-01")
    est = cls(tau=0.7, weights=mode)
    noise = draw_uniforms(problem, 4, gen(5), est.per_point)
    ours = est.estimate(problem, noise)
    ref, _ = autograd_estimates(problem, noise, 0.7, est.per_point, hard=cls is not WeightConcrete)
    assert float((ours - ref).abs().max()) <= 1e-10 * max(1.0, float(ref.abs().max()))
    assert float(ref.abs().max()) > 0


def test_a_case_builds_the_probit_model(tmp_path):
    text = """schema_version = 1
[data]
kind = "two-class"
n = 6
seed = 1
[model]
weights = "bernoulli"
weight_noise = "gaussian"
widths = [2, 2]
seed = 1
[measure]
estimators = ["weight-st"]
draws = 100
M = [1]
"""
    case = parse_case(text, name="probit")
    problem = CaseRunner(case, tmp_path, progress=lambda _: None).problem(case.points()[0])
    assert problem.model.weight_noise.name == "gaussian"
