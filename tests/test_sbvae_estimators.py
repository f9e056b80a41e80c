"""Estimators of the ``sbvae`` kind: the conformance check of every one (statistical tests
against the exact ELBO gradient on the kind's three small VAEs), the exact expectation of the
score-function estimators by enumerating their samples, and negative controls."""

from __future__ import annotations

import itertools

import pytest
import torch

from estbench.estimators.registry import default_registry
from estbench.kinds.sbn.model import state_bits
from estbench.kinds.sbvae import exact_elbo
from estbench.kinds.sbvae.estimators import (
    VAEREBAR,
    VAEGumbelRao,
    VAEReinforce,
    VAEStraightThrough,
    VAEStraightThroughGumbelSoftmax,
)
from estbench.kinds.sbvae.estimators.base import per_draw, signal
from estbench.kinds.sbvae.estimators.score import _surrogate
from estbench.kinds.sbvae.model import VAEProblem
from estbench.problem import get_kind
from estbench.testing import check_estimator

KIND = get_kind("sbvae")
SPECS = [
    n for n, e in default_registry().items() if e.source == "estbench" and e.cls.problem == "sbvae"
]


def test_the_kind_registers_every_family():
    assert set(SPECS) == {
        "vae-reinforce",
        "vae-rloo",
        "vae-dcv",
        "vae-rodeo",
        "vae-arm",
        "vae-disarm",
        "vae-arms",
        "vae-carms",
        "vae-tokui-sato",
        "vae-leg",
        "vae-muprop",
        "vae-rebar",
        "vae-relax",
        "vae-st",
        "vae-st-identity",
        "vae-st-hardtanh",
        "vae-st-tanh",
        "vae-st-slope",
        "vae-darn",
        "vae-reinmax",
        "vae-gst",
        "vae-zgr",
        "vae-concrete",
        "vae-st-gs",
        "vae-gumbel-rao",
    }


@pytest.mark.parametrize(
    "spec",
    [
        # The learned controls' defaults (100 training steps) are checked by
        # tests/test_estimator_contract.py; here a short training, the same code paths.
        *(f"{s}(train_steps=10)" if s in ("vae-relax", "vae-rodeo") else s for s in SPECS),
        "vae-reinforce(baseline=frozen)",
        "vae-reinforce(baseline=oracle)",
        "vae-reinforce(path=keep)",
        "vae-rloo(K=3)",
        "vae-disarm(path=keep)",
        "vae-muprop(path=keep)",
        "vae-rebar(path=keep)",
        "vae-rebar(tau=1.0, eta=0.5)",
        "vae-st(path=drop)",
        "vae-st-slope(s=2.0, form=hard)",
        "vae-concrete(tau=0.1)",
        "vae-concrete(path=drop)",
        "vae-st-gs(tau=0.5)",
        "vae-gumbel-rao(k=1)",
    ],
)
def test_every_estimator_passes_the_conformance_check(spec):
    report = check_estimator(spec, raise_on_failure=False)
    assert report.passed, report.format()


class _NoScore(VAEReinforce):
    """Negative control: the decoder's pathwise term alone, the encoder's score term dropped
    (weight 0): biased in the encoder, which the check must see. A path estimator (its draws
    and its enumerated moments both come from ``path_estimates``), so the check is exact."""

    name = "vae-no-score"

    def path_estimates(self, problem, z, context):
        X = problem.X
        w = torch.zeros(z[0].shape[:-1], dtype=X.dtype)
        return per_draw(problem, lambda mm, zz, ww: _surrogate(mm, X, zz, ww), z, w)


def test_the_check_sees_a_biased_encoder_gradient():
    report = check_estimator(_NoScore(), raise_on_failure=False)
    failed = [r.name for r in report.results if not r.passed]
    assert failed and all("layer" in n and "unbiased" in n for n in failed), report.format()
    assert all("(exact)" in n for n in failed), report.format()
    # the decoder's pairs (layers 1, 2 of the one-layer VAE) pass: only the encoder is biased
    assert "unbiased (exact) net0 layer1" not in failed
    assert "unbiased (exact) net0 layer0" in failed


def _enumerated_mean(problem: VAEProblem, weight_fn) -> torch.Tensor:
    """E[g] of a one-sample score-function estimate, exactly: per point, every joint latent
    state z weighted by q(z | x_n), then the mean over points."""
    m = problem.model
    states = [state_bits(n) for n in m.latent]
    total = torch.zeros(problem.n_params, dtype=torch.float64)
    for n in range(problem.n_points):
        x = problem.X[n : n + 1]
        pr = VAEProblem.create(m, x, x.new_zeros(1, 0))
        combos = list(itertools.product(*(range(2**k) for k in m.latent)))
        z = [torch.stack([states[k][c[k]] for c in combos])[:, None, :] for k in range(m.n_latent)]
        q = m.log_posterior(x, z).exp()[:, 0]
        g = per_draw(pr, lambda mm, zz, ww, x=x: _surrogate(mm, x, zz, ww), z, weight_fn(m, x, z))
        total += (q[:, None] * g).sum(0)
    return total / problem.n_points


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("keep", [0.0, 1.0])
def test_reinforce_is_exactly_unbiased_by_enumeration(index, keep):
    """The exact expectation of vae-reinforce (its surrogate at every z, weighted by q) is the
    exact gradient to 1e-12, with the encoder's pathwise term dropped or kept; a constant baseline
    changes nothing in expectation, and the control without the score term is off."""
    pr = KIND.check_problems()[index]
    exact = pr.model.flat(exact_elbo(pr.model, pr.X).grads)
    mean = _enumerated_mean(pr, lambda m, x, z: (signal(m, x, z) - keep).detach())
    torch.testing.assert_close(mean, exact, rtol=1e-12, atol=1e-12)
    shifted = _enumerated_mean(pr, lambda m, x, z: (signal(m, x, z) - 3.7).detach())
    torch.testing.assert_close(shifted, exact, rtol=1e-12, atol=1e-12)
    none = _enumerated_mean(pr, lambda m, x, z: torch.zeros_like(signal(m, x, z)))
    assert float((none - exact).abs().max()) > 1e-3


def test_disarm_has_lower_encoder_variance_than_arm_on_a_single_layer():
    """DisARM is ARM Rao-Blackwellised over the augmentation noise (Dong, Mnih & Tucker 2020):
    on the one-layer check problem its encoder variance is below ARM's, draw for draw."""
    pr = KIND.check_problems()[0]
    enc = slice(0, pr.model.layer_sizes[0])
    var = {}
    for spec in ("vae-arm", "vae-disarm"):
        est = default_registry().create(spec)
        draws = est.draw(pr, 20000, generator=torch.Generator().manual_seed(0))
        var[spec] = float(draws[:, enc].var(0).sum())
    assert var["vae-disarm"] < 0.9 * var["vae-arm"]


# ---- the path estimators' exact means, by enumerating every latent state --------------------


def _states(m):
    """Every joint latent state: [C, 1, n_k] per layer (C = prod 2^n_k), for one data point."""
    bits = [state_bits(n).to(torch.float64) for n in m.latent]
    combos = list(itertools.product(*(range(2**n) for n in m.latent)))
    return [torch.stack([bits[k][c[k]] for c in combos])[:, None, :] for k in range(m.n_latent)]


def _exact_mean(problem: VAEProblem, estimates) -> torch.Tensor:
    """E[g] of a one-sample path estimator, exactly: per point, ``estimates(point problem,
    states)`` ([C, P], one row per joint state) weighted by q(z | x_n), then the mean over
    points."""
    m = problem.model
    total = torch.zeros(problem.n_params, dtype=torch.float64)
    for n in range(problem.n_points):
        x = problem.X[n : n + 1]
        pr = VAEProblem.create(m, x, x.new_zeros(1, 0))
        z = _states(m)
        q = m.log_posterior(x, z).exp()[:, 0]
        total += (q[:, None] * estimates(pr, z)).sum(0)
    return total / problem.n_points


def _forcing(z):
    """Uniforms that make the kind's sampler draw the states z (on iff u < p: 0 on, 1 off)."""
    return [1.0 - zk for zk in z]


def _exact(pr):
    return pr.model.flat(exact_elbo(pr.model, pr.X).grads)


def _blocks(pr):
    enc = sum(pr.model.layer_sizes[: pr.model.n_latent * (len(pr.model.hidden) + 1)])
    return slice(0, enc), slice(enc, pr.n_params)


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("path", ["drop", "keep"])
def test_muprop_is_exactly_unbiased_by_enumeration(index, path):
    """vae-muprop's exact expectation is the exact gradient to 1e-12 (one and two latent layers,
    linear and tanh); the negative control, its added-back term at the mean-field mu_{k-1}
    instead of the sampled z_{k-1} (spec §2.6), is off on the two-layer VAE."""
    est = default_registry().create(f"vae-muprop(path={path})")
    pr = KIND.check_problems()[index]
    mean = _exact_mean(pr, lambda p, z: est.estimates(p, z, est.prepare(p, None)))
    torch.testing.assert_close(mean, _exact(pr), rtol=1e-12, atol=1e-12)
    if pr.model.n_latent > 1:
        wrong = _exact_mean(
            pr, lambda p, z: est.estimates(p, z, est.prepare(p, None), upstream="mean")
        )
        assert float((wrong - _exact(pr)).abs().max()) > 1e-3


ST_SPECS = [
    "vae-st",
    "vae-st(path=drop)",
    "vae-st-identity",
    "vae-st-hardtanh",
    "vae-st-tanh",
    "vae-st-slope(s=2.0)",
    "vae-darn",
]


class _MeanFieldForward(VAEStraightThrough):
    """Negative control: the encoder's mean sigmoid(alpha) fed forward in place of the sampled
    states (a deterministic-forward "ST"): the decoder then sees the wrong states."""

    name = "vae-mean-forward"

    def estimates(self, problem, u, extra):
        from estbench.kinds.sbvae.estimators.base import integrand

        X = problem.X

        def surrogate(mm, uu):
            below, z = X, []
            for k in range(1, mm.n_latent + 1):
                below = torch.sigmoid(mm.encoder_logits(k, below)) + 0 * uu[k - 1]
                z.append(below)
            return -integrand(mm, X, z, keep=1.0).mean(-1)

        return per_draw(problem, surrogate, u)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_straight_through_decoders_are_exact_and_encoders_biased(index):
    """The straight-through family's exact expectations (its only randomness is the path):
    the decoder and prior blocks equal the exact gradient to 1e-12 (pathwise at the sampled z),
    the encoder block is off (the claim "decoder only"); the negative control, the encoder's
    mean fed forward, is off in the decoder too."""
    pr = KIND.check_problems()[index]
    exact = _exact(pr)
    enc, dec = _blocks(pr)
    for spec in ST_SPECS:
        est = default_registry().create(spec)
        mean = _exact_mean(pr, lambda p, z, est=est: est.estimates(p, _forcing(z), []))
        torch.testing.assert_close(mean[dec], exact[dec], rtol=1e-12, atol=1e-12)
        assert float((mean[enc] - exact[enc]).abs().max()) > 1e-3, spec
    wrong = _exact_mean(pr, lambda p, z: _MeanFieldForward().estimates(p, _forcing(z), []))
    assert float((wrong[dec] - exact[dec]).abs().max()) > 1e-3


@pytest.mark.parametrize("path", ["drop", "keep"])
def test_straight_through_matches_its_closed_form_on_a_linear_vae(path):
    """One draw of vae-st on a one-layer linear VAE against the formula written out:
    delta = df/dz = p_prior + p_W1^T (x - sigmoid(p_W1 z + p_b1)) - alpha, the encoder's logit
    gradient -delta sigmoid'(alpha) (plus z - sigmoid(alpha), -d(-log q)/dalpha, when the path is
    kept), the
    decoder's pathwise -(x - sigmoid(.)) z^T, averaged over the points."""
    pr = KIND.check_problems()[0]
    m, X = pr.model, pr.X
    P = m.params
    g = torch.Generator().manual_seed(5)
    u = [torch.rand(1, pr.n_points, m.latent[0], generator=g, dtype=torch.float64)]
    got = default_registry().create(f"vae-st(path={path})").estimates(pr, u, [])[0]
    alpha = X @ P["q_W1"].T + P["q_b1"]
    p = torch.sigmoid(alpha)
    z = (u[0][0] < p).to(torch.float64)
    r = X - torch.sigmoid(z @ P["p_W1"].T + P["p_b1"])
    delta = P["p_prior"] + r @ P["p_W1"] - alpha
    ga = -delta * p * (1 - p) + (z - p if path == "keep" else 0.0)
    N = pr.n_points
    want = {
        "q_W1": ga.T @ X / N,
        "q_b1": ga.mean(0),
        "p_W1": -(r.T @ z) / N,
        "p_b1": -r.mean(0),
        "p_prior": -(z - torch.sigmoid(P["p_prior"])).mean(0),
    }
    torch.testing.assert_close(got, m.flat(want), rtol=1e-12, atol=1e-12)


# ---- identities between estimators, draw for draw --------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("vae-gumbel-rao(k=1)", "vae-st-gs"),
        ("vae-st-slope", "vae-st"),
        ("vae-st-slope(form=hard)", "vae-st-hardtanh"),
        ("vae-rebar(eta=0.0)", "vae-reinforce"),
    ],
)
def test_special_cases_reproduce_their_estimator_draw_for_draw(a, b):
    """Gumbel-Rao with K = 1 is ST-GS, the slope proxies at s = 1 are ST and hardtanh-ST, and
    REBAR with eta = 0 (no control variate) is REINFORCE: same generator, same draws."""
    for pr in KIND.check_problems():
        da, db = (
            default_registry().create(s).draw(pr, 50, generator=torch.Generator().manual_seed(3))
            for s in (a, b)
        )
        torch.testing.assert_close(da, db, rtol=1e-13, atol=1e-13)


def _two_sample_z(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    se = (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt().clamp_min(1e-300)
    return (a.mean(0) - b.mean(0)).abs() / se


class _UnconditionalRao(VAEGumbelRao):
    """Negative control: Gumbel-Rao's extra noises drawn unconditionally (ignoring the sampled
    state), which changes the mean of the Jacobian."""

    name = "vae-unconditional-rao"

    def jacobian(self, alpha, b, u, extra):
        if extra is None:
            return super().jacobian(alpha, b, u, None)
        tau = self.params["tau"]
        own = VAEStraightThroughGumbelSoftmax.jacobian(self, alpha, b, u, None)
        from estbench.kinds.sbvae.estimators.base import logistic_noise

        s = torch.sigmoid((alpha + logistic_noise(extra)) / tau)
        return (own + (s * (1 - s)).sum(0) / tau) / self.params["k"]


def test_gumbel_rao_has_the_st_gs_mean_with_less_variance():
    """GR-MC_K has ST-GS's mean (conditional noises, partial derivative) and a smaller
    encoder variance (two latent layers, tau = 0.25); the control with unconditional extra
    noises has another mean, which the same two-sample test sees."""
    pr = KIND.check_problems()[1]
    enc, _ = _blocks(pr)
    n = 20000
    draws = {
        name: est.draw(pr, n, generator=torch.Generator().manual_seed(i))
        for i, (name, est) in enumerate(
            [
                ("st-gs", default_registry().create("vae-st-gs(tau=0.25)")),
                ("gr", default_registry().create("vae-gumbel-rao(tau=0.25)")),
                ("wrong", _UnconditionalRao(tau=0.25)),
            ]
        )
    }
    z = _two_sample_z(draws["gr"], draws["st-gs"])
    assert float(z.max()) < 4.5  # 31 coordinates, Bonferroni at about 1e-4
    assert float(draws["gr"][:, enc].var(0).sum()) < 0.6 * float(
        draws["st-gs"][:, enc].var(0).sum()
    )
    assert float(_two_sample_z(draws["wrong"], draws["st-gs"]).max()) > 6


class _REBARWithoutCorrection(VAEREBAR):
    """Negative control: REBAR without -grad c(z~'), the conditional surrogate's gradient."""

    name = "vae-rebar-uncorrected"

    def _draw(self, problem, n_draws, generator, context):
        from estbench.kinds.sbvae.estimators.base import layer_uniforms

        u = layer_uniforms(problem, (n_draws,), generator)
        v = layer_uniforms(problem, (n_draws,), generator)
        return self.estimates(problem, u, v, correction=False)


def test_the_check_sees_rebar_without_its_correction():
    report = check_estimator(_REBARWithoutCorrection(), raise_on_failure=False)
    failed = [r.name for r in report.results if not r.passed]
    assert failed and all("unbiased" in n and "net" in n for n in failed), report.format()


def test_concrete_is_biased_in_the_decoder_and_st_gs_is_not():
    """Concrete evaluates the decoder at relaxed states (biased there); ST-GS at the sampled
    ones (unbiased): the decoder blocks of 20,000 draws against the exact gradient."""
    from estbench.metrics import unbiasedness_test

    pr = KIND.check_problems()[0]
    exact = _exact(pr)
    _, dec = _blocks(pr)
    out = {}
    for spec in ("vae-concrete", "vae-st-gs"):
        d = (
            default_registry()
            .create(spec)
            .draw(pr, 20000, generator=torch.Generator().manual_seed(9))
        )
        out[spec] = unbiasedness_test(d[:, dec], exact[dec], alpha=1e-4).passed
    assert out == {"vae-concrete": False, "vae-st-gs": True}
