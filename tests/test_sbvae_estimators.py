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
from estbench.kinds.sbvae.estimators import VAEReinforce
from estbench.kinds.sbvae.estimators.base import per_draw, signal
from estbench.kinds.sbvae.estimators.score import _surrogate
from estbench.kinds.sbvae.model import VAEProblem
from estbench.problem import get_kind
from estbench.testing import check_estimator

KIND = get_kind("sbvae")
SPECS = [
    n for n, e in default_registry().items() if e.source == "estbench" and e.cls.problem == "sbvae"
]


def test_the_kind_registers_the_four_families():
    assert set(SPECS) == {"vae-reinforce", "vae-rloo", "vae-arm", "vae-disarm"}


@pytest.mark.parametrize(
    "spec",
    [
        *SPECS,
        "vae-reinforce(baseline=frozen)",
        "vae-reinforce(baseline=oracle)",
        "vae-reinforce(path=keep)",
        "vae-rloo(K=3)",
        "vae-disarm(path=keep)",
    ],
)
def test_every_estimator_passes_the_conformance_check(spec):
    report = check_estimator(spec, raise_on_failure=False)
    assert report.passed, report.format()


class _NoScore(VAEReinforce):
    """Negative control: the decoder's pathwise term alone, the encoder's score term dropped
    (weight 0): biased in the encoder, which the check must see."""

    name = "vae-no-score"

    def _draw(self, problem, n_draws, generator, context):
        from estbench.kinds.sbvae.estimators.base import layer_uniforms, sample

        m, X = problem.model, problem.X
        z = sample(m, X, layer_uniforms(problem, (n_draws,), generator))
        w = torch.zeros(z[0].shape[:-1], dtype=X.dtype)
        return per_draw(problem, lambda mm, zz, ww: _surrogate(mm, X, zz, ww), z, w)


def test_the_check_sees_a_biased_encoder_gradient():
    report = check_estimator(_NoScore(), raise_on_failure=False)
    failed = [r.name for r in report.results if not r.passed]
    assert failed and all("layer" in n and "unbiased" in n for n in failed), report.format()
    # the decoder's pairs (layers 1, 2 of the one-layer VAE) pass: only the encoder is biased
    assert "unbiased (statistical) net0 layer1" not in failed


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
