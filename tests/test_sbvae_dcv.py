"""Double control variates and RODEO for the ``sbvae`` kind (``vae-dcv``, ``vae-rodeo``; issue 19;
``estbench/kinds/sbvae/estimators/loo_cv.py``), on the kind's three small VAEs (latent (2,)
linear, (2, 2) linear, (2,) tanh):

* with their coefficients at zero both are ``vae-rloo`` with the same K, draw for draw: from the
  same generator when nothing is fitted or trained, and on the same uniforms for any phi;
* exact unbiasedness on one latent layer (where the form is the papers' single-layer estimator):
  for one data point, the mean over every joint state of the K paths' latent states (each as
  uniforms inside its interval; the estimate depends on them only through the states), weighted
  by its probability, equals the exact ELBO gradient to 1e-10 (linear and tanh, K = 2 and 3,
  path dropped and kept, DCV at alpha = 0.8 and RODEO with a random control network and nonzero
  alpha, beta); the negative controls (DCV with the correction's sign flipped, RODEO's Stein
  operator weighted by the current state's probability) are off by more than 1e-3 there;
* statistical unbiasedness on the two-layer VAE (and the tanh one), 20k draws,
  ``metrics.unbiasedness_test`` at alpha = 1e-3 per part: a correct estimator fails a test with
  probability <= 2e-3 (Bonferroni z plus the aggregate test); seeds fixed, so reproducible. The
  same harness rejects the negative controls;
* lower encoder variance than ``vae-rloo`` at the same K (paired on the same uniforms);
* conformance (``check_estimator``) of non-default configurations (the defaults' run in
  tests/test_sbvae_estimators.py and tests/test_estimator_contract.py).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from estbench.estimators.registry import default_registry
from estbench.kinds.sbn.estimators.loo_cv import RODEO, DoubleCV, LayerSamples, SteinControl
from estbench.kinds.sbvae import exact_elbo
from estbench.kinds.sbvae.estimators import VAERODEO, VAEDoubleCV
from estbench.kinds.sbvae.estimators.loo_cv import encoder_factor_index
from estbench.kinds.sbvae.model import VAEProblem
from estbench.metrics import unbiasedness_test
from estbench.problem import get_kind
from estbench.testing import check_estimator

KIND = get_kind("sbvae")
PROBLEMS = KIND.check_problems()  # latent (2,) linear, (2, 2) linear, (2,) tanh
ALPHA = 1e-3  # unbiasedness_test's level per part: false-fail rate <= 2e-3 per test
S = 20_000


def create(spec: str):
    return default_registry().create(spec)


def exact(pr: VAEProblem) -> torch.Tensor:
    return pr.model.flat(exact_elbo(pr.model, pr.X).grads)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def random_control(est: VAERODEO, pr: VAEProblem, seed: int, alpha=0.7, beta=-1.1) -> SteinControl:
    """A nonzero control: phi with random weights and biases, alpha and beta nonzero."""
    g = torch.Generator().manual_seed(seed)
    c = VAERODEO(k=est.params["k"], hidden=est.params["hidden"]).initial_control(pr, g)
    L = pr.model.n_latent
    return SteinControl(
        alpha=torch.full((L,), alpha, dtype=torch.float64),
        beta=torch.full((L,), beta, dtype=torch.float64),
        wt=c.wt,
        wf=c.wf,
        c=torch.randn(c.c.shape, generator=g, dtype=torch.float64),
        W2=c.W2,
    )


class DCVWrongSign(VAEDoubleCV):
    """Negative control: the correction term added instead of subtracted."""

    @staticmethod
    def layer_parts(s: LayerSamples) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        A, B = DoubleCV.layer_parts(s)
        hbar = (s.grad.sum(1, keepdim=True) - s.grad) / (s.grad.shape[1] - 1)
        return A, B + 2 * hbar * s.pdf


class _CurrentStateWeight(RODEO):
    @staticmethod
    def flip_probability(s: LayerSamples) -> torch.Tensor:
        return torch.where(s.bits == 1, s.p, s.q)


class RODEOCurrentStateWeight(VAERODEO):
    """Negative control: the Stein operator weighted by q(b_d), the current state's probability,
    instead of q(1 - b_d); its mean is no longer zero."""

    def sbn_rodeo(self) -> RODEO:
        return _CurrentStateWeight(k=self.params["k"], hidden=self.params["hidden"])


def test_registered_with_cost_and_claims():
    m1, m2 = PROBLEMS[0].model, PROBLEMS[1].model
    assert create("vae-dcv").evals_per_draw(m2) == 4 == create("vae-rloo(K=4)").evals_per_draw(m2)
    assert create("vae-rodeo(k=6)").evals_per_draw(m1) == 6
    assert create("vae-dcv(form=layer)").evals_per_draw(m2) == 1 + 3 * 2  # 1 + (K - 1) L
    assert create("vae-rodeo(k=2, form=layer)").evals_per_draw(m1) == 2
    for name in ("vae-dcv", "vae-rodeo"):
        est = create(name)
        assert est.claim(m2) == "yes" and est.family == "score-function"
        assert est.params["path"] == "drop" and est.params["k"] == 4


# ---- zero coefficients: vae-rloo ---------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("path", ["drop", "keep"])
def test_zero_coefficients_are_vae_rloo_draw_for_draw(index, path):
    pr = PROBLEMS[index]
    K = 3
    want = create(f"vae-rloo(K={K}, path={path})").draw(
        pr, 300, generator=torch.Generator().manual_seed(4)
    )
    for spec in (f"vae-dcv(k={K}, warmup=0)", f"vae-rodeo(k={K}, train_steps=0)"):
        got = create(f"{spec[:-1]}, path={path})").draw(
            pr, 300, generator=torch.Generator().manual_seed(4)
        )
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
    # RODEO with a random phi but alpha = beta = 0, on the same uniforms
    rodeo = VAERODEO(k=K, hidden=5, path=path)
    u = rodeo.uniforms(pr, 300, torch.Generator().manual_seed(4))
    control = random_control(rodeo, pr, seed=1, alpha=0.0, beta=0.0)
    torch.testing.assert_close(rodeo.estimates(pr, u, control), want, rtol=1e-12, atol=1e-13)
    # form=layer: the two agree with each other (per-layer RLOO, common random numbers above)
    dcv_l = VAEDoubleCV(k=K, form="layer", path=path)
    rodeo_l = VAERODEO(k=K, hidden=5, form="layer", path=path)
    torch.testing.assert_close(
        rodeo_l.estimates(pr, u, control), dcv_l.estimates(pr, u, None), rtol=1e-12, atol=1e-13
    )


@pytest.mark.parametrize("index", [0, 2])
def test_one_layer_forms_share_the_encoder_gradient(index):
    """One latent layer: ``form=layer``'s K samples are ``form=path``'s K paths (the same
    upstream x), so on the same uniforms the encoder gradients agree; the decoder's is the K
    paths' mean or the base path's."""
    pr = PROBLEMS[index]
    alpha = torch.tensor([0.8], dtype=torch.float64)
    path, layer = VAEDoubleCV(k=3), VAEDoubleCV(k=3, form="layer")
    u = path.uniforms(pr, 200, torch.Generator().manual_seed(6))
    enc = encoder_factor_index(pr.model, 1)
    a, b = path.estimates(pr, u, alpha), layer.estimates(pr, u, alpha)
    torch.testing.assert_close(a[:, enc], b[:, enc], rtol=1e-12, atol=1e-13)
    assert float((a - b).abs().max()) > 1e-3


# ---- one latent layer: exact means by enumerating the K paths ----------------------------------


def all_states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def enumerated_mean(est, pr: VAEProblem, context) -> torch.Tensor:
    """E[draw] for a one-layer VAE and one data point: every joint state of the K paths' n latent
    units, each as uniforms inside its interval (the estimate depends on u only through
    1[u < p]), weighted by its probability."""
    m, K = pr.model, est.params["k"]
    n = m.latent[0]
    p = torch.sigmoid(m.encoder_logits(1, pr.X))[0]  # [n]
    bits = all_states(K * n).reshape(-1, K, 1, n)
    u = torch.where(bits == 1, p / 2, (1 + p) / 2)
    weight = torch.where(bits == 1, p, 1 - p).reshape(len(bits), -1).prod(-1)
    return (weight[:, None] * est.estimates(pr, [u], context)).sum(0)


@pytest.mark.parametrize("form", ["path", "layer"])
@pytest.mark.parametrize("path", ["drop", "keep"])
@pytest.mark.parametrize("K", [2, 3])
@pytest.mark.parametrize("index", [0, 2])
def test_one_layer_exactly_unbiased(index, K, path, form):
    full = PROBLEMS[index]
    alpha = torch.tensor([0.8], dtype=torch.float64)
    for point in (0, 1):
        x = full.X[point : point + 1]
        pr = VAEProblem.create(full.model, x, x.new_zeros(1, 0))
        g = exact(pr)
        kw = dict(k=K, path=path, form=form)
        assert rel(enumerated_mean(VAEDoubleCV(**kw), pr, alpha), g) < 1e-10
        rodeo = VAERODEO(hidden=6, **kw)
        control = random_control(rodeo, pr, seed=2 + point)
        assert rel(enumerated_mean(rodeo, pr, control), g) < 1e-10
        # the negative controls are biased
        assert rel(enumerated_mean(DCVWrongSign(**kw), pr, alpha), g) > 1e-3
        wrong = RODEOCurrentStateWeight(hidden=6, **kw)
        assert rel(enumerated_mean(wrong, pr, control), g) > 1e-3


# ---- two latent layers: statistical unbiasedness -----------------------------------------------


def unbiased(draws: torch.Tensor, g: torch.Tensor) -> tuple[bool, str]:
    test = unbiasedness_test(draws, g, alpha=ALPHA)
    return test.passed, test.describe()


def test_fitted_alpha_is_nonzero_in_every_layer_and_reproducible():
    """d f / d z_k is nonzero in every layer of an ELBO, so both layers' corrections act."""
    pr = PROBLEMS[1]
    est = create("vae-dcv")
    a = est.prepare(pr, torch.Generator().manual_seed(5))
    assert a.shape == (2,) and float(a.abs().min()) > 0.05
    assert torch.equal(a, est.prepare(pr, torch.Generator().manual_seed(5)))
    assert torch.equal(create("vae-dcv(warmup=0)").prepare(pr, torch.Generator()), 0 * a)


@pytest.mark.parametrize("index", [1, 2])
@pytest.mark.parametrize("spec", ["vae-dcv", "vae-dcv(k=3, path=keep)", "vae-dcv(form=layer)"])
def test_dcv_is_unbiased(index, spec):
    """With alpha fitted from the generator's pilot draws (default ``warmup``)."""
    pr = PROBLEMS[index]
    draws = create(spec).draw(pr, S, generator=torch.Generator().manual_seed(11))
    passed, detail = unbiased(draws, exact(pr))
    assert passed, f"{spec} on problem {index}: {detail}"


@pytest.mark.parametrize("index", [1, 2])
@pytest.mark.parametrize(("path", "form"), [("drop", "path"), ("keep", "path"), ("drop", "layer")])
def test_rodeo_is_unbiased_for_a_random_control(index, path, form):
    """Unbiased for every control, so a random one (nonzero alpha, beta, phi) is tested; the
    trained ones by the conformance checks."""
    pr = PROBLEMS[index]
    est = VAERODEO(k=3, hidden=6, path=path, form=form)
    control = random_control(est, pr, seed=3)
    draws = est.draw(pr, S, generator=torch.Generator().manual_seed(11), context=control)
    passed, detail = unbiased(draws, exact(pr))
    assert passed, f"vae-rodeo(path={path}, form={form}) on problem {index}: {detail}"


@pytest.mark.parametrize("form", ["path", "layer"])
def test_negative_controls_are_rejected(form):
    """The same harness, draws and seed reject the sign-flipped DCV correction (alpha = -1) and
    RODEO's Stein operator with the current state's weight, on the two-layer VAE."""
    pr = PROBLEMS[1]
    g = exact(pr)
    gen = torch.Generator().manual_seed(11)
    alpha = torch.full((2,), -1.0, dtype=torch.float64)
    dcv = DCVWrongSign(form=form)
    passed, detail = unbiased(dcv.draw(pr, S, generator=gen, context=alpha), g)
    assert not passed, detail
    est = RODEOCurrentStateWeight(k=3, hidden=6, form=form)
    control = random_control(est, pr, seed=3)
    passed, detail = unbiased(est.draw(pr, S, generator=gen, context=control), g)
    assert not passed, detail


# ---- variance and conformance ------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["vae-dcv", "vae-rodeo(hidden=8, train_steps=40)"])
def test_lower_encoder_variance_than_vae_rloo_at_equal_cost(spec):
    """The papers' claim, against ``vae-rloo`` with the same K (the same K evaluations of f),
    on the two-layer VAE: paired on the same uniforms, the per-draw squared error of the encoder's
    parameters (= their total variance, both being unbiased) is lower, one-sided z < -3.09."""
    pr = PROBLEMS[1]
    g = exact(pr)
    est = create(spec)
    rloo = VAEDoubleCV(k=4, warmup=0)  # vae-rloo(K=4), on given uniforms
    gen = torch.Generator().manual_seed(5)
    context = est.prepare(pr, gen)
    u = est.uniforms(pr, 10_000, gen)
    enc = torch.cat([encoder_factor_index(pr.model, k) for k in (1, 2)])

    def sq_error(draws: torch.Tensor) -> torch.Tensor:
        return ((draws - g)[:, enc] ** 2).sum(1)

    diff = sq_error(est.estimates(pr, u, context).detach()) - sq_error(rloo.estimates(pr, u, None))
    z = float(diff.mean() / (diff.std() / math.sqrt(len(diff))))
    assert z < -3.09, z


@pytest.mark.parametrize(
    "spec",
    [
        "vae-dcv(k=3, path=keep)",
        "vae-dcv(form=layer)",
        "vae-rodeo(k=3, hidden=8, train_steps=20, path=keep)",
        "vae-rodeo(form=layer, hidden=8, train_steps=10)",
    ],
)
def test_conformance_of_further_configurations(spec):
    check_estimator(spec)
