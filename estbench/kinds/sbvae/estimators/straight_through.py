"""Straight-through family of the ``sbvae`` kind: the sampled (hard) latent states forward, a
proxy Jacobian D_k = "dz_k / dalpha_k" backward, for every latent layer at once. Shared notation
and the encoder's pathwise term: ``base``.

One draw samples z ~ q(z | x_n) per point from uniforms u (z_k on iff u_k < sigmoid(alpha_k),
alpha_k = e_k(z_{k-1}), exactly the states ``vae-reinforce`` samples from the same generator)
and differentiates the integrand f = log p(x, z) - log q(z | x) as a function of straight-through
states,

    z_k^ST = z_k + (alpha_k - stop(alpha_k)) stop(D_k),      (value z_k, derivative D_k)

so that the encoder gets the backward recursion of spec §1.4 with the ELBO's own delta_k =
df/dz_k (every layer's term of log p and of -log q, and what flows back from the layers above
through alpha_{k+1}(z_k)); the decoder (and the prior) get grad_theta log p(x, z) at the sampled
z: pathwise, hence unbiased in the decoder for every proxy. ``path`` = "keep" (the default,
autodiff of the whole integrand as the straight-through VAE literature does) also keeps the
encoder's pathwise -grad_phi log q(z | x) term at the sampled z (expectation 0); "drop" holds the
encoder's parameters in -log q, which then passes gradient through z alone.

Claim: "decoder only" (the kind's claim, ``SbvaeKind.claim_pairs``: unbiased in the decoder's
factors and the prior, biased in the encoder). Their only randomness is the sampled path
(``PathStraightThrough``, except the relaxations' ST-GS and Gumbel-Rao, whose Jacobian reads the
noise), so their exact mean and variance follow by enumerating z (``moments``). Cost: 1
evaluation of f and one backward pass. The proxies are the sbn kind's, for {0, 1} states
(``estbench.kinds.sbn.estimators.straight_through``; spec §4.1, §4.2).

Equation and section numbers in the references below are from memory of the papers (not re-read
in this session) and UNVERIFIED; the formulas follow the formula spec (estimators.md, the
sections named) and are verified numerically (tests/test_sbvae_estimators.py)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Hyper
from ..model import SBVAE, VAEProblem
from .base import VAEEstimator, VAEPathEstimator, integrand, layer_uniforms, per_draw

PATH_KEEP = Hyper(
    "keep",
    str,
    choices=("drop", "keep"),
    help="the encoder's pathwise -grad log q(z|x) term: kept (autodiff of f) or dropped",
)


def st_states(
    model: SBVAE,
    x: Tensor,
    u: list[Tensor],
    proxy: Any,
    extra: list[Tensor],
) -> list[Tensor]:
    """The straight-through states z_1^ST .. z_L^ST (module docstring) from uniforms ``u``:
    ``proxy(alpha, b, u_k, extra_k)`` gives D_k from the detached logits, the hard states and
    the layer's noise (``extra_k``: further noise of the layer, or None)."""
    below, out = x, []
    for k in range(1, model.n_latent + 1):
        alpha = model.encoder_logits(k, below)
        a = alpha.detach()
        b = (u[k - 1] < torch.sigmoid(a)).to(a.dtype)
        jac = proxy(a, b, u[k - 1], extra[k - 1] if extra else None).detach()
        below = b + (alpha - a) * jac
        out.append(below)
    return out


class StraightThroughBase(VAEEstimator):
    """Hard states forward, ``jacobian`` backward (module docstring)."""

    family = "straight-through"
    unbiased = "decoder only"
    hyperparameters = {"path": PATH_KEEP}

    def jacobian(self, alpha: Tensor, b: Tensor, u: Tensor, extra: Tensor | None) -> Tensor:
        """D_k for logits ``alpha``, states ``b`` and uniforms ``u`` of a layer."""
        raise NotImplementedError

    def extra_noise(
        self, problem: VAEProblem, lead: tuple[int, ...], generator: torch.Generator
    ) -> list[Tensor]:
        """Further noise per layer, drawn after the path's uniforms (Gumbel-Rao's); none here."""
        return []

    def _draw(
        self, problem: VAEProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        u = layer_uniforms(problem, (n_draws,), generator)
        return self.estimates(problem, u, self.extra_noise(problem, (n_draws,), generator))

    def estimates(self, problem: VAEProblem, u: list[Tensor], extra: list[Tensor]) -> Tensor:
        """[S, P]: the estimate of each draw of the uniforms ``u`` ([S, N, n_k] per layer)."""
        X, keep = problem.X, self.keep

        def surrogate(mm: SBVAE, uu: list[Tensor], ee: list[Tensor]) -> Tensor:
            z = st_states(mm, X, uu, self.jacobian, ee)
            return -integrand(mm, X, z, keep=keep).mean(-1)

        return per_draw(problem, surrogate, u, extra)


class PathStraightThrough(StraightThroughBase, VAEPathEstimator):
    """A straight-through estimator whose Jacobian depends on the logits and the sampled states
    alone (not on the uniforms beyond the states they give): its only randomness is the path."""

    def path_estimates(self, problem: VAEProblem, z: list[Tensor], context: Any) -> Tensor:
        # The uniforms 1 - z draw exactly z (on iff u < sigmoid(alpha)) wherever q(z | x) > 0.
        return self.estimates(problem, [1.0 - zk for zk in z], [])


class VAEStraightThrough(PathStraightThrough):
    """Principled straight-through: D_k = sigmoid'(alpha_k) = p_k (1 - p_k), the derivative of
    the conditional mean E[z_k | z_{k-1}] ({0, 1} states). Formula, path term and decoder:
    module docstring (hard states forward; decoder pathwise at the sampled z, unbiased; encoder
    biased: the recursion differentiates f's multilinear extension at the sample, exact only
    for one latent layer with f affine in z, which an ELBO is not).
    Reference: Shekhovtsov & Yanush, "Reintroducing straight-through estimators as principled
    methods for stochastic binary networks", GCPR 2021, arXiv 2006.06880, eq. 9 (ST as the
    derivative of the mean); spec §4.1.
    """

    name = "vae-st"
    reference = "Shekhovtsov & Yanush, arXiv 2006.06880 (GCPR 2021)"
    verified = (
        "exact: by enumeration, decoder and prior blocks equal the exact gradient to 1e-12 and "
        "the encoder block is biased (claim `decoder only`), on three small VAEs; exact path "
        "moments against brute force; one draw equals its closed form on a linear VAE (path "
        "dropped and kept); negative control: the encoder's mean fed forward is off in the "
        "decoder; conformance check (exact: decoder pairs unbiased, encoder bias found)"
    )
    tests = ("tests/test_sbvae_estimators.py",)

    def jacobian(self, alpha: Tensor, b: Tensor, u: Tensor, extra: Tensor | None) -> Tensor:
        p = torch.sigmoid(alpha)
        return p * (1 - p)


class VAEStraightThroughIdentity(PathStraightThrough):
    """Identity straight-through: D_k = 1 (the classic heuristic, Hinton's 2012 lecture). Not
    the derivative of the conditional mean (in {0, 1} states it is the +-1 network's D = 2); biased
    in the encoder, the decoder pathwise at the sampled z (module docstring).
    Reference: Bengio, Leonard & Courville, "Estimating or propagating gradients through
    stochastic neurons for conditional computation", arXiv 1308.3432 (2013), section 4; spec
    §4.1.
    """

    name = "vae-st-identity"
    reference = "Bengio, Leonard & Courville, arXiv 1308.3432 (2013)"
    verified = (
        "exact: decoder unbiased and encoder biased by enumeration, as `vae-st`; exact path "
        "moments against brute force; conformance check (exact; claim `decoder only`, encoder "
        "bias detected)"
    )
    tests = ("tests/test_sbvae_estimators.py",)

    def jacobian(self, alpha: Tensor, b: Tensor, u: Tensor, extra: Tensor | None) -> Tensor:
        return torch.ones_like(alpha)


class VAEStraightThroughHardtanh(PathStraightThrough):
    """Hardtanh ("clipped identity", BNN-style) straight-through: D_k = (1/2) 1[|alpha_k| <= 1]
    ({0, 1} states: half the +-1 proxy). Biased in the encoder, the decoder pathwise at the
    sampled z (module docstring).
    Reference: Hubara et al., "Binarized neural networks", NeurIPS 2016, arXiv 1602.02830, eq. 4
    (the straight-through 1_{|r| <= 1}); spec §4.1.
    """

    name = "vae-st-hardtanh"
    reference = "Hubara et al., arXiv 1602.02830 (NeurIPS 2016)"
    verified = (
        "exact: as `vae-st-identity`; `vae-st-slope(form=hard)` at s = 1 reproduces it draw for "
        "draw"
    )
    tests = ("tests/test_sbvae_estimators.py",)

    def jacobian(self, alpha: Tensor, b: Tensor, u: Tensor, extra: Tensor | None) -> Tensor:
        return 0.5 * (alpha.abs() <= 1).to(alpha.dtype)


class VAEStraightThroughTanh(PathStraightThrough):
    """Tanh-proxy straight-through: D_k = (1 - tanh^2(alpha_k)) / 2 ({0, 1} states), the
    principled ST of logistic noise of scale 1/2. Biased in the encoder, the decoder pathwise
    at the sampled z (module docstring). Reference: spec §4.1 (tanh proxy); Shekhovtsov &
    Yanush, arXiv 2006.06880, section 3.
    """

    name = "vae-st-tanh"
    reference = "spec §4.1; Shekhovtsov & Yanush, arXiv 2006.06880"
    verified = "exact: as `vae-st-identity`"
    tests = ("tests/test_sbvae_estimators.py",)

    def jacobian(self, alpha: Tensor, b: Tensor, u: Tensor, extra: Tensor | None) -> Tensor:
        return 0.5 * (1 - torch.tanh(alpha) ** 2)


class VAEStraightThroughSlope(PathStraightThrough):
    """Slope-annealed straight-through with a fixed slope s: ``form=smooth`` D_k =
    s sigmoid'(s alpha_k) (s = 1 is ``vae-st`` draw for draw); ``form=hard`` the hard sigmoid
    D_k = (s/2) 1[|s alpha_k| <= 1] (s = 1 is ``vae-st-hardtanh``). Biased in the encoder, the
    decoder pathwise at the sampled z (module docstring).
    Reference: Chung, Ahn & Bengio, "Hierarchical multiscale recurrent neural networks", ICLR
    2017, arXiv 1609.01704, section 3.3 (slope annealing); spec §4.1.
    """

    name = "vae-st-slope"
    reference = "Chung, Ahn & Bengio, arXiv 1609.01704 (ICLR 2017)"
    verified = (
        "exact: as `vae-st-identity` (s = 2); s = 1 reproduces `vae-st` draw for draw; "
        "conformance check of the hard form at s = 2"
    )
    tests = ("tests/test_sbvae_estimators.py",)
    hyperparameters = {
        **StraightThroughBase.hyperparameters,
        "s": Hyper(1.0, float, minimum=0.0, exclusive=True, help="slope of the proxy"),
        "form": Hyper(
            "smooth",
            str,
            choices=("smooth", "hard"),
            help="smooth: s sigmoid'(s a); hard: (s/2) 1[|s a| <= 1]",
        ),
    }

    def jacobian(self, alpha: Tensor, b: Tensor, u: Tensor, extra: Tensor | None) -> Tensor:
        s = self.params["s"]
        if self.params["form"] == "hard":
            return (s / 2) * ((s * alpha).abs() <= 1).to(alpha.dtype)
        p = torch.sigmoid(s * alpha)
        return s * (p * (1 - p))


class VAEDarn(PathStraightThrough):
    """DARN "1/2" estimator (= binary ReinMax at tau = 1, = ZGR): D_k = (b_k - 1/2) times the
    score d log q(b_k | alpha_k) / d alpha_k = (b_k - 1/2)(b_k - p_k), i.e. (1 - p)/2 when on and
    p/2 when off; E[D_k | z_{<k}] = sigmoid'(alpha_k), the principled-ST Jacobian. Biased in the
    encoder (exact only for f quadratic in a single layer), the decoder pathwise at the sampled
    z (module docstring).
    References: Gregor et al., "Deep AutoRegressive Networks", ICML 2014, arXiv 1310.8499 (as
    described in MuProp, arXiv 1511.05176, section 3); Liu et al. (ReinMax), arXiv 2304.08612,
    Algorithm 2 at tau = 1; spec §4.2 (checked against the authors' code there).
    """

    name = "vae-darn"
    reference = "Gregor et al., arXiv 1310.8499 (ICML 2014); Liu et al. (ReinMax), arXiv 2304.08612"
    verified = "exact: as `vae-st-identity`"
    tests = ("tests/test_sbvae_estimators.py",)

    def jacobian(self, alpha: Tensor, b: Tensor, u: Tensor, extra: Tensor | None) -> Tensor:
        return (b - 0.5) * (b - torch.sigmoid(alpha))


# ---- Straight-through estimators published since 2022: ReinMax, GST, ZGR -----------------------
#
# The sbn kind's (``estbench.kinds.sbn.estimators.straight_through``, where each is checked against
# its authors' code), for the encoder's Bernoulli units: written for categorical variables, a unit
# is the two-category case with logits (alpha_k, 0), so the proxy D_k is the on-logit's J_phi with
# phi = alpha_k (the logistic case there: d phi / d alpha = 1) and p = sigmoid(alpha_k). Each is a
# ``PathStraightThrough``: hard states forward, D_k backward, decoder pathwise at the sampled z
# (unbiased), encoder biased; ``path`` as the module docstring (default "keep").


class VAEReinMax(PathStraightThrough):
    """ReinMax (Liu et al., NeurIPS 2023), binary case, as the sbn kind's ``reinmax``: the
    second-order (Heun) combination of straight-through Jacobians, 2 J(pi_1) g - (1/2) J(pi_0) g
    with J(pi) = diag(pi) - pi pi^T, pi_0 = softmax(theta), pi_1 = (softmax(theta / tau) + D) / 2;
    for the two categories (alpha_k, 0), p = sigmoid(alpha_k), s = sigmoid(alpha_k / tau) and
    pi_1 = (s + b_k) / 2,

        D_k = 2 pi_1 (1 - pi_1) - p (1 - p) / 2.

    At tau = 1 (the default, the smallest temperature its authors' code allows) this is
    (1 - p)/2 when on and p/2 when off: ``vae-darn`` exactly (and ``vae-zgr``). In the straight-
    through recursion of the module docstring: decoder pathwise at the sampled z (unbiased), the
    encoder biased (the second-order claim, the trapezoid rule, is exact for a loss quadratic in
    one layer, which the ELBO is not). Claim: "decoder only". ``path`` as there (default "keep").
    Cost: 1 evaluation of f, one backward pass.
    Reference: Liu, Zhao, Song, Gao & Zhang (ReinMax), "Bridging discrete and backpropagation:
    straight-through and beyond", NeurIPS 2023, arXiv 2304.08612, Algorithm 2 and the estimator
    2 grad_{1/2} - grad_{ST}/2 of §4; authors' package microsoft/ReinMax, ``reinmax/reinmax.py``
    ``ReinMaxCore.backward`` (the formula above checked against it term by term in the sbn kind).
    UNVERIFIED, as in the sbn kind: the paper's equation numbers (its text could not be read).
    """

    name = "vae-reinmax"
    reference = "Liu et al. (ReinMax), NeurIPS 2023, arXiv 2304.08612; microsoft/ReinMax"
    verified = (
        "exact: by enumeration, decoder and prior blocks equal the exact gradient to 1e-12 and "
        "the encoder block is biased (τ = 1 and 2, path kept and dropped), on three small VAEs; "
        "its Jacobian equals the sbn kind's `reinmax` (τ = 1 and 2.5) on the same logits and "
        "states; τ = 1 equals `vae-darn` (draws and exact moments to 1e-12), and the same "
        "comparison rejects τ = 2 (negative control); exact path moments against brute force; "
        "conformance check (exact)"
    )
    tests = ("tests/test_sbvae_more.py", "tests/test_sbvae_moments.py")
    hyperparameters = {
        **StraightThroughBase.hyperparameters,
        "tau": Hyper(
            1.0, float, minimum=1.0, help="temperature of pi_1 (the authors' code requires >= 1)"
        ),
    }

    def jacobian(self, alpha: Tensor, b: Tensor, u: Tensor, extra: Tensor | None) -> Tensor:
        tau = self.params["tau"]
        p = torch.sigmoid(alpha)
        s = p if tau == 1 else torch.sigmoid(alpha / tau)
        pi1 = (s + b) / 2
        return 2 * pi1 * (1 - pi1) - p * (1 - p) / 2


class VAEGappedST(PathStraightThrough):
    """Gapped straight-through (GST; Fan, Chi, Rudnicky & Ramadge, ICML 2022), binary case, as
    the sbn kind's ``gst``: the ST-Gumbel-Softmax Jacobian at deterministically perturbed logits
    that are consistent with the sample and gapped (the sampled logit at least kappa above the
    other). For the two categories (alpha_k, 0) the perturbed logit difference is
    max(alpha_k, kappa) when on and min(alpha_k, -kappa) when off, so with
    y_k = max((2 b_k - 1) alpha_k, kappa),

        D_k = tau^-1 sigmoid'(y_k / tau),

    kappa = ``gap`` (``form=fixed``, GST-1.0) or -log(1 - pi_D) / pi_D with pi_D the probability
    of the sampled state (``form=p``, GST-p). A deterministic proxy of Gumbel-Rao; its only
    randomness is the sampled path. In the straight-through recursion of the module docstring:
    decoder pathwise at the sampled z (unbiased), encoder biased. Claim: "decoder only". ``path``
    as there (default "keep"). Cost: 1 evaluation of f, one backward pass.
    Reference: Fan et al., "Training discrete deep generative models via gapped straight-through
    estimator", ICML 2022, arXiv 2206.07235; the binary form derived from the authors' code
    chijames/GST, ``model/basic.py`` ``gst_mover`` (checked against it in the sbn kind).
    UNVERIFIED, as in the sbn kind: the paper's equation numbers (its text could not be read).
    """

    name = "vae-gst"
    reference = "Fan et al. (GST), ICML 2022, arXiv 2206.07235; chijames/GST"
    verified = (
        "exact: decoder unbiased and encoder biased by enumeration, as `vae-reinmax` (fixed gap "
        "and GST-p); its Jacobian equals the sbn kind's `gst` (logistic, {0,1}; fixed gaps 1 "
        "and 0.3, GST-p at τ = 0.5) on the same logits and states; exact path moments against "
        "brute force; conformance check (exact)"
    )
    tests = ("tests/test_sbvae_more.py", "tests/test_sbvae_moments.py")
    hyperparameters = {
        **StraightThroughBase.hyperparameters,
        "tau": Hyper(1.0, float, minimum=0.0, exclusive=True, help="softmax temperature"),
        "gap": Hyper(1.0, float, minimum=0.0, help="the gap kappa (form=fixed)"),
        "form": Hyper(
            "fixed",
            str,
            choices=("fixed", "p"),
            help="fixed: kappa = gap (GST-1.0); p: kappa = -log(1 - pi_D) / pi_D (GST-p)",
        ),
    }

    def jacobian(self, alpha: Tensor, b: Tensor, u: Tensor, extra: Tensor | None) -> Tensor:
        tau = self.params["tau"]
        if self.params["form"] == "fixed":
            kappa: Tensor | float = float(self.params["gap"])
        else:
            p = torch.sigmoid(alpha)
            pi = torch.where(b == 1, p, 1 - p)
            pi = pi.clamp(torch.finfo(pi.dtype).tiny, 1 - torch.finfo(pi.dtype).eps)
            kappa = -torch.log1p(-pi) / pi
        y = torch.maximum(
            (2 * b - 1) * alpha, torch.as_tensor(kappa, dtype=alpha.dtype, device=alpha.device)
        )
        s = torch.sigmoid(y / tau)
        return s * (1 - s) / tau


class VAEZGR(PathStraightThrough):
    """ZGR (Shekhovtsov, ICML 2023), binary case, as the sbn kind's ``zgr``: the average of
    straight-through and the categorical DARN term, (1/2)[J(p) g + (D - p)(grad log p_D)^T g];
    for the two categories (alpha_k, 0), grad_alpha log p_D = b_k - p_k, so

        D_k = (p_k (1 - p_k) + (b_k - p_k)^2) / 2,

    (1 - p)/2 when on and p/2 when off: ``vae-darn`` (and ``vae-reinmax`` at tau = 1) in exact
    arithmetic, computed here from the categorical formula. In the straight-through recursion of
    the module docstring: decoder pathwise at the sampled z (unbiased), encoder biased. Claim:
    "decoder only". ``path`` as there (default "keep"). Cost: 1 evaluation of f, one backward
    pass.
    Reference: Shekhovtsov, "Cold analysis of Rao-Blackwellized straight-through Gumbel-Softmax
    gradient estimator", ICML 2023 (PMLR 202), openreview 9GjM8UzCYN; the author's shekhovt/ZGR
    ``zgr.py`` (``ZGR``; ``ZGR_binary``: "ZGR = DARN(1/2)"). UNVERIFIED, as in the sbn kind: the
    paper text (the code cites its eq. (50) for the categorical backward).
    """

    name = "vae-zgr"
    reference = "Shekhovtsov (ZGR), ICML 2023; shekhovt/ZGR"
    verified = (
        "exact: decoder unbiased and encoder biased by enumeration, as `vae-reinmax`; its "
        "Jacobian equals the sbn kind's `zgr`; equals `vae-darn` (draws and exact moments to "
        "1e-12); exact path moments against brute force; conformance check (exact)"
    )
    tests = ("tests/test_sbvae_more.py", "tests/test_sbvae_moments.py")

    def jacobian(self, alpha: Tensor, b: Tensor, u: Tensor, extra: Tensor | None) -> Tensor:
        p = torch.sigmoid(alpha)
        return (p * (1 - p) + (b - p) ** 2) / 2


ESTIMATORS = (
    VAEStraightThrough,
    VAEStraightThroughIdentity,
    VAEStraightThroughHardtanh,
    VAEStraightThroughTanh,
    VAEStraightThroughSlope,
    VAEDarn,
    VAEReinMax,
    VAEGappedST,
    VAEZGR,
)
