"""Relaxation family of the ``sbvae`` kind: Concrete (every latent layer relaxed), and the hard
estimators built on the same logistic noise, ST-Gumbel-Softmax and Gumbel-Rao. Shared notation
and the encoder's pathwise term: ``base``; the straight-through machinery: ``straight_through``.

Noise convention (the kind's, as ``vae-reinforce`` samples): uniforms u per unit, z_k on iff
u_k < sigmoid(alpha_k) iff alpha_k + L_k > 0 with L_k = logit(1 - u_k), a standard logistic
variable (the difference of two Gumbels); the relaxed state is sigmoid((alpha_k + L_k) / tau)
(the sigma-form temperature of Maddison et al. and Jang et al.; spec §3.1, pitfall P9).

The relaxed integrand. A relaxed state is in (0, 1), not {0, 1}; f = log p(x, z) - log q(z | x)
is evaluated there through the Bernoulli log-masses' own extension, log Bern(z; sigmoid(a)) =
z a - softplus(a) (multilinear in z, as the REBAR code's ``binary_log_likelihood`` of soft
samples), not through Concrete densities.

Equation and section numbers in the references below are from memory of the papers (not re-read
in this session) and UNVERIFIED; the formulas follow the formula spec (estimators.md, the
sections named) and are verified numerically (tests/test_sbvae_estimators.py)."""

from __future__ import annotations

import torch
from torch import Tensor

from ....estimators.base import Hyper
from ..model import SBVAE, VAEProblem
from .base import integrand, logistic_noise, open_unit, per_draw, uniforms
from .straight_through import PATH_KEEP, StraightThroughBase

TAU = Hyper(
    1.0,
    float,
    minimum=0.0,
    exclusive=True,
    help="temperature tau of the relaxation sigmoid((alpha + L) / tau)",
)


def relaxed_states(
    model: SBVAE, x: Tensor, noise: list[Tensor], tau: float | Tensor
) -> list[Tensor]:
    """z~_k = sigmoid((e_k(z~_{k-1}) + L_k) / tau), z~_0 = x, for the logistic noises ``noise``
    (L_k per layer): every latent layer relaxed, the relaxed values fed upwards (``tau`` a
    tensor for RELAX's learned temperature)."""
    below, out = x, []
    for k in range(1, model.n_latent + 1):
        below = torch.sigmoid((model.encoder_logits(k, below) + noise[k - 1]) / tau)
        out.append(below)
    return out


class VAEConcrete(StraightThroughBase):
    """Binary Concrete / Gumbel-Softmax relaxation, fully relaxed: the pathwise gradient of
    E[f(z~)] with z~ = relaxed_states (module docstring), every latent layer relaxed and fed
    upwards:

        g = -(1/N) sum_n grad [ log p(x_n, z~_n) - log q(z~_n | x_n) ]      (at u fixed).

    Decoder: at the relaxed z~ (not at a sample of q), so biased in the decoder too. Encoder:
    through z~, plus, with ``path = "keep"`` (the default: autodiff of the relaxed ELBO as in the
    papers' VAEs), the pathwise -grad_phi log q term at z~, or with ``"drop"`` the encoder's
    parameters held in -log q. Biased in every parameter for every tau > 0 (it is the gradient
    of another objective); its variance grows as tau -> 0. Claim: "no". Cost: 1 relaxed
    evaluation of f and one backward pass.
    References: Maddison, Mnih & Teh, "The Concrete distribution", ICLR 2017, arXiv 1611.00712,
    eq. 21 (binary Concrete) and Appendix C (the relaxed ELBO); Jang, Gu & Poole, "Categorical
    reparameterization with Gumbel-Softmax", ICLR 2017, arXiv 1611.01144, eq. 1-2; spec §3.1.
    """

    name = "vae-concrete"
    family = "relaxation"
    unbiased = "no"
    reference = "Maddison et al., arXiv 1611.00712; Jang et al., arXiv 1611.01144 (ICLR 2017)"
    verified = (
        "statistical: conformance check (τ = 1 and 0.1, path kept and dropped; bias detected); "
        "its decoder block fails the unbiasedness test where ST-GS's passes"
    )
    tests = ("tests/test_sbvae_estimators.py",)
    hyperparameters = {"path": PATH_KEEP, "tau": TAU}

    def estimates(self, problem: VAEProblem, u: list[Tensor], extra: list[Tensor]) -> Tensor:
        X, keep, tau = problem.X, self.keep, self.params["tau"]

        def surrogate(mm: SBVAE, uu: list[Tensor]) -> Tensor:
            z = relaxed_states(mm, X, [logistic_noise(v) for v in uu], tau)
            return -integrand(mm, X, z, keep=keep).mean(-1)

        return per_draw(problem, surrogate, u)


class VAEStraightThroughGumbelSoftmax(StraightThroughBase):
    """Straight-through Gumbel-Softmax (ST-GS): hard states forward (the sampled z, the same as
    ``vae-st`` from the same generator), backward the relaxed Jacobian of the same noise,

        D_k = tau^-1 sigmoid'((alpha_k + L_k) / tau),   L_k = logit(1 - u_k),

    in the straight-through recursion (``straight_through``): the decoder pathwise at the
    sampled z (unbiased), the encoder biased even for f affine in z (E_L[D] is not
    sigmoid'(alpha)); ``path`` as there (default "keep"). Claim: "decoder only". Cost: 1
    evaluation of f, one backward pass.
    Reference: Jang, Gu & Poole, "Categorical reparameterization with Gumbel-Softmax", ICLR
    2017, arXiv 1611.01144, section 2.2 (Straight-Through Gumbel-Softmax); spec §3.2.
    """

    name = "vae-st-gs"
    family = "relaxation"
    reference = "Jang, Gu & Poole, arXiv 1611.01144 (ICLR 2017)"
    verified = (
        "statistical: conformance check (τ = 1 and 0.5; claim `decoder only`: decoder pairs "
        "pass, encoder bias detected); decoder block passes the unbiasedness test"
    )
    tests = ("tests/test_sbvae_estimators.py",)
    hyperparameters = {"path": PATH_KEEP, "tau": TAU}

    def jacobian(self, alpha: Tensor, b: Tensor, u: Tensor, extra: Tensor | None) -> Tensor:
        tau = self.params["tau"]
        s = torch.sigmoid((alpha + logistic_noise(u)) / tau)
        return s * (1 - s) / tau


def conditional_logistic(alpha: Tensor, b: Tensor, v: Tensor) -> Tensor:
    """L ~ Logistic conditioned on 1[alpha + L > 0] = b, by inversion from fresh uniforms v:
    u' = v p if on and p + v (1 - p) if off (the u that would have given that state), L =
    logit(1 - u') -- written in log space (log p = logsigmoid(alpha)) for saturated units."""
    v = open_unit(v)
    log_p = torch.nn.functional.logsigmoid(alpha)
    log_q = torch.nn.functional.logsigmoid(-alpha)
    # on: u' = v p, 1 - u' = 1 - v p;  off: 1 - u' = (1 - v)(1 - p), u' = 1 - (1 - v)(1 - p)
    on = torch.log1p(-v * log_p.exp()) - (torch.log(v) + log_p)
    off = (torch.log1p(-v) + log_q) - torch.log1p(-(1 - v) * log_q.exp())
    return torch.where(b == 1, on, off)


class VAEGumbelRao(VAEStraightThroughGumbelSoftmax):
    """Gumbel-Rao Monte Carlo (GR-MC_K) for Bernoulli latents: ST-GS with its Jacobian averaged
    over K noises drawn from the law of L given the sampled state,

        D_k = (1 / (tau K)) sum_i sigmoid'((alpha_k + L_k^(i)) / tau),
        L_k^(i) ~ Logistic | 1[alpha_k + L_k^(i) > 0] = z_k,

    the forward pass's own L_k being L^(1) (it has that law), K - 1 fresh ones from uniforms
    drawn after the path's: K = 1 is ``vae-st-gs`` draw for draw. The L^(i) carry no gradient
    (the partial derivative, which keeps the ST-GS mean; spec §3.3, pitfall P5), so it has
    ST-GS's mean with less variance. Decoder pathwise at the sampled z (unbiased); encoder
    biased like ST-GS; ``path`` as there (default "keep"). Claim: "decoder only". Cost: 1
    evaluation of f, one backward pass, K - 1 extra noises per unit.
    Reference: Paulus, Maddison & Krause, "Rao-Blackwellizing the straight-through
    Gumbel-Softmax gradient estimator", ICLR 2021, arXiv 2010.04838, eq. 7-8 (GR-MC_K);
    spec §3.3.
    """

    name = "vae-gumbel-rao"
    reference = "Paulus, Maddison & Krause, arXiv 2010.04838 (ICLR 2021)"
    verified = (
        "statistical: conformance check; K = 1 is `vae-st-gs` draw for draw; ST-GS's mean "
        "(two-sample z) with lower encoder variance; negative control: unconditional extra "
        "noises change the mean, and the same test sees it"
    )
    tests = ("tests/test_sbvae_estimators.py",)
    hyperparameters = {
        **VAEStraightThroughGumbelSoftmax.hyperparameters,
        "k": Hyper(10, int, minimum=1, help="conditional noise samples per unit"),
    }

    def extra_noise(
        self, problem: VAEProblem, lead: tuple[int, ...], generator: torch.Generator
    ) -> list[Tensor]:
        extra = self.params["k"] - 1
        if extra == 0:
            return []
        N = problem.n_points
        return [uniforms((*lead, extra, N, n), generator, problem.X) for n in problem.model.latent]

    def jacobian(self, alpha: Tensor, b: Tensor, u: Tensor, extra: Tensor | None) -> Tensor:
        tau = self.params["tau"]
        own = super().jacobian(alpha, b, u, None)
        if extra is None:
            return own
        s = torch.sigmoid((alpha + conditional_logistic(alpha, b, extra)) / tau)
        return (own + (s * (1 - s)).sum(0) / tau) / self.params["k"]

    def bytes_per_draw(self, problem: VAEProblem) -> int:
        m = problem.model
        return super().bytes_per_draw(problem) + 8 * 4 * self.params["k"] * problem.n_points * sum(
            m.latent
        )


ESTIMATORS = (VAEConcrete, VAEStraightThroughGumbelSoftmax, VAEGumbelRao)
