"""The hard-sigmoid weight model: W = sign(eta + L), L uniform on [-1, 1], so
P(W = +1) = clip((eta + 1)/2, 0, 1) (``weight_noise="uniform"``).

Checked here: the model's probabilities, means and Jacobian; the exact solver against brute-force
joint enumeration (autograd through the clip) and finite differences; REINFORCE exactly unbiased
by enumeration, with the sigmoid score failing; ST's exact mean relation and exactness in the
linear regime; binaryconnect(proxy=hardtanh) = weight-st wrt eta draw for draw; ARM / DisARM
exactly unbiased over weight cells (sign activations) and statistically (z-tests, Bonferroni,
false-fail rate ALPHA each), without d phi / d eta failing both; the relaxations against autograd;
check_estimator; checkpoints and cases. The REINFORCE, ARM / DisARM and relaxation tests run
for the probit weight noise too (``weight_noise="gaussian"``; the rest of the probit checks are
in tests/test_weights_probit.py). Float64, explicit generators throughout."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import Tensor

from estbench.cases import CaseError, parse_case
from estbench.errors import CheckpointError, ModelError
from estbench.kinds.sbn.estimators.straight_through import StraightThrough
from estbench.kinds.sbn.model import NOISES, Problem, flatten_layers
from estbench.kinds.sbn.moments import path_moments as core_path_moments
from estbench.kinds.weights import (
    BinaryConnect,
    WeightARM,
    WeightConcrete,
    WeightDisARM,
    WeightGumbelRao,
    WeightProblem,
    WeightReinforce,
    WeightStraightThrough,
    WeightStraightThroughGumbelSoftmax,
    exact_gradient,
    exact_loss,
    load_weight_checkpoint,
    random_weight_sbn,
    save_weight_checkpoint,
)
from estbench.kinds.weights import estimators as west
from estbench.kinds.weights.paths import (
    draw_uniforms,
    path_from_uniforms,
    path_moments,
    weight_configurations,
)
from estbench.testing import check_estimator

from .test_weights_estimators import AffineHead, cell_expectation, linear_regime_problem, z_test
from .test_weights_exact import close, joint_oracle, make_problem
from .test_weights_relaxed import autograd_estimates

F64 = torch.float64
UNIFORM = NOISES["uniform"]
ALPHA = 1e-3  # false-fail rate of each statistical test (Bonferroni over the coordinates)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make(
    widths, kinds, *, seed, n_points=3, eta_scale=1.0, weight_noise="uniform", **options
) -> WeightProblem:
    """A random network with the uniform weight noise (or ``weight_noise``); eta_scale 1 puts
    about a third of the latent weights outside [-1, 1] (deterministic weights)."""
    return WeightProblem.create(
        *make_problem(
            widths,
            kinds,
            seed=seed,
            n_points=n_points,
            eta_scale=eta_scale,
            weight_noise=weight_noise,
            **options,
        )
    )


def bernoulli_etas(problem: WeightProblem) -> Tensor:
    return torch.cat([problem.model.params[k].reshape(-1) for k in problem.model.bernoulli_layers])


NETS = {
    "logistic-01": dict(widths=(2, 2), kinds=("real", "bernoulli", "real"), seed=1),
    "uniform-pm1-bfirst": dict(
        widths=(2, 2),
        kinds=("bernoulli", "bernoulli", "real"),
        seed=2,
        coding="pm1",
        activation="uniform",
        head="softmax",
    ),
    "sign-pm1": dict(
        widths=(2, 2),
        kinds=("bernoulli", "bernoulli", "real"),
        seed=3,
        coding="pm1",
        activation="sign",
    ),
    "gaussian-01-deep": dict(
        widths=(2, 2, 1),
        kinds=("real", "bernoulli", "bernoulli", "real"),
        seed=4,
        activation="gaussian",
        head="mse",
    ),
}


def net(name: str, **extra) -> WeightProblem:
    return make(**{**NETS[name], **extra})


def test_every_net_has_stochastic_and_deterministic_weights():
    for name in NETS:
        eta = bernoulli_etas(net(name)).abs()
        assert bool((eta < 1).any()) and bool((eta > 1).any()), name


# ---- the model -------------------------------------------------------------------------------


def test_probabilities_means_and_jacobian_are_the_hard_sigmoid():
    eta = torch.tensor([[-2.5, -1.0, -0.4, 0.0], [0.3, 0.999, 1.0, 3.0]], dtype=F64)
    model = WeightProblem.create(
        random_weight_sbn(2, (4, 2), generator=gen(0), weight_noise="uniform"),
        torch.zeros(1, 2, dtype=F64),
        torch.ones(1, dtype=F64),
    ).model
    model = model.replace(params=(model.params[0], eta, model.params[2]))
    p, q = model.probs(1)
    assert torch.equal(p, ((eta + 1) / 2).clamp(0, 1)) and torch.equal(
        q, ((1 - eta) / 2).clamp(0, 1)
    )
    assert torch.allclose(model.means(1), p - q, rtol=0, atol=1e-15)
    assert torch.equal(model.means(1), eta.clamp(-1, 1))
    assert torch.equal(model.mean_jacobian(1), (eta.abs() <= 1).to(F64))
    assert torch.equal(model.weight_density(1), 0.5 * (eta.abs() <= 1).to(F64))
    assert "weight noise uniform" in model.describe()
    assert model.to(dtype=torch.float32).weight_noise.name == "uniform"
    assert model.replace(coding="pm1").weight_noise is UNIFORM
    with pytest.raises(ModelError, match="pair 0 has real weights"):
        model.probs(0)


def test_the_weight_noise_does_not_change_the_random_network():
    a = random_weight_sbn(2, (3, 2), generator=gen(5))
    b = random_weight_sbn(2, (3, 2), generator=gen(5), weight_noise="uniform")
    assert all(torch.equal(x, y) for x, y in zip(a.params, b.params, strict=True))
    assert a.weight_noise.name == "logistic" and "weight noise" not in a.describe()
    with pytest.raises(ModelError, match=r"unknown weight noise 'cauchy'; expected one of"):
        random_weight_sbn(2, (3, 2), generator=gen(5), weight_noise="cauchy")
    with pytest.raises(ModelError, match="unknown weight noise"):
        a.replace(weight_noise=SimpleNamespace(name="cauchy"))


# ---- exact solver ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(NETS))
def test_exact_matches_joint_enumeration(name):
    problem = net(name)
    got = exact_gradient(problem.model, problem.X, problem.Y)
    for wrt in ("eta", "mu"):
        loss, pairs = joint_oracle(problem.model, problem.X, problem.Y, wrt=wrt)
        assert abs(float(got.loss - loss)) <= 1e-13 * float(loss)
        for k, (g, o) in enumerate(zip(got.layer_vectors(wrt), flatten_layers(pairs), strict=True)):
            assert close(g, o), (wrt, k)
    # dJ/deta = dJ/dmu 1[|eta| <= 1]: 0 for a deterministic weight, whose dJ/dmu is not 0.
    m = problem.model
    for k in m.bernoulli_layers:
        d_eta, d_mu = got.grads[k][0], got.mean_grads[k][0]
        assert torch.equal(d_eta, d_mu * m.mean_jacobian(k))
        outside = m.params[k].abs() > 1
        assert bool((d_eta[outside] == 0).all()) and bool((d_mu[outside] != 0).all())


@pytest.mark.parametrize("name", ["logistic-01", "sign-pm1"])
def test_exact_matches_finite_differences(name):
    """Central differences of the exact loss, h = 1e-6, at every Bernoulli latent weight: J is a
    polynomial in p = (eta + 1)/2 inside (-1, 1) (tolerance 1e-7 relative), and constant in eta
    outside [-1, 1] (the difference is exactly 0, as is the gradient)."""
    problem = net(name)
    m, h = problem.model, 1e-6
    got = exact_gradient(m, problem.X, problem.Y)
    checked_inside = checked_outside = 0
    for k in m.bernoulli_layers:
        for idx in itertools.product(*map(range, m.params[k].shape)):
            eta = m.params[k]
            if abs(abs(float(eta[idx])) - 1) < 10 * h:
                continue  # at a kink the derivative does not exist
            values = []
            for sign in (1, -1):
                moved = eta.clone()
                moved[idx] += sign * h
                params = tuple(moved if j == k else P for j, P in enumerate(m.params))
                values.append(float(exact_loss(m.replace(params=params), problem.X, problem.Y)))
            fd = (values[0] - values[1]) / (2 * h)
            g = float(got.grads[k][0][idx])
            if abs(float(eta[idx])) > 1:
                assert values[0] == values[1] and g == 0.0
                checked_outside += 1
            else:
                assert abs(fd - g) <= 1e-7 * max(1e-3, abs(g)), (k, idx, fd, g)
                checked_inside += 1
    assert checked_inside >= 2 and checked_outside >= 1


# ---- REINFORCE: exactly unbiased ------------------------------------------------------------


def exact_mean(estimator, problem):
    return path_moments(estimator, problem, context=estimator.prepare(problem, None)).mean


@pytest.mark.parametrize("weight_noise", ["uniform", "gaussian"])
@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize(("baseline", "mode"), [("none", "shared"), ("oracle", "per-point")])
def test_reinforce_is_exactly_unbiased(name, baseline, mode, weight_noise):
    problem = net(name, weight_noise=weight_noise)
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    mean = exact_mean(WeightReinforce(baseline=baseline, weights=mode), problem)
    assert float((mean - exact).abs().max()) <= 1e-10 * (1 + float(exact.abs().max()))


class SigmoidScoreReinforce(WeightReinforce):
    """Negative control: the logistic model's score b - p used with another weight noise."""

    def weight_score(self, problem, path, k):
        return path.wbits[k] - problem.model.probs(k)[0]


@pytest.mark.parametrize("weight_noise", ["uniform", "gaussian"])
def test_sigmoid_score_fails_the_exact_test(weight_noise):
    problem = net("sign-pm1", weight_noise=weight_noise)
    exact = exact_gradient(problem.model, problem.X, problem.Y).layer_vectors()
    mean = problem.split(exact_mean(SigmoidScoreReinforce(), problem))
    for k in problem.model.bernoulli_layers:
        assert float((mean[k] - exact[k]).norm() / exact[k].norm()) > 0.1, k


def test_score_of_a_deterministic_weight_is_zero():
    problem = net("sign-pm1")
    path = path_from_uniforms(problem, draw_uniforms(problem, 50, gen(1), False), False)
    for k in problem.model.bernoulli_layers:
        score = WeightReinforce().weight_score(problem, path, k)
        outside = problem.model.params[k].abs() >= 1
        assert bool((score[:, outside] == 0).all()) and bool(torch.isfinite(score).all())
        assert bool((score[:, ~outside] != 0).all())


# ---- straight-through and BinaryConnect -------------------------------------------------------


@pytest.mark.parametrize("name", ["logistic-01", "uniform-pm1-bfirst"])
def test_st_mean_is_the_weight_average_of_the_core_st_mean(name):
    """Given W, weight-st(wrt=mu) is the core principled ST on SBN(W): E[g_mu] = sum_W P(W)
    E[st | W] (hard-sigmoid P(W)); E[g_eta] = E[g_mu] 1[|eta| <= 1] coordinatewise."""
    problem = net(name)
    m = problem.model
    wbits, p_w = weight_configurations(m)
    expected = 0.0
    for c in range(p_w.shape[0]):
        if p_w[c] == 0:
            continue
        W = [None if w is None else 2 * w[c] - 1 for w in wbits]
        core = Problem.create(m.with_weights(W), problem.X, problem.Y)
        expected = expected + p_w[c] * core_path_moments(StraightThrough(), core).mean
    got = exact_mean(WeightStraightThrough(wrt="mu"), problem)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-15)
    eta = problem.split(exact_mean(WeightStraightThrough(), problem))
    mu = problem.split(got)
    for k in m.bernoulli_layers:
        n = m.params[k].numel()
        jac = m.mean_jacobian(k).reshape(-1)
        assert torch.equal(eta[k][:n], mu[k][:n] * jac)


@pytest.mark.parametrize("coding", ["01", "pm1"])
def test_st_is_exact_in_the_linear_regime(coding):
    """Affine loss, uniform activations with |a| < 1 on every configuration: E[l | W] is
    multilinear in the weights, so ST is unbiased in every layer, wrt eta and mu, also for the
    hard-sigmoid weights (latent weights of both signs, some outside [-1, 1])."""
    base = linear_regime_problem(coding)
    eta0 = torch.tensor([[0.3, -1.4], [-0.6, 0.9]], dtype=F64)
    model = base.model.replace(
        weight_noise=UNIFORM, params=(eta0, *base.model.params[1:]), head=AffineHead()
    )
    problem = WeightProblem.create(model, base.X, base.Y)
    exact = exact_gradient(model, problem.X, problem.Y)
    for wrt in ("eta", "mu"):
        mean = problem.split(exact_mean(WeightStraightThrough(wrt=wrt), problem))
        for k, (got, g) in enumerate(zip(mean, exact.layer_vectors(wrt), strict=True)):
            assert g.norm() > 1e-3
            assert float((got - g).norm() / g.norm()) < 1e-10, (wrt, k)


@pytest.mark.parametrize("name", ["logistic-01", "sign-pm1", "uniform-pm1-bfirst"])
@pytest.mark.parametrize("mode", ["shared", "per-point"])
def test_clipped_binaryconnect_is_the_principled_st_wrt_eta(name, mode):
    """binaryconnect(proxy=hardtanh) multiplies dl/dW by 1[|eta| <= 1] = 2 F_w'(eta), which is
    weight-st's factor d mu / d eta: identical draws. Compared with dJ/deta (wrt=eta) its exact
    mean is weight-st's; the draws do not depend on wrt."""
    problem = net(name)
    bc = BinaryConnect(proxy="hardtanh", weights=mode)
    bc_eta = BinaryConnect(proxy="hardtanh", weights=mode, wrt="eta")
    st = WeightStraightThrough(weights=mode)
    a = bc.draw(problem, 64, generator=gen(8))
    assert torch.equal(a, st.draw(problem, 64, generator=gen(8)))
    assert torch.equal(a, bc_eta.draw(problem, 64, generator=gen(8)))
    assert (bc.wrt, bc_eta.wrt, st.wrt) == ("mu", "eta", "eta")
    assert bc_eta.spec.endswith("proxy=hardtanh, wrt=eta)")


def test_clipped_binaryconnect_differs_from_st_with_sigmoid_weights():
    """Negative control: with the logistic weight noise the clipped identity is not ST's
    2 sigmoid' factor, so the draws differ."""
    problem = net("logistic-01")
    problem = WeightProblem.create(
        problem.model.replace(weight_noise=NOISES["logistic"]), problem.X, problem.Y
    )
    a = BinaryConnect(proxy="hardtanh").draw(problem, 16, generator=gen(8))
    b = WeightStraightThrough().draw(problem, 16, generator=gen(8))
    assert not torch.allclose(a, b)


# ---- ARM and DisARM --------------------------------------------------------------------------


@pytest.fixture
def without_logit_scale(monkeypatch):
    """Negative control: ARM / DisARM without d phi / d eta (the logit gradient reported as the
    eta gradient)."""
    monkeypatch.setattr(west, "weight_logit_scale", lambda model, k, p, q: None)


@pytest.mark.parametrize("cls", [WeightARM, WeightDisARM])
def test_pair_estimators_are_exactly_unbiased_over_weight_cells(cls):
    """Sign activations: the only noise is the weights', and the estimate is affine (ARM) or
    constant (DisARM) in u on each cell cut by min(p, q), max(p, q) -- exact expectation."""
    problem = net("sign-pm1")
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    mean = cell_expectation(cls(), problem)
    assert float((mean - exact).abs().max()) < 1e-12
    assert float(exact.abs().max()) > 1e-2


@pytest.mark.parametrize("cls", [WeightARM, WeightDisARM])
def test_pair_estimators_without_the_logit_scale_fail_the_cell_test(cls, without_logit_scale):
    problem = net("sign-pm1")
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    mean = cell_expectation(cls(), problem)
    assert float((mean - exact).abs().max()) > 1e-2


S_DRAWS = 20000


@pytest.mark.parametrize("cls", [WeightARM, WeightDisARM])
@pytest.mark.parametrize(
    ("name", "mode", "weight_noise"),
    [
        ("logistic-01", "shared", "uniform"),
        ("uniform-pm1-bfirst", "per-point", "uniform"),
        ("logistic-01", "shared", "gaussian"),
        ("sign-pm1", "per-point", "gaussian"),
    ],
)
def test_pair_estimators_are_statistically_unbiased(cls, name, mode, weight_noise):
    """Per-coordinate z-test with Bonferroni, false-fail rate ALPHA = 1e-3 per test; the
    version without d phi / d eta fails it by a wide margin (z > 2 x threshold)."""
    problem = net(name, weight_noise=weight_noise)
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    draws = cls(weights=mode).draw(problem, S_DRAWS, generator=gen(11))
    z, threshold = z_test(draws, exact, ALPHA)
    assert z < threshold, (z, threshold)


@pytest.mark.parametrize("weight_noise", ["uniform", "gaussian"])
def test_arm_without_the_logit_scale_fails_the_z_test(without_logit_scale, weight_noise):
    problem = net("logistic-01", weight_noise=weight_noise)
    exact = exact_gradient(problem.model, problem.X, problem.Y).flat()
    draws = WeightARM().draw(problem, S_DRAWS, generator=gen(11))
    z, threshold = z_test(draws, exact, ALPHA)
    assert z > 2 * threshold, (z, threshold)


# ---- relaxations -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["shared", "per-point"])
@pytest.mark.parametrize(
    ("name", "weight_noise"),
    [("logistic-01", "uniform"), ("uniform-pm1-bfirst", "uniform"), ("logistic-01", "gaussian")],
)
@pytest.mark.parametrize("cls", [WeightConcrete, WeightStraightThroughGumbelSoftmax])
def test_relaxations_equal_autograd_of_the_relaxed_pass(cls, name, weight_noise, mode):
    problem = net(name, weight_noise=weight_noise)
    tau = 0.7
    est = cls(tau=tau, weights=mode)
    noise = draw_uniforms(problem, 4, gen(5), est.per_point)
    ours = est.estimate(problem, noise)
    ref, _ = autograd_estimates(problem, noise, tau, est.per_point, hard=cls is not WeightConcrete)
    assert float((ours - ref).abs().max()) <= 1e-10 * max(1.0, float(ref.abs().max()))
    assert float(ref.abs().max()) > 0


def test_relaxed_weights_are_the_clipped_noisy_latent_weights():
    """Concrete with the hard sigmoid: W~ = clip((eta + L)/tau, -1, 1), L = 1 - 2u."""
    problem = net("logistic-01")
    noise = draw_uniforms(problem, 8, gen(2), False)
    rp = WeightConcrete(tau=0.5).relaxed_pass(problem, noise, None)
    eta, u = problem.model.params[1], noise.weights[1]
    assert torch.allclose(rp.weights[1], ((eta + 1 - 2 * u) / 0.5).clamp(-1, 1), atol=1e-15)


def test_gumbel_rao_has_the_st_gs_mean_on_the_same_paths():
    """GR - ST-GS on the same hard paths has mean 0 (z-test, Bonferroni, false-fail rate
    ALPHA); K = 1 is ST-GS draw for draw."""
    problem = net("logistic-01")
    assert torch.equal(
        WeightGumbelRao(k=1).draw(problem, 20, generator=gen(4)),
        WeightStraightThroughGumbelSoftmax().draw(problem, 20, generator=gen(4)),
    )
    noise = draw_uniforms(problem, S_DRAWS, gen(12), False)
    diff = WeightGumbelRao(k=10).estimate(problem, noise, gen(13))
    diff = diff - WeightStraightThroughGumbelSoftmax().estimate(problem, noise)
    z, threshold = z_test(diff, torch.zeros(diff.shape[1], dtype=F64), ALPHA)
    assert z < threshold, (z, threshold)


# ---- conformance -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "weight-reinforce",
        "weight-st",
        "binaryconnect(proxy=hardtanh, wrt=eta)",
        "weight-arm",
        "weight-disarm",
    ],
)
def test_check_estimator_passes(spec):
    report = check_estimator(spec, n_draws=20000, raise_on_failure=False)
    assert report.passed, report.format()
    assert any("net2" in r.name for r in report.results)  # the hard-sigmoid problem


# ---- checkpoints -----------------------------------------------------------------------------


def test_checkpoint_round_trip_keeps_the_weight_noise(tmp_path):
    problem = net("uniform-pm1-bfirst")
    path = tmp_path / "w.npz"
    save_weight_checkpoint(path, problem.model, problem.X, problem.Y)
    ckpt = load_weight_checkpoint(path)
    again = ckpt.model()
    assert ckpt.weight_noise == "uniform" and again.weight_noise is UNIFORM
    assert all(torch.equal(a, b) for a, b in zip(again.params, problem.model.params, strict=True))
    a = exact_gradient(again, *ckpt.data())
    assert torch.equal(a.flat(), exact_gradient(problem.model, problem.X, problem.Y).flat())
    # A file written before the key existed is the logistic model; a bad value is an error.
    arrays = dict(np.load(path))
    del arrays["weight_noise"]
    np.savez(path, **arrays)
    assert load_weight_checkpoint(path).model().weight_noise.name == "logistic"
    np.savez(path, **arrays, weight_noise=np.array("cauchy"))
    with pytest.raises(CheckpointError, match=r"key weight_noise is 'cauchy'; expected one of"):
        load_weight_checkpoint(path)


# ---- cases -----------------------------------------------------------------------------------

CASE = """
schema_version = 1
[data]
kind = "xor"
n = 4
seed = 3
[model]
weights = "bernoulli"
weight_noise = "uniform"
widths = [2, 2]
eta_scale = 0.5
seed = 2
[measure]
estimators = ["weight-st", "binaryconnect(proxy=hardtanh, wrt=eta)"]
draws = 100
M = [1, 10]
"""


def test_case_weight_noise_reaches_the_model(tmp_path):
    from estbench.runner import CaseRunner

    case = parse_case(CASE, name="hs")
    assert case.model.weight_noise == "uniform"
    logistic = parse_case(CASE.replace('weight_noise = "uniform"\n', ""), name="hs")
    assert logistic.model.weight_noise == "logistic"
    runner = CaseRunner(case, tmp_path, progress=lambda message: None)
    problem = runner.problem(case.points()[0])
    assert problem.model.weight_noise is UNIFORM


def test_case_weight_noise_mistakes_name_file_key_value_and_expected():
    with pytest.raises(
        CaseError,
        match=r"model.weight_noise: expected one of 'logistic', 'uniform', 'gaussian'.*'hard'",
    ):
        parse_case(CASE.replace('"uniform"', '"hard"'), name="hs")
    sbn = CASE.replace('weights = "bernoulli"\n', "").replace("eta_scale = 0.5\n", "")
    with pytest.raises(CaseError, match=r"model.weight_noise: a key of problem kind 'weights'"):
        parse_case(
            sbn.replace('"weight-st", "binaryconnect(proxy=hardtanh, wrt=eta)"', '"st"'), name="hs"
        )


def test_a_checkpoint_must_have_the_case_weight_noise(tmp_path):
    from estbench.runner import case_checkpoint

    problem = net("logistic-01")
    path = tmp_path / "w.npz"
    save_weight_checkpoint(path, problem.model, problem.X, problem.Y)
    text = CASE.replace("widths = [2, 2]\n", f'checkpoint = "{path}"\n')
    model, _ = case_checkpoint(parse_case(text, name="hs"))
    assert model.weight_noise is UNIFORM
    with pytest.raises(
        CheckpointError, match=r"key weight_noise gives 'uniform'.*model.weight_noise"
    ):
        case_checkpoint(parse_case(text.replace('weight_noise = "uniform"\n', ""), name="hs"))


def test_shipped_hardsigmoid_case_validates():
    from estbench.cases import load_case
    from estbench.estimators.registry import get_estimator

    case = load_case("weights-hardsigmoid")
    m = case.model
    assert (m.kind, m.weight_noise, m.activation_name, m.eta_scale) == (
        "weights",
        "uniform",
        "logistic",
        0.7,
    )
    assert {(p["depth"], p["width"]) for p in case.points()} == {(2, 3), (3, 3)}
    specs = {get_estimator(e).spec for e in case.measure.estimators}
    assert {"weight-st", "binaryconnect(proxy=hardtanh, wrt=eta)", "weight-arm"} <= specs
