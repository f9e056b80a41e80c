"""ReinMax and gapped straight-through (GST) for stochastic binary weights (issue 19):
``weight-reinmax`` and ``weight-gst``.

Their only randomness is the sampled path, so the checks are exact (``path_moments`` enumerates
every weight and state configuration; deterministic, no false-fail rate) unless stated:

* each weight proxy dW/deta against autograd, wrt eta, of the published *categorical* algorithm
  on two categories with logits (phi(eta), 0), phi = log F_w(eta) - log F_w(-eta), and the ±1
  value W = 2 D_on - 1 (the surrogates of tests/test_recent_st.py), for every weight noise;
* ReinMax at tau = 1 is the DARN / ZGR form F_w'(eta) / P(W) (closed form, and equal moments with
  the sbn ``zgr`` Jacobian substituted): why there is no ``weight-zgr``;
* on a network with real weights only, the moments equal the sbn ``reinmax`` / ``gst`` moments on
  the same SBN (the activation Jacobians are the sbn kind's);
* where the sbn analogue is exact (trapezoid rule, quadratic loss), tau = 1 is exactly unbiased in
  every layer: mse head, uniform activations in their linear range; ``weight-st``, tau = 2,
  ReinMax without its -ST/2 term and GST are biased there (negative controls);
* the claim "head only" (biased below the head, exact in it) and the draws' mean against the exact
  mean in both weight modes (z-test, false-fail rate 1e-3);
* conformance (``check_estimator``).
"""

from __future__ import annotations

import pytest
import torch

from estbench.estimators import get_estimator
from estbench.kinds.sbn.estimators.straight_through import ZGR, ReinMax
from estbench.kinds.sbn.model import HEADS, Problem
from estbench.kinds.sbn.moments import path_moments as core_path_moments
from estbench.kinds.weights.exact import exact_gradient
from estbench.kinds.weights.logit_st import WeightReinMax
from estbench.kinds.weights.model import WeightProblem, get_weight_noise
from estbench.kinds.weights.paths import path_moments
from estbench.testing import check_estimator

from .test_recent_st import gst_surrogate, reinmax_surrogate
from .test_weights_estimators import linear_regime_problem, max_preactivation, net, rel, z_test
from .test_weights_exact import make_problem

F64 = torch.float64
NEW = ["weight-reinmax", "weight-reinmax(tau=2.0)", "weight-gst", "weight-gst(form=p)"]
ETA = torch.tensor([-3.0, -0.9, -0.4, 0.0, 0.3, 0.8, 2.2, 5.0], dtype=F64)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def with_mode(spec: str, mode: str) -> str:
    return spec.replace(")", f", weights={mode})") if "(" in spec else f"{spec}(weights={mode})"


def one_pair_model(eta: torch.Tensor, weight_noise: str):
    """A network whose first pair is Bernoulli with the latent weights ``eta`` (one unit)."""
    model, _, _ = make_problem(
        (1,), ("bernoulli", "real"), seed=0, input_dim=eta.numel(), weight_noise=weight_noise
    )
    return model.replace(params=(eta[None].clone(), model.params[1]))


# ---- the weight proxy against the categorical algorithms ---------------------------------------


@pytest.mark.parametrize("weight_noise", ["logistic", "gaussian", "uniform"])
@pytest.mark.parametrize(
    ("spec", "surrogate"),
    [
        ("weight-reinmax", reinmax_surrogate(1.0)),
        ("weight-reinmax(tau=2.5)", reinmax_surrogate(2.5)),
        ("weight-gst", gst_surrogate(1.0, 1.0)),
        ("weight-gst(tau=0.3, gap=0.5)", gst_surrogate(0.3, 0.5)),
        ("weight-gst(form=p)", gst_surrogate(1.0, None)),
    ],
    ids=["reinmax", "reinmax-2.5", "gst", "gst-0.3-0.5", "gst-p"],
)
def test_weight_proxy_is_the_categorical_algorithm_wrt_eta(weight_noise, spec, surrogate):
    """d/deta of 2 surrogate(theta(eta), D)_on - 1 by autograd, theta = (phi(eta), 0) with
    phi = log F_w(eta) - log F_w(-eta); hard-sigmoid weights inside (-1, 1), where p q > 0."""
    eta = ETA if weight_noise != "uniform" else ETA.clamp(-0.95, 0.95)
    F = get_weight_noise(weight_noise)
    est = get_estimator(spec)
    model = one_pair_model(eta, weight_noise)
    for bit in (0.0, 1.0):
        b = torch.full_like(eta, bit)
        leaf = eta.clone().requires_grad_()
        phi = torch.log(F.cdf(leaf)) - torch.log(F.cdf(-leaf))
        theta = torch.stack([phi, torch.zeros_like(phi)], -1)
        D = torch.stack([b, 1 - b], -1)
        W = 2 * surrogate(theta, D)[..., 0] - 1
        (want,) = torch.autograd.grad(W.sum(), leaf)
        got = est.weight_factor(model, 0, b[None])[0]
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("spec", NEW)
def test_a_deterministic_weight_gets_zero(spec):
    """Hard-sigmoid weights with |eta| > 1 cannot flip: dphi/deta = 0, so the proxy is 0."""
    eta = torch.tensor([-2.0, -1.5, 1.2, 3.0], dtype=F64)
    model = one_pair_model(eta, "uniform")
    est = get_estimator(spec)
    for bit in (0.0, 1.0):
        got = est.weight_factor(model, 0, torch.full_like(eta, bit)[None])
        assert torch.equal(got, torch.zeros_like(got))


# ---- ReinMax at tau = 1 is DARN / ZGR ---------------------------------------------------------


@pytest.mark.parametrize("weight_noise", ["logistic", "gaussian", "uniform"])
def test_reinmax_at_tau_one_is_the_darn_form(weight_noise):
    """dW/deta ~ F_w'(eta) / P(W) = W d log P(W) / d eta (the probability of the other sign for
    sigmoid weights); tau = 2 is not."""
    eta = ETA if weight_noise != "uniform" else ETA.clamp(-0.95, 0.95)
    model = one_pair_model(eta, weight_noise)
    p, q = model.probs(0)
    density = model.weight_density(0)
    for bit in (0.0, 1.0):
        b = torch.full_like(eta, bit)[None]
        darn = density / torch.where(b == 1, p, q)
        got = WeightReinMax().weight_factor(model, 0, b)
        torch.testing.assert_close(got, darn, rtol=1e-12, atol=1e-15)
        other = WeightReinMax(tau=2.0).weight_factor(model, 0, b)
        assert float((other - darn).abs().max()) > 1e-3


class WeightZGRForm(WeightReinMax):
    """The binary ZGR Jacobian (p q + (b - p)^2) / 2 of the sbn ``zgr`` in place of ReinMax's:
    what a ``weight-zgr`` would be."""

    core_class = ZGR

    def core(self):
        return ZGR()


@pytest.mark.parametrize("weight_noise", ["logistic", "gaussian", "uniform"])
def test_a_weight_zgr_would_be_weight_reinmax(weight_noise):
    pr = WeightProblem.create(
        *make_problem(
            (2, 2),
            ("real", "bernoulli", "real"),
            seed=3,
            activation="gaussian",
            head="softmax",
            coding="pm1",
            eta_scale=1.0,
            weight_noise=weight_noise,
        )
    )
    a, b = path_moments(WeightReinMax(), pr), path_moments(WeightZGRForm(), pr)
    torch.testing.assert_close(a.mean, b.mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(a.variance, b.variance, rtol=1e-10, atol=1e-14)


# ---- the activations are the sbn kind's ------------------------------------------------------


@pytest.mark.parametrize("spec", NEW)
@pytest.mark.parametrize("activation", ["logistic", "uniform"])
def test_real_weights_give_the_sbn_estimator(spec, activation):
    """No Bernoulli pair: the network is an SBN and the moments are the sbn estimator's."""
    model, X, Y = make_problem(
        (3, 2), ("real", "real", "real"), seed=8, activation=activation, head="softmax"
    )
    pr = WeightProblem.create(model, X, Y)
    core_spec = spec.removeprefix("weight-")
    got = path_moments(get_estimator(spec), pr)
    core = Problem.create(model.with_weights([None] * 3), X, Y)
    want = core_path_moments(get_estimator(core_spec), core)
    torch.testing.assert_close(got.mean, want.mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got.variance, want.variance, rtol=1e-10, atol=1e-14)


# ---- where it is exact, and where not ---------------------------------------------------------


class ReinMaxWithoutSTTerm(ReinMax):
    """2 J(pi_1) g alone (the -J(pi_0) g / 2 correction dropped)."""

    def logit_jacobian(self, phi, p, q, bits):
        pi1 = (p + bits) / 2
        return 2 * pi1 * (1 - pi1)


class WeightReinMaxWithoutSTTerm(WeightReinMax):
    def core(self):
        return ReinMaxWithoutSTTerm()


@pytest.mark.parametrize("coding", ["01", "pm1"])
def test_reinmax_is_exact_for_a_quadratic_loss_in_the_linear_regime(coding):
    """Uniform activations with every reachable |a| < 1 (E[x | a] affine) and the mse head: every
    conditional expected loss is quadratic in each weight and state, where the trapezoid rule is
    exact. ReinMax (tau = 1) is unbiased in every layer, the Bernoulli first pair included;
    weight-st (not second-order: mse's x_j^2 terms), tau = 2, ReinMax without its -ST/2 term and
    GST are biased."""
    pr = linear_regime_problem(coding, head=HEADS["mse"])
    assert max_preactivation(pr) < 0.9
    exact = exact_gradient(pr.model, pr.X, pr.Y).layer_vectors()
    mean = pr.split(path_moments(get_estimator("weight-reinmax"), pr).mean)
    for k, (got, g) in enumerate(zip(mean, exact, strict=True)):
        assert g.norm() > 1e-3
        assert rel(got, g) < 1e-10, k
    wrong = [get_estimator(s) for s in ("weight-st", "weight-reinmax(tau=2.0)", "weight-gst")]
    for est in [*wrong, get_estimator("weight-gst(form=p)"), WeightReinMaxWithoutSTTerm()]:
        mean = pr.split(path_moments(est, pr).mean)
        assert rel(mean[0], exact[0]) > 1e-3, est.spec


@pytest.mark.parametrize("spec", NEW)
@pytest.mark.parametrize("name", ["gaussian-pm1", "sign-pm1", "logistic-01"])
def test_biased_below_the_head_and_exact_in_it(spec, name):
    pr = net(name)
    est = get_estimator(spec)
    m = pr.model
    assert est.unbiased_layers(m) == {m.depth} and est.wrt == "eta"
    mean = pr.split(path_moments(est, pr).mean)
    exact = exact_gradient(m, pr.X, pr.Y).layer_vectors()
    for k in m.bernoulli_layers:
        assert rel(mean[k], exact[k]) > 1e-3, k
    assert rel(mean[-1], exact[-1]) < 1e-12


@pytest.mark.parametrize("spec", ["weight-reinmax", "weight-gst(form=p)"])
@pytest.mark.parametrize("mode", ["shared", "per-point"])
def test_draws_have_the_exact_mean(spec, mode):
    """The draws (data-averaged backward pass) against the enumerated per-point one."""
    pr = net("gaussian-pm1", n_points=3)
    est = get_estimator(with_mode(spec, mode))
    expected = path_moments(est, pr).mean
    draws = est.draw(pr, 20000, generator=gen(7))
    z, threshold = z_test(draws, expected)
    assert z < threshold, (z, threshold)


def test_one_point_modes_agree_draw_for_draw():
    pr = net("gaussian-pm1", n_points=1)
    for spec in ("weight-reinmax(tau=1.5)", "weight-gst"):
        a = get_estimator(spec).draw(pr, 40, generator=gen(3))
        b = get_estimator(with_mode(spec, "per-point")).draw(pr, 40, generator=gen(3))
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


# ---- contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", NEW)
def test_conformance(spec):
    check_estimator(spec)


def test_reinmax_refuses_tau_below_one():
    from estbench.estimators.base import EstimatorError

    with pytest.raises(EstimatorError):
        get_estimator("weight-reinmax(tau=0.5)")
