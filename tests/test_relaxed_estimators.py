"""Relaxation family: concrete, st-gs, gumbel-rao (spec §3, §5.1).

Their noise is continuous, so moments are checked by Monte Carlo against 1-D quadrature of the
spec §5.1 formulas, with one harness for every statistical test:

* per-coordinate z = (mean - target) / (sd / sqrt(S)), pass iff max |z| < Phi^{-1}(1 - alpha/(2d))
  (Bonferroni, alpha = 1e-3 per test; fixed seeds, so a passing seed stays passing);
* variances are checked with the plug-in standard error sqrt((m4 - s^4) / S) of the sample
  variance, at the same level;
* negative controls (the total-derivative GR-MC of pitfall P5, a wrong-temperature Concrete of
  P9) must fail the same harness.

The quadrature itself is validated against the spec's numeric anchor rows.
"""

from __future__ import annotations

import math

import pytest
import torch

from estbench.estimators import EstimatorError, get_estimator
from estbench.kinds.sbn.estimators.relaxed import open_unit
from estbench.kinds.sbn.model import Problem, convert_coding
from estbench.kinds.sbn.problems import bernoulli_toy
from estbench.rng import uniforms

from .conftest import random_problem

F64 = torch.float64
ALPHA = 1e-3
ANCHORS = {  # (theta, t, tau): E ST-GS, Var ST-GS, Var GR (K = 10), E Concrete (spec §5.1)
    (0.3, 0.45, 1.0): (0.03498904, 0.03262622, 0.02736177, 0.026411),
    (-1.7, 0.2, 0.5): (0.02910622, 0.04486655, 0.03082495, 0.0454916),
}


# ---- the statistical harness ------------------------------------------------------------------


def critical(d: int, alpha: float = ALPHA) -> float:
    """Two-sided Bonferroni critical value for d coordinates."""
    return float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1 - alpha / (2 * d))))


def mean_z(draws: torch.Tensor, target) -> torch.Tensor:
    S = draws.shape[0]
    return (draws.mean(0) - torch.as_tensor(target, dtype=F64)) / (draws.std(0) / math.sqrt(S))


def var_z(draws: torch.Tensor, target) -> torch.Tensor:
    S = draws.shape[0]
    c = draws - draws.mean(0)
    s2 = draws.var(0)
    m4 = (c**4).mean(0)
    return (s2 - torch.as_tensor(target, dtype=F64)) / ((m4 - s2**2) / S).sqrt()


def consistent(z: torch.Tensor) -> bool:
    z = z.reshape(-1)
    return float(z.abs().max()) < critical(z.numel())


def draws(spec: str, problem: Problem, n: int, seed: int, **kw) -> torch.Tensor:
    return get_estimator(spec).draw(problem, n, generator=torch.Generator().manual_seed(seed), **kw)


def one_batch(spec: str, problem: Problem, n: int, seed: int) -> torch.Tensor:
    est = get_estimator(spec)
    gen = torch.Generator().manual_seed(seed)
    return est._draw(problem, n, gen, est.prepare(problem, gen))


# ---- 1-D quadrature of the spec §5.1 formulas ------------------------------------------------


def dsig(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x) * torch.sigmoid(-x)


def integrate(fn, lo: float, hi: float, n: int = 20_001) -> float:
    """Simpson's rule (n odd); the integrands are smooth on each piece and decay like e^-|l|,
    so [-60, 60] loses < 1e-25."""
    x = torch.linspace(lo, hi, n, dtype=F64)
    w = torch.ones(n, dtype=F64)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return float((w * fn(x)).sum() * (hi - lo) / (3 * (n - 1)))


def stgs_halves(theta: float, tau: float, power: int = 1) -> tuple[float, float]:
    """A_m, B_m: the integral of sigma'(v) (tau^-1 sigma'((theta + v)/tau))^m over v > -theta
    resp. v < -theta (the noise L = v; the unit is on iff theta + L > 0)."""
    fn = lambda v: dsig(v) * (dsig((theta + v) / tau) / tau) ** power  # noqa: E731
    return integrate(fn, -theta, 60.0), integrate(fn, -60.0, -theta)


def toy_moments(theta: float, t: float, tau: float, k: int = 10) -> dict[str, float]:
    """Spec §5.1 for f(b) = (b - t)^2 with the real extension (beta - t)^2."""
    p = 1 / (1 + math.exp(-theta))
    f1, f0 = 2 * (1 - t), -2 * t
    A, B = stgs_halves(theta, tau)
    A2, B2 = stgs_halves(theta, tau, 2)
    mean = f1 * A + f0 * B
    gr2 = p * f1**2 * ((A2 / p - (A / p) ** 2) / k + (A / p) ** 2) + (1 - p) * f0**2 * (
        (B2 / (1 - p) - (B / (1 - p)) ** 2) / k + (B / (1 - p)) ** 2
    )

    def concrete(power: int) -> float:
        def fn(v):
            s = torch.sigmoid((theta + v) / tau)
            return dsig(v) * (2 * (s - t) * dsig((theta + v) / tau) / tau) ** power

        return integrate(fn, -60.0, 60.0)

    c1 = concrete(1)
    return {
        "stgs_mean": mean,
        "stgs_var": f1**2 * A2 + f0**2 * B2 - mean**2,
        "gr_var": gr2 - mean**2,
        "concrete_mean": c1,
        "concrete_var": concrete(2) - c1**2,
    }


@pytest.fixture(scope="module")
def toy_quadrature() -> dict[tuple[float, float, float], dict[str, float]]:
    return {key: toy_moments(*key) for key in ANCHORS}


def test_quadrature_reproduces_the_spec_anchors(toy_quadrature):
    for key, (e_stgs, var_stgs, var_gr, e_concrete) in ANCHORS.items():
        q = toy_quadrature[key]
        assert q["stgs_mean"] == pytest.approx(e_stgs, rel=1e-6)
        assert q["stgs_var"] == pytest.approx(var_stgs, rel=1e-6)
        assert q["gr_var"] == pytest.approx(var_gr, rel=1e-6)
        assert q["concrete_mean"] == pytest.approx(e_concrete, abs=1e-6)


# ---- Bernoulli toy: means and variances against quadrature ------------------------------------

S_TOY = 100_000


@pytest.mark.parametrize("key", list(ANCHORS))
@pytest.mark.parametrize("coding", ["01", "pm1"])
def test_toy_moments_match_quadrature(toy_quadrature, key, coding):
    """db0 (flat index 1) of st-gs, gumbel-rao(k=10) and concrete: mean and variance. The
    first layer's parameters are shared by both codings, so the same numbers apply to both."""
    theta, t, tau = key
    q = toy_quadrature[key]
    pr = bernoulli_toy(theta, t)
    if coding == "pm1":
        pr = Problem.create(convert_coding(pr.model, "pm1"), pr.X, pr.Y)
    stgs = draws(f"st-gs(tau={tau})", pr, S_TOY, 1)[:, 1:2]
    gr = draws(f"gumbel-rao(tau={tau}, k=10)", pr, S_TOY, 2)[:, 1:2]
    conc = draws(f"concrete(tau={tau})", pr, S_TOY, 3)[:, 1:2]
    z = torch.cat(
        [
            mean_z(stgs, q["stgs_mean"]),
            var_z(stgs, q["stgs_var"]),
            mean_z(gr, q["stgs_mean"]),
            var_z(gr, q["gr_var"]),
            mean_z(conc, q["concrete_mean"]),
            var_z(conc, q["concrete_var"]),
        ]
    )
    assert consistent(z), z


def test_negative_controls_fail_the_same_harness(toy_quadrature):
    """P5: GR-MC with the total derivative through the conditional noise (K = 1) loses the
    ST-GS mean. P9: a Concrete written as tanh((a + L)/tau) in +-1 coding (T = tau instead of
    2 tau) is Concrete at tau/2. Both must be rejected where the real estimators pass."""
    key = (0.3, 0.45, 1.0)
    theta, t, tau = key
    q = toy_quadrature[key]
    g = torch.Generator().manual_seed(7)
    u = torch.rand(S_TOY, generator=g, dtype=F64)
    v = torch.rand(S_TOY, generator=g, dtype=F64)
    th = torch.full((S_TOY,), theta, dtype=F64, requires_grad=True)
    p = torch.sigmoid(th)
    on = u < p.detach()
    # conditional logistic noise with its dependence on theta left in (the P5 mistake)
    L = torch.where(on, -torch.logit(v * p), torch.logit(v * (1 - p)))
    (jac,) = torch.autograd.grad(torch.sigmoid((th + L) / tau).sum(), th)
    total = (2 * (on.to(F64) - t) * jac)[:, None]
    assert not consistent(mean_z(total, q["stgs_mean"]))

    L = -torch.logit(open_unit(u))
    x = torch.tanh((theta + L) / tau)  # the +-1 relaxation with T = tau
    wrong_tau = (2 * ((x + 1) / 2 - t) * (1 - x**2) / (2 * tau))[:, None]
    assert not consistent(mean_z(wrong_tau, q["concrete_mean"]))
    # ... while the same form with T = 2 tau is the estimator and passes
    x = torch.tanh((theta + L) / (2 * tau))
    right_tau = (2 * ((x + 1) / 2 - t) * (1 - x**2) / (4 * tau))[:, None]
    assert consistent(mean_z(right_tau, q["concrete_mean"]))


# ---- deep networks --------------------------------------------------------------------------


def deep(
    noise: str = "logistic",
    coding: str = "pm1",
    head: str = "softmax",
    seed: int = 5,
    widths=(3, 3, 3),
) -> Problem:
    return Problem.create(
        *random_problem(widths, seed=seed, noise=noise, coding=coding, head=head, n_points=4)
    )


@pytest.mark.parametrize("noise", ["logistic", "gaussian", "uniform"])
def test_gumbel_rao_has_the_st_gs_mean_with_lower_variance(noise):
    """Paired z-test on a deep net: with the same seed both estimators sample the same paths,
    and GR's Jacobian has the ST-GS conditional mean given the path, so E[GR - ST-GS] = 0.
    The conditional noise of gaussian and uniform noise is exercised as well."""
    pr = deep(noise)
    tau = 0.5
    n = 10_000
    # One batch each (no chunking), so that both consume the generator in the same order.
    stgs = one_batch(f"st-gs(tau={tau})", pr, n, 11)
    gr = one_batch(f"gumbel-rao(tau={tau}, k=10)", pr, n, 11)
    binary = slice(0, sum(pr.model.layer_sizes[:-1]))
    diff = (gr - stgs)[:, binary]
    assert consistent(mean_z(diff, 0.0))
    # The heads coincide (below), so the comparison is over the binary layers.
    assert float(gr[:, binary].var(0).sum()) < 0.8 * float(stgs[:, binary].var(0).sum())
    # Same paths: the heads' pathwise gradients coincide draw for draw.
    assert torch.equal(gr[:, binary.stop :], stgs[:, binary.stop :])


@pytest.mark.parametrize("coding", ["pm1", "01"])
def test_gumbel_rao_with_one_sample_is_st_gs(coding):
    pr = deep(coding=coding, head="logistic")
    a = draws("gumbel-rao(tau=0.7, k=1)", pr, 500, 4)
    b = draws("st-gs(tau=0.7)", pr, 500, 4)
    assert torch.equal(a, b)


def test_hard_relaxed_estimators_sample_the_st_paths():
    """st-gs consumes the generator as st does: the head columns (pathwise, x_L sampled) agree,
    so its head gradient is the unbiased ST head gradient."""
    pr = deep()
    head = slice(sum(pr.model.layer_sizes[:-1]), None)
    assert torch.equal(draws("st-gs", pr, 300, 9)[:, head], draws("st", pr, 300, 9)[:, head])
    est = get_estimator("st-gs")
    assert est.unbiased_layers(pr.model) == {pr.model.depth}
    assert get_estimator("concrete").unbiased_layers(pr.model) == frozenset()


def _autograd_reference(pr: Problem, n: int, seed: int, tau: float, hard: bool) -> torch.Tensor:
    """Per-draw gradients by autograd over per-draw parameter copies, with the uniforms the
    estimators draw (one U(0,1) tensor [n, N, n_k] per layer, in layer order). ``hard``: the
    straight-through form x = hard + (s - sg(s)) of ST-GS; otherwise the relaxed x = s."""
    m = pr.model
    g = torch.Generator().manual_seed(seed)
    us = [uniforms((n, pr.n_points, w), g) for w in m.widths]
    Ws = [W.expand(n, *W.shape).clone().requires_grad_() for W in m.weights]
    bs = [b.expand(n, *b.shape).clone().requires_grad_() for b in m.biases]
    x = pr.X.expand(n, *pr.X.shape)
    for k, u in enumerate(us):
        a = torch.einsum("snd,sjd->snj", x, Ws[k]) + bs[k][:, None, :]
        y = (a - m.noise.icdf(open_unit(u))) / tau
        s = m.noise.cdf(y)
        if hard:
            s = (u < m.noise.cdf(a)).to(F64) + (s - s.detach())
        x = s if m.coding == "01" else 2 * s - 1
    z = torch.einsum("snd,sjd->snj", x, Ws[-1]) + bs[-1][:, None, :]
    loss = m.head.loss(z, pr.Y).mean(-1).sum()
    grads = torch.autograd.grad(loss, [t for pair in zip(Ws, bs, strict=True) for t in pair])
    return torch.cat([t.reshape(n, -1) for t in grads], dim=1)


@pytest.mark.parametrize(
    ("noise", "coding", "head"),
    [
        ("logistic", "pm1", "softmax"),
        ("gaussian", "01", "mse"),
        ("uniform", "pm1", "logistic"),
    ],
)
def test_backward_passes_equal_autograd(noise, coding, head):
    """The hand-written backward of concrete (pathwise) and st-gs (straight-through surrogate)
    equals autograd of the same computation with the same noise."""
    pr = deep(noise, coding, head, seed=3)
    tau = 0.6
    ref = _autograd_reference(pr, 64, 8, tau, hard=False)
    got = draws(f"concrete(tau={tau})", pr, 64, 8)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    ref = _autograd_reference(pr, 64, 8, tau, hard=True)
    got = draws(f"st-gs(tau={tau})", pr, 64, 8)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "spec", ["concrete(tau=0.3)", "st-gs(tau=0.3)", "gumbel-rao(tau=0.3, k=5)"]
)
def test_coding_invariance_of_the_first_layer(spec):
    """All three are coding invariant (x~ = 2s - 1 with D = 2 tau^-1 S' in +-1): the same
    network in the other coding gives the same first-layer draws for the same noise (P1)."""
    pr = deep(coding="pm1")
    other = Problem.create(convert_coding(pr.model, "01"), pr.X, pr.Y)
    n0 = pr.model.layer_sizes[0]
    a = draws(spec, pr, 400, 6)[:, :n0]
    b = draws(spec, other, 400, 6)[:, :n0]
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


# ---- contract ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["concrete(tau=0.1)", "st-gs", "gumbel-rao(k=3)"])
@pytest.mark.parametrize("noise", ["logistic", "gaussian", "uniform"])
@pytest.mark.parametrize(
    ("coding", "head"), [("pm1", "softmax"), ("01", "mse"), ("01", "logistic")]
)
def test_smoke_every_noise_coding_and_head(spec, noise, coding, head):
    """Smoke test: shape, dtype and finiteness (values are tested above)."""
    pr = deep(noise, coding, head, seed=12, widths=(2, 3))
    d = draws(spec, pr, 50, 0)
    assert d.shape == (50, pr.n_params) and d.dtype == F64
    assert torch.isfinite(d).all()


@pytest.mark.parametrize("spec", ["concrete", "st-gs", "gumbel-rao"])
def test_reproducible_and_chunked(spec):
    pr = deep(seed=1)
    a = draws(spec, pr, 200, 5)
    assert torch.equal(a, draws(spec, pr, 200, 5))
    assert not torch.equal(a, draws(spec, pr, 200, 6))
    budget = get_estimator(spec).bytes_per_draw(pr) * 60  # 4 chunks
    small = draws(spec, pr, 200, 5, memory_budget=budget)
    assert torch.equal(small, draws(spec, pr, 200, 5, memory_budget=budget))
    assert small.shape == a.shape and torch.isfinite(small).all()


def test_hyperparameters_are_checked():
    with pytest.raises(EstimatorError, match="tau"):
        get_estimator("concrete(tau=0)")
    with pytest.raises(EstimatorError, match="k"):
        get_estimator("gumbel-rao(k=0)")
    est = get_estimator("gumbel-rao(tau=0.5, k=20)")
    assert est.params == {"tau": 0.5, "k": 20} and est.family == "relaxation"
