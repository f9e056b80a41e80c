"""PSA and SA (path-analytic family): exact expectations against the authors' stored values and
the spec's anchors, exactness where the spec claims it, bias where it does not, and draws.

Exact expectations come from ``path_moments`` (enumeration of every path), so every check except
the Monte Carlo one is deterministic.
"""

from __future__ import annotations

import itertools
from statistics import NormalDist

import pytest
import torch

from estbench.estimators import get_estimator
from estbench.kinds.sbn.checkpoint import load_checkpoint
from estbench.kinds.sbn.estimators.ops import assemble, sample_path
from estbench.kinds.sbn.exact import exact_gradient
from estbench.kinds.sbn.model import Problem, convert_coding
from estbench.kinds.sbn.moments import path_moments
from estbench.kinds.sbn.problems import ANCHOR_EXACT_GRADIENT, anchor_network, bernoulli_toy

from .conftest import random_problem

NOISES = ("logistic", "gaussian", "uniform")
CODINGS = ("pm1", "01")
HEADS = ("softmax", "logistic", "mse")


def rel(a, b) -> float:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return float((a - b).norm() / b.norm())


def problem_of(widths, **kw) -> Problem:
    return Problem.create(*random_problem(widths, **kw))


def exact_and_mean(spec: str, pr: Problem) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    exact = exact_gradient(pr.model, pr.X, pr.Y).layer_vectors()
    return exact, path_moments(get_estimator(spec), pr).layer_means()


# ---- the authors' implementation and the spec's anchor ------------------------------------------


def test_seed_net_psa_expectation_matches_the_authors_code(seed_checkpoint):
    """Stored psa_expected_grad_layer{k}: E PSA computed with the authors' code, {0,1} coding."""
    ckpt = load_checkpoint(seed_checkpoint)
    pr = Problem.create(ckpt.model(coding="01"), *ckpt.data())
    means = path_moments(get_estimator("psa"), pr).layer_means()
    assert len(means) == 4
    for k, v in enumerate(means):
        assert rel(v, ckpt.extra[f"psa_expected_grad_layer{k}"]) < 1e-10, f"layer{k}"


ANCHOR_ROWS = {  # spec §5.3, layer0 = (dW1, db1) of the spec; layer1 = (dW2, db2) equals exact
    "psa": [-0.21646, 0.10823, 0.209238, -0.104619, -0.21646, 0.209238],
    "sa": [-0.243581, 0.12179, 0.208139, -0.104069, -0.243581, 0.208139],
}


@pytest.mark.parametrize("spec", ["psa", "sa"])
def test_anchor_network_rows(spec):
    """Spec §5.3 rows 'E PSA' and 'E SA (t = 0)' (+-1 coding): biased in the first pair, and
    exactly the gradient in the last binary pair and the head."""
    pr = anchor_network()
    exact, mean = exact_and_mean(spec, pr)
    assert mean[0].tolist() == pytest.approx(ANCHOR_ROWS[spec], abs=2e-6)
    assert mean[1].tolist() == pytest.approx(ANCHOR_EXACT_GRADIENT[1], abs=2e-6)
    assert rel(mean[1], exact[1]) < 1e-10 and rel(mean[2], exact[2]) < 1e-10
    assert rel(mean[0], exact[0]) > 1e-4  # the rows differ from the exact row


# ---- exactness claims -----------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["psa", "sa"])
@pytest.mark.parametrize(
    ("width", "noise", "coding"), list(itertools.product((1, 3, 5), NOISES, CODINGS))
)
def test_exact_for_one_binary_layer(spec, width, noise, coding):
    """L = 1: both reduce to the local expectation gradient, exact for any noise and coding."""
    head = HEADS[(width + NOISES.index(noise)) % 3]  # all heads appear across the grid
    pr = problem_of((width,), seed=10 + width, noise=noise, coding=coding, head=head)
    exact, mean = exact_and_mean(spec, pr)
    for k in range(2):
        assert rel(mean[k], exact[k]) < 1e-10, f"layer{k}"


DEEP = [
    ((3, 4), "logistic", "pm1"),
    ((2, 3, 3), "gaussian", "01"),
    ((3, 2, 4), "uniform", "pm1"),
    ((2, 3, 3), "logistic", "01"),
    ((2, 2, 3, 3), "gaussian", "pm1"),
]


@pytest.mark.parametrize("spec", ["psa", "sa"])
@pytest.mark.parametrize(("widths", "noise", "coding"), DEEP)
def test_exact_in_the_last_binary_pair_and_head(spec, widths, noise, coding):
    """The claim of ``unbiased_layers``: pairs L-1 and L are exact; n_L >= 3 so nothing else is."""
    pr = problem_of(widths, seed=5, noise=noise, coding=coding, head="softmax")
    est = get_estimator(spec)
    exact, mean = exact_and_mean(spec, pr)
    L = pr.model.depth
    assert est.unbiased_layers(pr.model) == frozenset({L - 1, L})
    for k in est.unbiased_layers(pr.model):
        assert rel(mean[k], exact[k]) < 1e-10, f"layer{k}"


@pytest.mark.parametrize(
    ("widths", "noise", "coding"),
    [
        ((3, 3, 1), "logistic", "pm1"),
        ((2, 3, 2), "gaussian", "01"),
        ((2, 2, 3, 2), "uniform", "pm1"),
        ((3, 2, 1), "uniform", "01"),
    ],
)
def test_sa_also_exact_one_pair_lower_when_the_last_layer_has_at_most_two_units(
    widths, noise, coding
):
    """Spec §4.5: SA is exact at pair L-2 (the binary layer below the last) iff n_L <= 2."""
    pr = problem_of(widths, seed=7, noise=noise, coding=coding, head="softmax")
    exact, mean = exact_and_mean("sa", pr)
    L = pr.model.depth
    for k in (L - 2, L - 1, L):
        assert rel(mean[k], exact[k]) < 1e-10, f"layer{k}"


@pytest.mark.parametrize(
    ("widths", "noise", "coding"),
    [
        ((3, 3, 1), "logistic", "pm1"),
        ((2, 3, 1), "gaussian", "01"),
        ((2, 2, 3, 1), "uniform", "01"),
    ],
)
def test_psa_also_exact_one_pair_lower_when_the_last_layer_has_one_unit(widths, noise, coding):
    """Spec §4.4: with n_L = 1, PSA's delta_{L-1} is the exact flip effect on E[f | x_{L-1}]."""
    pr = problem_of(widths, seed=8, noise=noise, coding=coding, head="mse")
    exact, mean = exact_and_mean("psa", pr)
    L = pr.model.depth
    for k in (L - 2, L - 1, L):
        assert rel(mean[k], exact[k]) < 1e-10, f"layer{k}"


def test_bias_is_detected_below_the_claimed_layers():
    """Negative controls: with n_L = 3 PSA is biased in pair 0 of a depth-3 net, SA at pair L-2
    (so the n_L <= 2 condition above is needed), and PSA at L-2 with n_L = 2."""
    pr = problem_of((2, 3, 3), seed=3, coding="pm1", head="softmax")
    exact, psa = exact_and_mean("psa", pr)
    _, sa = exact_and_mean("sa", pr)
    assert rel(psa[0], exact[0]) > 1e-3
    assert rel(psa[1], exact[1]) > 1e-3
    assert rel(sa[0], exact[0]) > 1e-3
    assert rel(sa[1], exact[1]) > 1e-5
    pr2 = problem_of((3, 3, 2), seed=3, coding="pm1", head="softmax")
    exact2, psa2 = exact_and_mean("psa", pr2)
    assert rel(psa2[1], exact2[1]) > 1e-3


def test_the_two_codings_give_the_same_estimator():
    """The same network in +-1 and {0,1} coding: identical logit gradients, so the parameter
    gradients are related by the chain rule x = 2h - 1: dW_pm1 = 2 dW_01 - db_01 1^T (pairs fed by
    a binary layer), db and the first pair unchanged. Checks the flip size in both codings,
    including the biased pairs."""
    model, X, Y = random_problem((2, 3, 3), seed=12, coding="pm1", head="softmax")
    pr_pm1 = Problem.create(model, X, Y)
    pr_01 = Problem.create(convert_coding(model, "01"), X, Y)
    for spec in ("psa", "sa"):
        m_pm1 = path_moments(get_estimator(spec), pr_pm1).layer_means()
        m_01 = path_moments(get_estimator(spec), pr_01).layer_means()
        assert torch.allclose(m_pm1[0], m_01[0], rtol=1e-12, atol=1e-14)
        for k in range(1, 4):
            n_out, n_in = model.weights[k].shape
            W01, b01 = m_01[k][: n_out * n_in].view(n_out, n_in), m_01[k][n_out * n_in :]
            expected = torch.cat([(2 * W01 - b01[:, None]).reshape(-1), b01])
            assert torch.allclose(m_pm1[k], expected, rtol=1e-12, atol=1e-14), f"{spec} layer{k}"


@pytest.mark.parametrize("noise", ["logistic", "gaussian"])
@pytest.mark.parametrize(("theta", "t"), [(0.3, 0.45), (-1.7, 0.2)])
def test_single_bernoulli_closed_forms(noise, theta, t):
    """One unit, f(b) = (b - t)^2, g = F'(theta)(1 - 2t). PSA is g deterministically. SA (the
    authors' t = 0 form) is importance-weighted: g / (2 P(b)), so Var = g^2 (1/(4p(1-p)) - 1);
    spec §5.1 lists SA with Var 0, which holds for PSA but not for the authors' SA."""
    pr = bernoulli_toy(theta, t, noise=noise)
    theta_t = torch.tensor(theta, dtype=torch.float64)
    p = float(pr.model.noise.cdf(theta_t))
    g = float(pr.model.noise.pdf(theta_t)) * (1 - 2 * t)
    psa = path_moments(get_estimator("psa"), pr)
    assert float(psa.mean[1]) == pytest.approx(g, rel=1e-12)
    assert float(psa.variance[1]) == pytest.approx(0.0, abs=1e-20)
    sa = path_moments(get_estimator("sa"), pr)
    assert float(sa.mean[1]) == pytest.approx(g, rel=1e-12)
    assert float(sa.variance[1]) == pytest.approx(g**2 * (1 / (4 * p * (1 - p)) - 1), rel=1e-10)


# ---- metadata --------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["psa", "sa"])
def test_metadata(spec):
    est = get_estimator(spec)
    pr = problem_of((2, 3, 4), seed=1, head="softmax")
    assert est.family == "path-analytic" and est.unbiased == "last layer only"
    assert est.hyperparameters == {} and est.spec == spec
    assert est.evals_per_draw(pr.model) == 1 + 4
    assert est.unbiased_layers(pr.model) == frozenset({2, 3})
    assert est.bytes_per_draw(pr) > get_estimator("st").bytes_per_draw(pr)


# ---- draws -------------------------------------------------------------------------------------

ALPHA = 1e-3  # Bonferroni family-wise false-fail rate of the z-test for a random seed


@pytest.mark.parametrize(
    ("spec", "coding", "noise"), [("psa", "01", "logistic"), ("sa", "pm1", "gaussian")]
)
def test_draws_match_exact_moments(spec, coding, noise):
    """40k draws: every coordinate's mean within the Bonferroni bound of the exact mean (exact
    standard errors; alpha = 1e-3 over all P coordinates, fixed seed), total variance within 5 %,
    coordinates with zero variance equal to their mean."""
    pr = problem_of((2, 3, 2), seed=9, head="softmax", coding=coding, noise=noise, n_points=4)
    est = get_estimator(spec)
    m = path_moments(est, pr)
    S = 40000
    d = est.draw(pr, S, generator=torch.Generator().manual_seed(3))
    assert d.shape == (S, pr.n_params) and d.dtype == torch.float64
    bound = NormalDist().inv_cdf(1 - ALPHA / (2 * pr.n_params))
    random = m.variance > 1e-24
    z = (d.mean(0) - m.mean)[random] / (m.variance[random] / S).sqrt()
    assert float(z.abs().max()) < bound
    assert torch.allclose(d[:, ~random], m.mean[~random].expand(S, -1), rtol=1e-9, atol=1e-12)
    assert float(d.var(0).sum()) == pytest.approx(float(m.variance.sum()), rel=0.05)


@pytest.mark.parametrize("spec", ["psa", "sa"])
def test_a_draw_is_the_data_mean_of_path_estimates_on_the_sampled_path(spec):
    """The vectorised draw (unit-major recursion, sub-chunks) agrees with ``path_estimate`` on the
    same states: replaying the generator gives the path the draw used."""
    pr = problem_of((3, 2, 3), seed=4, head="logistic", coding="01", n_points=5)
    est = get_estimator(spec)
    d = est.draw(pr, 64, generator=torch.Generator().manual_seed(11))
    path = sample_path(pr, 64, torch.Generator().manual_seed(11))
    per_point = est.path_estimate(pr, path.bits)
    assert per_point.shape == (64, 5, pr.n_params)
    assert torch.allclose(d, per_point.mean(-2), rtol=1e-12, atol=1e-14)
    assert torch.allclose(
        d, assemble(pr, est.path_terms(pr, path), per_point=False), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("spec", ["psa", "sa"])
@pytest.mark.parametrize("widths", [(1,), (2, 1), (3, 2, 4)])
def test_path_terms_leave_the_path_untouched(spec, widths):
    """The recursion works in place on its own temporaries only (unit-major copies can be views
    of the path's tensors when a layer has one unit)."""
    pr = problem_of(widths, seed=2, coding="pm1", head="softmax", n_points=3)
    path = sample_path(pr, 8, torch.Generator().manual_seed(0))
    before = [t.clone() for t in (*path.bits, *path.xs, *path.a, *path.p, path.z)]
    get_estimator(spec).path_terms(pr, path)
    after = (*path.bits, *path.xs, *path.a, *path.p, path.z)
    assert all(torch.equal(x, y) for x, y in zip(before, after, strict=True))


@pytest.mark.parametrize("spec", ["psa", "sa"])
def test_draws_are_reproducible_and_chunked(spec):
    pr = problem_of((3, 3), seed=1, head="mse", coding="pm1")
    est = get_estimator(spec)
    a = est.draw(pr, 300, generator=torch.Generator().manual_seed(5))
    b = est.draw(pr, 300, generator=torch.Generator().manual_seed(5))
    c = est.draw(pr, 300, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    small = est.draw(
        pr,
        300,
        generator=torch.Generator().manual_seed(5),
        memory_budget=est.bytes_per_draw(pr) * 7,
    )  # chunks of <= 7 draws
    assert small.shape == a.shape and torch.isfinite(small).all()
    # Different chunking, same distribution: the means agree within sampling error.
    diff = (small.mean(0) - a.mean(0)).abs()
    scale = (a.var(0) + small.var(0)).div(300).sqrt()
    assert bool((diff <= 6 * scale + 1e-12).all())
