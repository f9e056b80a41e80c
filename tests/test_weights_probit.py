"""The probit weight model: W = sign(eta + L), L standard normal, so P(W = +1) = Phi(eta)
(``weight_noise="gaussian"``): its probabilities, the exact solver against joint enumeration and
finite differences, ST's parametrisations, and a case. REINFORCE (exact, with the sigmoid-score
control), ARM/DisARM (z-tests, with the missing-logit-scale control) and the relaxations
(autograd) are run for it by the parametrised tests of tests/test_weights_hardsigmoid.py."""

from __future__ import annotations

import math

import pytest
import torch

from estbench.cases import parse_case
from estbench.kinds.weights import (
    WeightStraightThrough,
    exact_gradient,
    exact_loss,
)
from estbench.runner import CaseRunner

from .test_weights_exact import close, joint_oracle
from .test_weights_hardsigmoid import NETS as HS_NETS
from .test_weights_hardsigmoid import (
    gen,
    make,
    without_logit_scale,  # noqa: F401 (a fixture)
)

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
