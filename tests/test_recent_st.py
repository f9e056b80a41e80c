"""ReinMax, gapped straight-through (GST) and ZGR for binary units (issue 19).

Their only randomness is the sampled path, so every check here is exact (``path_moments``
enumerates every path; deterministic, no false-fail rate):

* each binary Jacobian against an autograd implementation of the published *categorical*
  algorithm on two categories with logits (phi, 0) (written here from the papers' algorithms and
  the authors' code named in the docstrings, not from the estimators' code);
* ReinMax at tau = 1 and ZGR equal ``darn`` (moments to 1e-12); the trapezoid-rule property
  (unbiased for a quadratic loss in one layer, every noise) for ReinMax (tau = 1) and ZGR, with
  negative controls (ReinMax without its -ST/2 term, ZGR's DARN half alone, ReinMax tau = 2) that
  the same exact comparison rejects;
* the claim "head only": biased in every binary layer of a deep network, exact in the head;
* the conformance check (``check_estimator``).
"""

from __future__ import annotations

import pytest
import torch

from estbench.estimators import get_estimator
from estbench.kinds.sbn.estimators.straight_through import ZGR, ReinMax
from estbench.kinds.sbn.exact import exact_gradient
from estbench.kinds.sbn.model import Problem
from estbench.kinds.sbn.moments import path_moments
from estbench.kinds.sbn.problems import anchor_network
from estbench.testing import check_estimator

from .conftest import random_problem

F64 = torch.float64
NEW = ["reinmax", "reinmax(tau=2.0)", "gst", "gst(form=p)", "gst(tau=0.5, gap=0.3)", "zgr"]


def rel(a, b) -> float:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return float((a - b).norm() / b.norm())


def problem_of(widths, **kw) -> Problem:
    return Problem.create(*random_problem(widths, **kw))


# ---- the categorical algorithms on two categories, under autograd ----------------------------

PHI = torch.tensor([-4.0, -1.3, -0.2, 0.0, 0.4, 0.9, 2.7, 6.0], dtype=F64)


def softmax_jacobian_on(phi: torch.Tensor, b: torch.Tensor, surrogate) -> torch.Tensor:
    """d/dphi of g . surrogate(theta, D) for logits theta = (phi, 0), one-hot D = (b, 1 - b) and
    g = (1, 0): J_phi for dl/dx = 1 in {0,1} coding (x = D_on)."""
    theta = torch.stack([phi, torch.zeros_like(phi)], -1).requires_grad_()
    D = torch.stack([b, 1 - b], -1)
    out = surrogate(theta, D)[..., 0].sum()
    (grad,) = torch.autograd.grad(out, theta)
    return grad[..., 0]


def reinmax_surrogate(tau: float):
    def f(theta, D):  # Algorithm 2: pi_2 = 2 pi_1 - pi_0 / 2, pi_1 with the softmax's Jacobian
        pi0 = theta.softmax(-1)
        pi1 = (D + (theta.detach() / tau).softmax(-1)) / 2
        pi1 = (torch.log(pi1) - theta).detach() + theta
        return 2 * pi1.softmax(-1) - pi0 / 2

    return f


def gst_surrogate(tau: float, gap: float | None):
    def f(theta, D):  # move the sample up to the max logit, the others down to <= max - gap
        t = theta.detach()
        top = t.max(-1, keepdim=True).values
        pi_d = (t.softmax(-1) * D).sum(-1, keepdim=True)
        kappa = -torch.log1p(-pi_d) / pi_d if gap is None else gap
        move = (top - t) * D - (t - top + kappa).clamp_min(0) * (1 - D)
        return ((theta + move) / tau).softmax(-1)

    return f


def zgr_surrogate(theta, D):  # (p + (D - p) log p_D) / 2, p detached in the second term
    logp = theta.log_softmax(-1)
    p = logp.exp()
    return (p + (D - p.detach()) * (logp * D).sum(-1, keepdim=True)) / 2


@pytest.mark.parametrize(
    ("est", "surrogate"),
    [
        (get_estimator("reinmax"), reinmax_surrogate(1.0)),
        (get_estimator("reinmax(tau=2.5)"), reinmax_surrogate(2.5)),
        (get_estimator("gst"), gst_surrogate(1.0, 1.0)),
        (get_estimator("gst(tau=0.3, gap=0.5)"), gst_surrogate(0.3, 0.5)),
        (get_estimator("gst(form=p)"), gst_surrogate(1.0, None)),
        (get_estimator("zgr"), zgr_surrogate),
    ],
    ids=["reinmax", "reinmax-2.5", "gst", "gst-0.3-0.5", "gst-p", "zgr"],
)
def test_binary_jacobian_is_the_categorical_algorithm_on_two_categories(est, surrogate):
    for bit in (0.0, 1.0):
        b = torch.full_like(PHI, bit)
        p = torch.sigmoid(PHI)
        want = softmax_jacobian_on(PHI, b, surrogate)
        got = est.logit_jacobian(PHI, p, 1 - p, b)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)


# ---- identities and the trapezoid rule --------------------------------------------------------


@pytest.mark.parametrize("spec", ["reinmax", "reinmax(tau=1.0)", "zgr"])
@pytest.mark.parametrize("noise", ["logistic", "gaussian", "uniform"])
def test_reinmax_at_tau_one_and_zgr_are_darn(spec, noise):
    pr = problem_of((3, 2, 3), seed=31, head="softmax", coding="pm1", noise=noise, scale=1.6)
    a, b = path_moments(get_estimator(spec), pr), path_moments(get_estimator("darn"), pr)
    torch.testing.assert_close(a.mean, b.mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(a.variance, b.variance, rtol=1e-10, atol=1e-14)
    other = path_moments(get_estimator("reinmax(tau=2.0)"), pr)
    assert rel(other.mean, b.mean) > 1e-3  # tau matters


def test_anchor_network_row_of_darn_reinmax():
    """Spec §5.3's row "E DARN/ReinMax" holds for reinmax and zgr."""
    row0 = [-0.223568, 0.111784, 0.200798, -0.100399, -0.223568, 0.200798]
    for spec in ("reinmax", "zgr"):
        got = path_moments(get_estimator(spec), anchor_network()).layer_means()
        assert got[0].tolist() == pytest.approx(row0, abs=2e-6), spec


class ReinMaxWithoutSTTerm(ReinMax):
    """Negative control: 2 J(pi_1) g alone (the -J(pi_0) g / 2 correction dropped)."""

    def logit_jacobian(self, phi, p, q, bits):
        pi1 = (p + bits) / 2
        return 2 * pi1 * (1 - pi1)


class DarnHalfOfZGR(ZGR):
    """Negative control: the categorical DARN term (D - p) d log p_D alone, (b - p)^2."""

    def logit_jacobian(self, phi, p, q, bits):
        return (bits - p) ** 2


@pytest.mark.parametrize("noise", ["logistic", "gaussian", "uniform"])
@pytest.mark.parametrize("coding", ["01", "pm1"])
def test_trapezoid_rule_is_exact_for_a_quadratic_loss_in_one_layer(noise, coding):
    """One binary layer, mse head: f is quadratic in x. Paper claim (ReinMax's second order, ZGR's
    trapezoid): the mean is F'(a)(f'(0) + f'(1))/2, exact here. Negative controls with the same
    exact comparison: ReinMax without its ST term, the DARN half of ZGR, ReinMax at tau = 2,
    and GST, none of which is second-order accurate."""
    pr = problem_of((4,), seed=3, head="mse", coding=coding, noise=noise)
    exact = exact_gradient(pr.model, pr.X, pr.Y).flat()
    for est in (get_estimator("reinmax"), get_estimator("zgr")):
        assert rel(path_moments(est, pr).mean, exact) < 1e-12, est.spec
    wrong = [ReinMaxWithoutSTTerm(), DarnHalfOfZGR(), get_estimator("reinmax(tau=2.0)")]
    wrong += [get_estimator("gst"), get_estimator("gst(form=p)")]
    for est in wrong:
        assert rel(path_moments(est, pr).mean, exact) > 1e-3, est.spec


@pytest.mark.parametrize("spec", NEW)
def test_biased_below_the_head_and_unbiased_in_it(spec):
    pr = problem_of((3, 3, 2), seed=2, head="softmax", coding="pm1")
    est = get_estimator(spec)
    assert est.unbiased_layers(pr.model) == {pr.model.depth} and est.unbiased == "head only"
    mean = path_moments(est, pr).layer_means()
    exact = exact_gradient(pr.model, pr.X, pr.Y).layer_vectors()
    assert all(rel(mean[k], exact[k]) > 1e-3 for k in range(pr.model.depth))
    assert rel(mean[-1], exact[-1]) < 1e-12


@pytest.mark.parametrize("spec", ["reinmax(tau=2.0)", "gst", "gst(form=p)"])
def test_coding_invariance_of_the_first_layer(spec):
    pr = problem_of((2, 3, 2), seed=6, head="softmax", coding="pm1")
    from estbench.kinds.sbn.model import convert_coding

    other = Problem.create(convert_coding(pr.model, "01"), pr.X, pr.Y)
    n0 = pr.model.layer_sizes[0]
    a, b = path_moments(get_estimator(spec), pr), path_moments(get_estimator(spec), other)
    torch.testing.assert_close(a.mean[:n0], b.mean[:n0], rtol=1e-12, atol=1e-15)


def test_gst_perturbed_logit_is_consistent_and_gapped():
    """GST's defining properties on the binary logit: sign(phi~) = the sample, |phi~| >= gap,
    and phi~ = phi when the sample is the likelier state by more than the gap."""
    gap = 0.7
    for bit in (0.0, 1.0):
        x = 2 * bit - 1
        y = torch.maximum(x * PHI, torch.tensor(gap, dtype=F64))  # |phi~| as the estimator uses
        assert bool((y >= gap).all())
        keep = x * PHI >= gap
        assert torch.equal(y[keep], (x * PHI)[keep])


# ---- contract -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", NEW)
def test_conformance(spec):
    check_estimator(spec)


@pytest.mark.parametrize("spec", ["reinmax(tau=2.0)", "gst(form=p)", "zgr"])
@pytest.mark.parametrize("noise", ["gaussian", "uniform"])
def test_smoke_other_noises_are_finite(spec, noise):
    pr = problem_of((2, 3), seed=12, head="mse", coding="01", noise=noise, n_points=4, scale=3.0)
    d = get_estimator(spec).draw(pr, 40, generator=torch.Generator().manual_seed(0))
    assert d.shape == (40, pr.n_params) and d.dtype == F64 and torch.isfinite(d).all()
    m = path_moments(get_estimator(spec), pr)
    assert torch.isfinite(m.mean).all() and torch.isfinite(m.variance).all()


def test_reinmax_refuses_tau_below_one():
    from estbench.estimators.base import EstimatorError

    with pytest.raises(EstimatorError):
        get_estimator("reinmax(tau=0.5)")
