"""Estimators for stochastic binary weights: exact expectations by enumerating weights and
states (path estimators, deterministic, to 1e-10), statistical tests with a stated false-fail rate
(ARM, DisARM, variances), relations between estimators draw for draw, and negative controls."""

from __future__ import annotations

import math

import pytest
import torch

from estbench.kinds.sbn.estimators.straight_through import StraightThrough
from estbench.kinds.sbn.model import Problem
from estbench.kinds.sbn.moments import path_moments as core_path_moments
from estbench.kinds.weights.estimators import (
    BinaryConnect,
    WeightARM,
    WeightDisARM,
    WeightReinforce,
    WeightStraightThrough,
)
from estbench.kinds.weights.exact import exact_gradient
from estbench.kinds.weights.model import WeightProblem
from estbench.kinds.weights.paths import Uniforms, path_moments, weight_configurations

from .test_weights_exact import make_problem

F64 = torch.float64
ALPHA = 1e-3  # false-fail rate of each statistical test (Bonferroni over coordinates)


def problem_of(*args, **kwargs) -> WeightProblem:
    return WeightProblem.create(*make_problem(*args, **kwargs))


def exact_mean(estimator, problem):
    return path_moments(estimator, problem, context=estimator.prepare(problem, None))


def rel(a, b):
    return float((a - b).norm() / b.norm())


def z_test(draws, expected, alpha=ALPHA):
    """Max |z| of the mean of the draws against ``expected`` over all coordinates, and the
    Bonferroni threshold Phi^{-1}(1 - alpha / 2P): an unbiased estimator exceeds it with
    probability <= alpha (normal approximation, S >= 10^4 bounded draws). Coordinates with zero
    sample variance must match exactly."""
    S, P = draws.shape
    mean, sd = draws.mean(0), draws.std(0)
    varying = sd > 0
    assert torch.allclose(mean[~varying], expected[~varying], rtol=1e-12, atol=1e-14)
    z = ((mean - expected)[varying] / (sd[varying] / math.sqrt(S))).abs().max()
    threshold = math.sqrt(2) * torch.special.erfinv(torch.tensor(1 - alpha / P, dtype=F64))
    return float(z), float(threshold)


# Networks for the estimator tests: every activation kind, both codings, a Bernoulli first layer.
NETS = {
    "logistic-01": dict(widths=(2, 2), kinds=("real", "bernoulli", "real"), coding="01"),
    "gaussian-pm1": dict(
        widths=(2, 2),
        kinds=("bernoulli", "bernoulli", "real"),
        coding="pm1",
        activation="gaussian",
        head="softmax",
    ),
    "sign-pm1": dict(
        widths=(2, 2), kinds=("bernoulli", "bernoulli", "real"), coding="pm1", activation="sign"
    ),
    "sign-01-deep": dict(
        widths=(2, 2, 1),
        kinds=("real", "bernoulli", "bernoulli", "real"),
        coding="01",
        activation="sign",
        head="mse",
    ),
    "uniform-01": dict(
        widths=(3,), kinds=("bernoulli", "real"), coding="01", activation="uniform", head="mse"
    ),
}


def net(name: str, seed: int = 1, **extra) -> WeightProblem:
    spec = {**NETS[name], **extra}
    return problem_of(spec.pop("widths"), spec.pop("kinds"), seed=seed, **spec)


# ---- REINFORCE: exactly unbiased -------------------------------------------------------------


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("baseline", ["none", "oracle"])
def test_reinforce_is_exactly_unbiased(name, baseline):
    problem = net(name)
    exact = exact_gradient(problem.model, problem.X, problem.Y)
    est = WeightReinforce(baseline=baseline)
    mean = exact_mean(est, problem).mean
    for k, (m, g) in enumerate(zip(problem.split(mean), exact.layer_vectors("eta"), strict=True)):
        assert float((m - g).abs().max()) <= 1e-10 * (1 + float(g.abs().max())), k
    assert est.wrt == "eta"
    assert est.unbiased_layers(problem.model) == frozenset(range(problem.model.depth + 1))


class PlusMinusScoreReinforce(WeightReinforce):
    """Negative control: the score of the ±1 value, W - mu = 2 (b - p), instead of b - p."""

    def weight_score(self, problem, path, k):
        return 2 * super().weight_score(problem, path, k)


def test_wrong_weight_score_fails_the_exact_test():
    problem = net("sign-pm1")
    exact = exact_gradient(problem.model, problem.X, problem.Y)
    mean = exact_mean(PlusMinusScoreReinforce(), problem).mean
    for k in problem.model.bernoulli_layers:
        assert rel(problem.split(mean)[k], exact.layer_vectors()[k]) > 0.1


def test_shared_and_per_point_modes_have_the_same_mean_and_other_variances():
    """Linearity: the same mean. Variance of the weight score term: shared, (mean_n l_n)(b - p)
    with one b for all points; per point, N independent scores averaged -- about N times less
    (here N = 3: the ratio is about 2). The head differs too (coupled through the shared draw)."""
    problem = net("logistic-01", n_points=3)
    shared = exact_mean(WeightReinforce(), problem)
    per_point = exact_mean(WeightReinforce(weights="per-point"), problem)
    assert torch.allclose(shared.mean, per_point.mean, rtol=0, atol=1e-15)
    v_shared, v_point = shared.layer_total_variances(), per_point.layer_total_variances()
    assert float(v_shared[1] / v_point[1]) > 1.5  # the Bernoulli pair
    assert float(v_shared[2] / v_point[2]) > 1.01  # the head


@pytest.mark.parametrize("mode", ["shared", "per-point"])
def test_exact_variance_matches_the_draws(mode):
    """Per coordinate, the sample variance of S draws against the exact variance, z from the
    fourth sample moment, Bonferroni at rate ALPHA."""
    problem = net("gaussian-pm1", n_points=3)
    est = WeightReinforce(weights=mode)
    moments = exact_mean(est, problem)
    S = 40000
    draws = est.draw(problem, S, generator=torch.Generator().manual_seed(5))
    centred = draws - draws.mean(0)
    var = centred.pow(2).mean(0)
    se = ((centred.pow(4).mean(0) - var**2) / S).sqrt()
    z = ((var - moments.variance) / se).abs().max()
    threshold = math.sqrt(2) * torch.special.erfinv(torch.tensor(1 - ALPHA / var.numel()))
    assert float(z) < float(threshold)


def test_one_point_shared_and_per_point_draws_are_identical():
    problem = net("gaussian-pm1", n_points=1)
    a = WeightReinforce().draw(problem, 50, generator=torch.Generator().manual_seed(3))
    b = WeightReinforce(weights="per-point").draw(
        problem, 50, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, b)


def test_draws_follow_the_generator():
    problem = net("logistic-01")
    est = WeightARM()
    a = est.draw(problem, 20, generator=torch.Generator().manual_seed(1))
    b = est.draw(problem, 20, generator=torch.Generator().manual_seed(1))
    c = est.draw(problem, 20, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (20, problem.n_params) and a.dtype == F64


# ---- straight-through: what its expectation is, where it is exact ----------------------------


@pytest.mark.parametrize("coding", ["01", "pm1"])
def test_st_mean_is_the_weight_average_of_the_core_st_mean(coding):
    """Given W, weight-st(wrt=mu) is the core principled ST on the network with weights W; so
    E[g] = sum_W P(W) E[st | W], with the core's own path enumeration for E[st | W]."""
    problem = net("logistic-01", coding=coding)
    model = problem.model
    wbits, p_w = weight_configurations(model)
    expected = 0.0
    for c in range(p_w.shape[0]):
        W = [None if w is None else 2 * w[c] - 1 for w in wbits]
        core = Problem.create(model.with_weights(W), problem.X, problem.Y)
        expected = expected + p_w[c] * core_path_moments(StraightThrough(), core).mean
    got = exact_mean(WeightStraightThrough(wrt="mu"), problem).mean
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-15)


class AffineHead:
    """Test-only head l(z, y) = y . z with real targets [N, K]: affine in z, so the loss is
    multilinear in the last binary layer -- the case in which the derivation makes ST exact."""

    name = "affine"

    def check_out_dim(self, out_dim):
        pass

    def targets(self, Y, out_dim):
        return Y.reshape(Y.shape[0], out_dim)

    def loss(self, z, y):
        return (z * y).sum(-1)

    def grad(self, z, y):
        return y.expand(z.shape)


def linear_regime_problem(coding, activation="uniform", head=None):
    """Bernoulli first layer (real input), a real hidden pair, real head; inputs, biases and the
    real hidden weights small, so that every pre-activation of every weight draw and state lies
    in (-1, 1), where uniform noise has E[x | a] affine in a."""
    model, X, Y = make_problem(
        (2, 2),
        ("bernoulli", "real", "real"),
        seed=6,
        coding=coding,
        activation=activation,
        head="mse",
        x_scale=0.15,
        bias_scale=0.1,
    )
    model = model.replace(
        params=(model.params[0], 0.2 * model.params[1], model.params[2]),
        head=head or AffineHead(),
    )
    return WeightProblem.create(model, X, Y)


def max_preactivation(problem):
    from estbench.kinds.weights.paths import enumerate_paths

    path, _ = enumerate_paths(problem)
    return max(float(a.abs().max()) for a in path.a)


@pytest.mark.parametrize("coding", ["01", "pm1"])
def test_st_is_exact_where_the_derivation_says(coding):
    """Affine loss and uniform noise with |a| < 1 for every configuration: E[l | W] is multilinear
    in the weights (each entry enters one affine E[x | a] once) and the activation ST is exact, so
    the weight ST is unbiased in every layer, wrt eta and wrt mu."""
    problem = linear_regime_problem(coding)
    assert max_preactivation(problem) < 0.9
    exact = exact_gradient(problem.model, problem.X, problem.Y)
    for wrt in ("eta", "mu"):
        mean = exact_mean(WeightStraightThrough(wrt=wrt), problem).mean
        for k, (got, g) in enumerate(
            zip(problem.split(mean), exact.layer_vectors(wrt), strict=True)
        ):
            assert g.norm() > 1e-3
            assert rel(got, g) < 1e-10, (wrt, k)


@pytest.mark.parametrize("change", ["logistic noise", "mse head"])
def test_st_is_biased_when_the_derivation_does_not_hold(change):
    """The same network with a nonlinear E[x | a] (logistic noise) or a loss that is not
    multilinear in x (mse: the x_j^2 terms): biased below the head, exact in the head."""
    from estbench.kinds.sbn.model import HEADS

    if change == "logistic noise":
        problem = linear_regime_problem("pm1", activation="logistic")
    else:
        problem = linear_regime_problem("pm1", head=HEADS["mse"])
    exact = exact_gradient(problem.model, problem.X, problem.Y).layer_vectors()
    mean = problem.split(exact_mean(WeightStraightThrough(), problem).mean)
    assert rel(mean[0], exact[0]) > 1e-3
    assert rel(mean[-1], exact[-1]) < 1e-10


def test_st_is_biased_in_depth_with_sign_activations():
    problem = net("sign-01-deep")
    exact = exact_gradient(problem.model, problem.X, problem.Y).layer_vectors()
    mean = problem.split(exact_mean(WeightStraightThrough(), problem).mean)
    for k in problem.model.bernoulli_layers:
        assert rel(mean[k], exact[k]) > 1e-2, k
    assert rel(mean[-1], exact[-1]) < 1e-10
    assert WeightStraightThrough().unbiased_layers(problem.model) == {problem.model.depth}


def test_st_claimed_unbiased_would_fail():
    """Negative control for the claim: the exact test that REINFORCE passes rejects ST."""
    problem = net("gaussian-pm1")
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    mean = exact_mean(WeightStraightThrough(), problem).mean
    assert float((mean - exact).abs().max()) > 1e-4


@pytest.mark.parametrize("name", ["gaussian-pm1", "sign-pm1"])
@pytest.mark.parametrize("mode", ["shared", "per-point"])
def test_st_eta_is_st_mu_times_the_mean_jacobian(name, mode):
    problem = net(name)
    m = problem.model
    eta = WeightStraightThrough(weights=mode).draw(
        problem, 64, generator=torch.Generator().manual_seed(4)
    )
    mu = WeightStraightThrough(weights=mode, wrt="mu").draw(
        problem, 64, generator=torch.Generator().manual_seed(4)
    )
    scale = [
        torch.cat(
            (
                m.mean_jacobian(k).reshape(-1)
                if kind == "bernoulli"
                else torch.ones(m.params[k].numel(), dtype=F64),
                torch.ones(m.biases[k].numel(), dtype=F64),
            )
        )
        for k, kind in enumerate(m.kinds)
    ]
    assert torch.allclose(eta, mu * torch.cat(scale), rtol=1e-14, atol=0)
    assert WeightStraightThrough(wrt="mu").wrt == "mu"


def test_binaryconnect_sampled_identity_is_st_wrt_mu():
    problem = net("gaussian-pm1")
    gen = lambda: torch.Generator().manual_seed(8)  # noqa: E731
    bc = BinaryConnect().draw(problem, 64, generator=gen())
    st = WeightStraightThrough(wrt="mu").draw(problem, 64, generator=gen())
    assert torch.equal(bc, st) and BinaryConnect().wrt == "mu"


@pytest.mark.parametrize("proxy", ["identity", "hardtanh"])
def test_binaryconnect_sign_forward_is_the_core_st_at_the_mode(proxy):
    """forward=sign: E[g] over the activations equals the core ST mean on SBN(sign(eta)), with
    the Bernoulli coordinates times 1[|eta| <= 1] for the clipped proxy."""
    problem = net("logistic-01")
    m = problem.model
    est = BinaryConnect(forward="sign", proxy=proxy)
    W = [
        None if kind == "real" else torch.where(P >= 0, 1.0, -1.0).to(F64)
        for P, kind in zip(m.params, m.kinds, strict=True)
    ]
    core = core_path_moments(
        StraightThrough(), Problem.create(m.with_weights(W), problem.X, problem.Y)
    )
    expected = problem.split(core.mean)
    if proxy == "hardtanh":
        k = 1
        clip = (m.params[k].abs() <= 1).to(F64).reshape(-1)
        assert 0 < clip.sum() < clip.numel()
        n = m.params[k].numel()
        expected[k] = torch.cat((expected[k][:n] * clip, expected[k][n:]))
    got = problem.split(exact_mean(est, problem).mean)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)
    assert est.unbiased_layers(m) == frozenset()


# ---- ARM and DisARM: statistical tests -------------------------------------------------------

S_DRAWS = 20000


@pytest.mark.parametrize("cls", [WeightARM, WeightDisARM, WeightReinforce])
@pytest.mark.parametrize(
    ("name", "mode"),
    [("logistic-01", "shared"), ("gaussian-pm1", "per-point"), ("sign-pm1", "shared")],
)
def test_pair_estimators_are_unbiased(cls, name, mode):
    problem = net(name)
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    est = cls(weights=mode)
    draws = est.draw(problem, S_DRAWS, generator=torch.Generator().manual_seed(11))
    z, threshold = z_test(draws, exact)
    assert z < threshold, (z, threshold)
    L = problem.model.depth
    stochastic = 0 if problem.model.noise is None else L
    if cls is WeightReinforce:
        return
    assert est.evals_per_draw(problem.model) == 1 + len(problem.model.bernoulli_layers) + stochastic


def cell_expectation(estimator, problem):
    """Exact E[g] of a pair estimator when the only noise is the weights' (sign activations).

    Per weight coordinate the bits 1[u < p] and 1[u > 1 - p] are constant on the three cells cut
    by min(p, q) and max(p, q), and ARM's (u - 1/2) and DisARM's weight are affine (or constant)
    in u there; so E[g] = sum over joint cells of (cell probability) x g(cell midpoints)."""
    m = problem.model
    assert m.noise is None
    mids, lens, shapes = [], [], []
    for k in m.bernoulli_layers:
        p, q = (t.reshape(-1) for t in m.probs(k))
        cuts = torch.stack(
            (torch.zeros_like(p), torch.minimum(p, q), torch.maximum(p, q), torch.ones_like(p)), -1
        )
        mids.append((cuts[:, 1:] + cuts[:, :-1]) / 2)
        lens.append(cuts[:, 1:] - cuts[:, :-1])
        shapes.append(m.params[k].shape)
    mid, length = torch.cat(mids), torch.cat(lens)  # [n, 3]
    n = mid.shape[0]
    cells = torch.cartesian_prod(*[torch.arange(3)] * n).reshape(-1, n)
    u = mid.gather(1, cells.T).T  # [C, n]
    weight = length.gather(1, cells.T).T.prod(1)
    parts = iter(torch.split(u, [s.numel() for s in shapes], dim=1))
    weights = [
        next(parts).reshape(-1, *m.params[k].shape) if kind == "bernoulli" else None
        for k, kind in enumerate(m.kinds)
    ]
    noise = Uniforms(weights, [None] * m.depth)
    return (weight[:, None] * estimator.estimate(problem, noise)).sum(0)


@pytest.mark.parametrize("cls", [WeightARM, WeightDisARM])
@pytest.mark.parametrize("coding", ["01", "pm1"])
def test_pair_estimators_are_exactly_unbiased_over_weight_cells(cls, coding):
    problem = net("sign-pm1", coding=coding)  # 8 Bernoulli weights: 3^8 joint cells
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    mean = cell_expectation(cls(), problem)
    assert float((mean - exact).abs().max()) < 1e-12
    assert float(exact.abs().max()) > 1e-2


def test_complement_pair_fails_the_exact_cell_test():
    problem = net("sign-pm1")
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    mean = cell_expectation(ComplementPairARM(), problem)
    assert float((mean - exact).abs().max()) > 1e-2


class ComplementPairARM(WeightARM):
    """Negative control: the complement of the sample (1 - b) as the second branch instead of
    the antithetic draw, biased for groups of more than one Bernoulli (pitfall P7)."""

    def pair(self, u, p, q):
        return (u >= p).to(u.dtype), (u < p).to(u.dtype)


def test_complement_pair_fails_the_same_test():
    problem = net("sign-pm1")
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    draws = ComplementPairARM().draw(problem, S_DRAWS, generator=torch.Generator().manual_seed(11))
    z, threshold = z_test(draws, exact)
    assert z > 2 * threshold, (z, threshold)


def test_pair_estimators_have_lower_variance_than_reinforce_on_the_weights():
    """Smoke-level property with a margin: on the weight layers ARM's variance is below
    REINFORCE's (no claim in general; a regression guard on this network)."""
    problem = net("sign-pm1")
    gen = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    reinforce = exact_mean(WeightReinforce(), problem).layer_total_variances()
    arm = problem.split(WeightARM().draw(problem, 4000, generator=gen()).var(0))
    for k in problem.model.bernoulli_layers:
        assert float(arm[k].sum()) < 0.5 * float(reinforce[k])


def test_latent_weight_sgd_with_the_mean_gradient_is_mirror_descent():
    """Mirror descent on mu in (-1, 1)^n with the Bernoulli negative entropy phi as mirror map,
    mu+ = argmin_m <g, m> + D_phi(m, mu) / eps, is eta+ = eta - 2 eps g for mu = tanh(eta / 2):
    the objective is stationary there (and strictly convex), so the latent-weight step with the
    mean gradient g = dJ/dmu (what weight-st(wrt=mu) estimates) is a mirror-descent step."""
    gen = torch.Generator().manual_seed(0)
    eta = 2 * torch.randn(6, generator=gen, dtype=F64)
    g = torch.randn(6, generator=gen, dtype=F64)
    eps = 0.3
    mu = torch.tanh(eta / 2)

    def phi(m):
        return ((1 + m) / 2 * torch.log((1 + m) / 2) + (1 - m) / 2 * torch.log((1 - m) / 2)).sum()

    mu_leaf = mu.clone().requires_grad_()
    (grad_phi,) = torch.autograd.grad(phi(mu_leaf), mu_leaf)
    assert torch.allclose(grad_phi, eta / 2, rtol=1e-12)

    def objective(m):
        return (g * m).sum() + (phi(m) - phi(mu) - (grad_phi * (m - mu)).sum()) / eps

    step = torch.tanh((eta - 2 * eps * g) / 2).requires_grad_()
    (stationarity,) = torch.autograd.grad(objective(step), step)
    assert float(stationarity.abs().max()) < 1e-12
    wrong = torch.tanh((eta - eps * g) / 2).requires_grad_()  # eta - eps g: not the step
    (off,) = torch.autograd.grad(objective(wrong), wrong)
    assert float(off.abs().max()) > 0.1


def test_a_deterministic_path_still_gives_one_row_per_draw():
    """binaryconnect(forward=sign) with sign activations has no randomness left: S equal rows."""
    problem = net("sign-pm1")
    draws = BinaryConnect(forward="sign").draw(problem, 5, generator=torch.Generator())
    assert draws.shape == (5, problem.n_params) and torch.equal(draws[0], draws[4])
