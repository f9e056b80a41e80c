"""Score-function estimators with a model-based control variate for the ``sbvae`` kind: MuProp
(a first-order Taylor expansion around the mean-field states) and REBAR (a relaxation-based
surrogate, fixed: tau and eta are hyperparameters, not trained). Both are unbiased in every
parameter; the decoder's gradient is pathwise at the sampled z (the control variates act on the
encoder's score term only), and the encoder's pathwise -grad_phi log q term is ``path``
(default "drop", as in the papers' VAE experiments). Shared notation: ``base``; the relaxation:
``relaxed``.

Equation and section numbers in the references below are from memory of the papers (not re-read
in this session) and UNVERIFIED; the formulas follow the formula spec (estimators.md, the
sections named) and are verified numerically (tests/test_sbvae_estimators.py)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Hyper
from ..model import SBVAE, VAEProblem, log_bernoulli
from .base import (
    VAEEstimator,
    VAEPathEstimator,
    held,
    layer_uniforms,
    logistic_noise,
    per_draw,
    sample,
    signal,
)
from .relaxed import conditional_logistic, relaxed_states


def mean_field(model: SBVAE, X: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """The deterministic mean-field pass of the encoder, mu_0 = x, mu_k = sigmoid(e_k(mu_{k-1})),
    and the integrand there, fbar = f(x, mu) (the Bernoulli log-masses' extension to [0, 1]),
    with gbar_k = dfbar / dmu_k, the *total* derivative (through every layer of f at mu_k and
    through mu_{k+1} = sigmoid(e_{k+1}(mu_k)) and above): ([mu_k] [N, n_k], [gbar_k], fbar [N]),
    all held constant (no gradient to the parameters)."""
    m = held(model, encoder=True, decoder=True)
    with torch.enable_grad():
        below, mus, bumps = X, [], []
        for k in range(1, m.n_latent + 1):
            bump = torch.zeros(
                (X.shape[0], m.latent[k - 1]), dtype=X.dtype, device=X.device, requires_grad=True
            )
            below = torch.sigmoid(m.encoder_logits(k, below)) + bump  # d/d bump = total d/d mu_k
            mus.append(below)
            bumps.append(bump)
        fbar = signal(m, X, mus)
        gbar = torch.autograd.grad(fbar.sum(), bumps)
    return [mu.detach() for mu in mus], [g.detach() for g in gbar], fbar.detach()


class VAEMuProp(VAEPathEstimator):
    """MuProp (plain: eta = 1, no learned baseline) for the negative ELBO: REINFORCE per latent
    layer with a first-order Taylor control variate around the mean-field states (``mean_field``:
    mu_k, fbar = f(mu), gbar_k = dfbar/dmu_k), whose mean is added back analytically. One
    z ~ q(z | x_n) per point; per layer k, along the sampled path,

        g = -(1/N) sum_n [ sum_k ( l_k grad_phi log q(z_k | z_{k-1})
                                   + gbar_k . grad_phi sigmoid(e_k(z_{k-1})) )
                           + grad_theta log p(x_n, z_n) ],
        l_k = f - kappa - fbar - gbar_k . (z_k - mu_k),

    with gbar_k, mu_k and fbar held and e_k at the *sampled* z_{k-1} (with mu_{k-1} there it
    would be biased). Given z_{<k}, E[(z_k - mu_k) grad log q(z_k | z_{k-1})] = grad E[z_k] =
    grad sigmoid(e_k(z_{k-1})), so the control variate's mean is exactly what is added back:
    unbiased in every parameter, any depth, linear or tanh (claim "yes"). Decoder: pathwise at
    the sampled z. Encoder's pathwise term: ``path`` (kappa = 1 when kept; default dropped).
    Its only randomness is the sampled path (``VAEPathEstimator``; the mean-field context is
    deterministic): exact mean and variance by enumeration.
    Cost: 1 evaluation of f on the path plus the mean-field pass (counted: 2 evaluations).
    Reference: Gu, Levine, Sutskever & Mnih, "MuProp: unbiased backpropagation for stochastic
    neural networks", ICLR 2016, arXiv 1511.05176, eq. 5-6 and Algorithm 1 (the VAE ELBO of its
    section 5.2); per-layer form as in tensorflow/models research/rebar (spec §2.6).
    """

    name = "vae-muprop"
    reference = "Gu, Levine, Sutskever & Mnih, ICLR 2016, arXiv 1511.05176"
    verified = (
        "exact: its expectation by enumerating every latent state equals the exact gradient to "
        "1e-12 (one and two latent layers, linear and tanh, path dropped or kept); exact path "
        "moments against brute force and its own draws; conformance check (exact); negative "
        "control: the added-back term at the mean-field μ_{k−1} instead of the sampled z_{k−1} "
        "is off on the two-layer VAE"
    )
    tests = ("tests/test_sbvae_estimators.py",)

    def evals_per_draw(self, model: SBVAE) -> float:
        return 2.0

    def prepare(
        self, problem: VAEProblem, generator: torch.Generator
    ) -> tuple[list[Tensor], list[Tensor], Tensor]:
        return mean_field(problem.model, problem.X)

    def _draw(
        self, problem: VAEProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        m = problem.model
        z = sample(m, problem.X, layer_uniforms(problem, (n_draws,), generator))
        return self.estimates(problem, z, context)

    def path_estimates(self, problem: VAEProblem, z: list[Tensor], context: Any) -> Tensor:
        return self.estimates(problem, z, context)

    def estimates(
        self,
        problem: VAEProblem,
        z: list[Tensor],
        context: tuple[list[Tensor], list[Tensor], Tensor],
        *,
        upstream: str = "sampled",
    ) -> Tensor:
        """[S, P] for given states z ([S, N, n_k] per layer). ``upstream = "mean"`` evaluates the
        added-back term at mu_{k-1} instead of the sampled z_{k-1}: a deliberately biased variant
        for the tests' negative control."""
        m, X = problem.model, problem.X
        mus, gbar, fbar = context
        f = signal(m, X, z) - self.keep - fbar
        signals = [
            (f - (g * (zk - mu)).sum(-1)).detach() for zk, mu, g in zip(z, mus, gbar, strict=True)
        ]
        at = [X, *mus[:-1]] if upstream == "mean" else None

        def surrogate(mm: SBVAE, zz: list[Tensor], ll: list[Tensor]) -> Tensor:
            below = [X, *zz[:-1]] if at is None else at
            total = mm.log_joint(X, zz)
            for k in range(1, mm.n_latent + 1):
                alpha = mm.encoder_logits(k, [X, *zz[:-1]][k - 1])
                total = total + ll[k - 1] * log_bernoulli(zz[k - 1], alpha)
                mean = torch.sigmoid(mm.encoder_logits(k, below[k - 1]))
                total = total + (gbar[k - 1] * mean).sum(-1)
            return -total.mean(-1)

        return per_draw(problem, surrogate, z, signals)


class VAEREBAR(VAEEstimator):
    """REBAR with a fixed surrogate (tau, eta; no training), joint deep form (spec §2.5 (i)),
    for the negative ELBO. Uniforms u_k give the hard path, z_k on iff u_k < sigmoid(alpha_k),
    alpha_k = e_k(z_{k-1}), and the coupled logistic noise L_k = logit(1 - u_k) (pitfall P2:
    alpha_k + L_k > 0 iff z_k = 1); fresh uniforms v_k give the conditional noise
    L~_k ~ L | z_k from the *hard* logits (``relaxed.conditional_logistic``). Relaxed paths
    (``relaxed.relaxed_states``, every layer fed the relaxed layer below):

        soft          z~_k  = sigmoid((e_k(z~_{k-1}) + L_k) / tau),
        conditional   z~'_k = sigmoid((e_k(z~'_{k-1}) + L~_k) / tau),

    and the control variate c(.) = eta f_held(.), the integrand at relaxed states with every
    parameter held (it depends on phi only through the relaxed states). Then

        g = -(1/N) sum_n [ (f(z) - kappa - c(z~')) grad_phi log q(z | x_n)
                           + grad_phi c(z~) - grad_phi c(z~')
                           + grad_theta log p(x_n, z) ],

    grad c(z~) pathwise at u fixed, grad c(z~') the total derivative at z and v fixed (through
    e_k and through L~_k's dependence on the hard logits); the learning signal is held. By the
    conditional reparameterisation (u given the hard path has a law that factorises per layer),
    E[c(z~')] grad log q + grad E[c(z~') | z] = grad E[c(z~)], so it is unbiased in every
    parameter for any fixed tau and eta (claim "yes"). Decoder: pathwise at the sampled z
    (the control variate holds the decoder's parameters). Encoder's pathwise term: ``path``
    (kappa = 1 when kept; default dropped). Cost: 1 hard + 2 relaxed evaluations of f, 2
    backward passes through the relaxed encoder.
    References: Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein, "REBAR: low-variance, unbiased
    gradient estimates for discrete latent variable models", NeurIPS 2017, arXiv 1703.07370,
    eq. 6 (single layer) and section 3.3 (multiple layers); conditional sampling as in Appendix
    B and Grathwohl et al., ICLR 2018, arXiv 1711.00123, Appendix B; spec §2.5.
    """

    name = "vae-rebar"
    reference = "Tucker et al., NeurIPS 2017, arXiv 1703.07370 (fixed surrogate, joint deep form)"
    verified = (
        "statistical: conformance check (τ = 0.5 and 1, η = 1 and 0.5, path dropped and kept); "
        "η = 0 is `vae-reinforce` draw for draw; negative control: without −∇c(z̃′) the "
        "conformance check fails"
    )
    tests = ("tests/test_sbvae_estimators.py",)
    hyperparameters = {
        **VAEEstimator.hyperparameters,
        "tau": Hyper(0.5, float, minimum=0.0, exclusive=True, help="relaxation temperature"),
        "eta": Hyper(1.0, float, help="scale of the control variate eta f(relaxed)"),
    }

    def evals_per_draw(self, model: SBVAE) -> float:
        return 3.0

    def _draw(
        self, problem: VAEProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        u = layer_uniforms(problem, (n_draws,), generator)
        v = layer_uniforms(problem, (n_draws,), generator)
        return self.estimates(problem, u, v)

    def estimates(
        self, problem: VAEProblem, u: list[Tensor], v: list[Tensor], *, correction: bool = True
    ) -> Tensor:
        """[S, P] for given uniforms. ``correction = False`` leaves out -grad c(z~'), a
        deliberately biased variant for the tests' negative control."""
        X, keep = problem.X, self.keep
        tau, eta = self.params["tau"], self.params["eta"]

        def surrogate(mm: SBVAE, uu: list[Tensor], vv: list[Tensor]) -> Tensor:
            frozen = held(mm, encoder=True, decoder=True)
            below, z, cond = X, [], []
            for k in range(1, mm.n_latent + 1):
                alpha = mm.encoder_logits(k, below)  # the hard logits, live (for L~)
                below = (uu[k - 1] < torch.sigmoid(alpha.detach())).to(X.dtype)
                z.append(below)
                cond.append(conditional_logistic(alpha, below, vv[k - 1]))
            soft = relaxed_states(mm, X, [logistic_noise(w) for w in uu], tau)
            c_soft = eta * signal(frozen, X, soft)
            c_cond = eta * signal(frozen, X, relaxed_states(mm, X, cond, tau))
            weight = (signal(mm, X, z) - keep - c_cond).detach()
            total = weight * mm.log_posterior(X, z) + mm.log_joint(X, z) + c_soft
            if correction:
                total = total - c_cond
            return -total.mean(-1)

        return per_draw(problem, surrogate, u, v)


ESTIMATORS = (VAEMuProp, VAEREBAR)
