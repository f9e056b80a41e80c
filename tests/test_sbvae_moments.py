"""Exact path moments of the ``sbvae`` kind (``estbench.kinds.sbvae.moments``): the mean and
variance of one draw of REINFORCE, MuProp, LEG and the straight-through family by enumerating the
latent states of each point, against brute-force enumeration point by point (1e-12), against
Monte Carlo of the estimators' own draws, and through ``check_estimator``."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from estbench.estimators.registry import default_registry
from estbench.kinds.sbn.model import state_bits
from estbench.kinds.sbvae import exact_elbo
from estbench.kinds.sbvae.estimators.base import VAEPathEstimator
from estbench.kinds.sbvae.model import VAEProblem, random_sbvae
from estbench.kinds.sbvae.moments import bytes_per_state, path_moments
from estbench.problem import get_kind
from estbench.testing import check_estimator

KIND = get_kind("sbvae")
PATH_SPECS = [
    "vae-reinforce",
    "vae-reinforce(path=keep)",
    "vae-reinforce(baseline=frozen)",
    "vae-reinforce(baseline=oracle)",
    "vae-muprop",
    "vae-muprop(path=keep)",
    "vae-st",
    "vae-st(path=drop)",
    "vae-st-identity",
    "vae-st-hardtanh",
    "vae-st-tanh",
    "vae-st-slope(s=2.0, form=hard)",
    "vae-darn",
    "vae-reinmax",
    "vae-reinmax(tau=2.0)",
    "vae-gst",
    "vae-gst(form=p)",
    "vae-zgr",
    "vae-leg",
    "vae-leg(path=keep)",
]
NOT_PATH = ["vae-rloo", "vae-arm", "vae-disarm", "vae-rebar", "vae-concrete", "vae-st-gs",
            "vae-gumbel-rao", "vae-arms", "vae-carms", "vae-tokui-sato", "vae-relax"]  # fmt: skip


def _brute(est, pr, context):
    """E[g] and Var[g] of one draw, point by point: every joint latent state of the point as a
    row of the one-point problem's estimates, weighted by q(z | x_n); Var = (1/N^2) sum_n Var_n
    (two-pass, centred)."""
    m = pr.model
    bits = [state_bits(n).to(torch.float64) for n in m.latent]
    combos = list(itertools.product(*(range(2**n) for n in m.latent)))
    z = [torch.stack([bits[k][c[k]] for c in combos])[:, None, :] for k in range(m.n_latent)]
    means, variances = [], []
    for n in range(pr.n_points):
        x = pr.X[n : n + 1]
        point = VAEProblem.create(m, x, x.new_zeros(1, 0))
        ctx = (
            None
            if context is None
            else torch.utils._pytree.tree_map(lambda t, n=n: t[n : n + 1], context)
        )
        q = m.log_posterior(x, z).exp()[:, 0]
        assert abs(float(q.sum()) - 1) < 1e-12
        g = est.path_estimates(point, z, ctx)
        mu = (q[:, None] * g).sum(0)
        means.append(mu)
        variances.append((q[:, None] * (g - mu) ** 2).sum(0))
    N = pr.n_points
    return torch.stack(means).mean(0), torch.stack(variances).sum(0) / N**2


@pytest.mark.parametrize("spec", PATH_SPECS)
def test_moments_equal_brute_force_enumeration(spec):
    """On the kind's three check problems (one and two latent layers, linear and tanh), and in
    chunks of one point and one state (a tiny memory budget): 1e-12."""
    est = default_registry().create(spec)
    assert isinstance(est, VAEPathEstimator)
    for pr in KIND.check_problems():
        ctx = est.prepare(pr, torch.Generator().manual_seed(1))
        got = KIND.path_moments(est, pr, ctx, 1 << 16)
        assert got is not None
        mean, var = _brute(est, pr, ctx)
        torch.testing.assert_close(got.mean, mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got.variance, var, rtol=1e-12, atol=1e-12)
        one = bytes_per_state(pr)  # chunks of one point and one state
        small = path_moments(est, pr, context=ctx, memory_budget=one)
        torch.testing.assert_close(small.mean, got.mean, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(small.variance, got.variance, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("spec", ["vae-reinforce", "vae-muprop", "vae-st"])
def test_unbiased_means_are_the_exact_gradient(spec):
    """REINFORCE and MuProp: the enumerated mean is the exact gradient (1e-12), as the
    tests/test_sbvae_estimators.py enumerations say; ST: the decoder and prior part only."""
    est = default_registry().create(spec)
    for pr in KIND.check_problems():
        exact = pr.model.flat(exact_elbo(pr.model, pr.X).grads)
        mean = KIND.path_moments(est, pr, est.prepare(pr, None), 1 << 16).mean
        dec = slice(sum(pr.model.layer_sizes[: pr.model.n_latent * (len(pr.model.hidden) + 1)]),
                    None)  # fmt: skip
        part = slice(None) if spec != "vae-st" else dec
        torch.testing.assert_close(mean[part], exact[part], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec", ["vae-reinforce", "vae-muprop(path=keep)", "vae-darn"])
def test_moments_agree_with_the_estimators_own_draws(spec):
    """20,000 draws on the two-layer check problem: every coordinate's sample mean within
    z <= 4.9 of the exact mean, with the exact variance (Bonferroni over <= 40 coordinates: a
    false failure with probability below 40 * 1e-6 = 4e-5), and the total sample variance
    within 5 % of the exact one (its standard error here is below 1 %: well over 5 SE)."""
    est = default_registry().create(spec)
    pr = KIND.check_problems()[1]
    gen = torch.Generator().manual_seed(11)
    ctx = est.prepare(pr, gen)
    exact = KIND.path_moments(est, pr, ctx, 1 << 16)
    S = 20000
    draws = est.draw(pr, S, generator=gen, context=ctx)
    assert pr.n_params <= 40
    keep = exact.variance > 1e-20
    z = (draws.mean(0) - exact.mean)[keep] / (exact.variance[keep] / S).sqrt()
    assert float(z.abs().max()) < 4.9
    torch.testing.assert_close(draws.mean(0)[~keep], exact.mean[~keep], rtol=0, atol=1e-12)
    ratio = float(draws.var(0).sum() / exact.variance.sum())
    assert abs(ratio - 1) < 0.05, ratio


def test_only_path_estimators_and_within_max_paths():
    pr = KIND.check_problems()[1]  # latent (2, 2): 16 states per point
    for spec in NOT_PATH:
        est = default_registry().create(spec)
        assert KIND.path_count(est, pr.model) is None
        assert KIND.path_moments(est, pr, None, 1 << 16) is None
    st = default_registry().create("vae-st")
    assert KIND.path_count(st, pr.model) == 16
    assert KIND.path_moments(st, pr, None, 15) is None
    assert KIND.path_moments(st, pr, None, 16) is not None


def test_moments_refuse_a_state_over_the_budget_and_bad_contexts():
    from estbench.errors import MemoryBudgetError

    pr = KIND.check_problems()[0]
    st = default_registry().create("vae-st")
    with pytest.raises(MemoryBudgetError, match="over the limit of 2"):
        path_moments(st, pr, max_paths=2)
    with pytest.raises(MemoryBudgetError, match="per latent state and point"):
        path_moments(st, pr, memory_budget=bytes_per_state(pr) - 1)
    with pytest.raises(TypeError, match="points leading"):
        path_moments(st, pr, context=torch.zeros(3))


def test_check_estimator_decides_path_estimators_exactly():
    """The conformance check of a path estimator uses the exact expectation (``path_count``),
    and the negative controls still fail (tests/test_sbvae_estimators.py)."""
    for spec in ("vae-reinforce", "vae-st", "vae-muprop"):
        report = check_estimator(spec, raise_on_failure=False)
        assert report.passed, report.format()
        names = [r.name for r in report.results if r.name.startswith("unbiased (")]
        assert names and all(n.startswith("unbiased (exact)") for n in names), names
        if spec == "vae-st":  # biased in the encoder, found exactly
            found = next(r for r in report.results if r.name == "claimed bias is detected")
            assert "exact relative bias" in found.detail
    report = check_estimator("vae-rloo", raise_on_failure=False)
    assert any(r.name.startswith("unbiased (statistical)") for r in report.results)


def test_a_measured_point_gets_exact_rows():
    """measure() on a small synthetic VAE: a path estimator's bias and variance rows come from
    the enumeration (method exact, relative bias ~0 for REINFORCE), a score-function estimator
    with pair sampling keeps Monte Carlo."""
    from estbench.measure import MeasureOptions, measure

    g = torch.Generator().manual_seed(3)
    m = random_sbvae(5, (3,), generator=g)
    X = (torch.rand(6, 5, generator=g) < 0.5).to(torch.float64)
    pr = KIND.problem(m, X, X.new_zeros(6, 0))
    ref = KIND.reference(pr)
    opts = MeasureOptions(draws=200, M=(1, 10), bootstrap=0)
    for spec, method in (("vae-reinforce", "exact"), ("vae-rloo", "mc")):
        est = default_registry().create(spec)
        out = measure(est, pr, ref.gradient(), opts, generator=g, blocks=ref.blocks)
        rows = {(r.layer, r.metric): r for r in out.rows}
        assert out.exact == (method == "exact")
        assert rows[("encoder", "variance")].method == method
        if method == "exact":
            assert rows[("encoder", "rel_bias")].value < 1e-12
            assert math.isfinite(rows[("decoder", "variance")].value)


def test_the_kinds_decoder_only_claim_covers_the_decoder_blocks():
    """ST, its proxies, DARN, ST-GS and Gumbel-Rao claim "decoder only", the kind's own claim
    (``ProblemKind.claims``): the decoder's pairs and the prior, so the blocks dec*, prior and
    decoder; Concrete claims "no" (biased in the decoder too). A claim unknown to an
    estimator's kind breaks its contract."""
    from estbench.estimators.registry import contract_fault
    from estbench.kinds.sbn.estimators.straight_through import StraightThrough

    reg = default_registry()
    for pr in KIND.check_problems():
        m = pr.model
        blocks = KIND.reference(pr).blocks
        for spec in ("vae-st", "vae-darn", "vae-st-gs", "vae-gumbel-rao", "vae-st-slope",
                     "vae-reinmax", "vae-gst", "vae-zgr"):  # fmt: skip
            est = reg.create(spec)
            assert est.claim(m) == "decoder only"
            claimed = {b.name for b in blocks if est.unbiased_layers(m).issuperset(b.pairs)}
            assert claimed == {b.name for b in blocks if b.name.startswith(("dec", "prior"))}
        assert reg.create("vae-concrete").unbiased_layers(m) == frozenset()
    assert KIND.claim_pairs("head only", KIND.check_problems()[0].model) is None

    class DecoderOnlySbn(StraightThrough):
        name = "st-decoder-only"
        unbiased = "decoder only"

    assert "must be one of" in str(contract_fault(DecoderOnlySbn))
