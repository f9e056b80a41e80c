"""ARM and DisARM for the ``sbvae`` kind: antithetic pairs per latent layer, with the base
path's upstream and common random numbers downstream. Shared notation: ``base``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ....estimators.base import VarianceClaim
from ..model import SBVAE, VAEProblem
from .base import VAEEstimator, layer_uniforms, logit_estimates, sample, signal


class _PairEstimator(VAEEstimator):
    """One base path z ~ q(z | x) from uniforms u (z_k on iff u_k < p_k, p_k = sigmoid(alpha_k),
    alpha_k = e_k(z_{k-1})); for every latent layer k the antithetic branch
    b1_k = 1[u_k > 1 - p_k] with the base path's z_{<k}, continued upwards with the base path's
    u_{>k} (common random numbers), and f1_k = f on that branch; the base path is the other branch
    (b2_k = z_k, f2 = f(z)). Then alpha_k's gradient estimate ``pair_weight`` times (f1_k - f2)
    goes through e_k at the base z_{k-1}, and the decoder's gradient is pathwise at the base path:

        g = -(1/N) sum_n [ sum_k G_k(n) . grad_phi alpha_k(z_{k-1,n})
                           + grad_theta log p(x_n, z_n) - kappa grad_phi log q(z_n | x_n) ]

    (kappa: ``path``). Per layer, given z_{<k}, the pair is the single-layer identity applied to
    h(z_k) = E[f | z_k, z_{<k}]; the continuation's noise is independent of u_k, so every layer is
    unbiased, and so is the sum. L + 1 evaluations of f per draw."""

    def evals_per_draw(self, model: SBVAE) -> float:
        return float(model.n_latent + 1)

    def pair_weight(self, alpha: Tensor, u: Tensor, b1: Tensor, b2: Tensor) -> Tensor:
        raise NotImplementedError

    def _draw(
        self, problem: VAEProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        m, X, L = problem.model, problem.X, problem.model.n_latent
        u = layer_uniforms(problem, (n_draws,), generator)
        z = sample(m, X, u)
        f2 = signal(m, X, z)
        below = [X, *z[:-1]]
        G = []
        for k in range(1, L + 1):
            alpha = m.encoder_logits(k, below[k - 1])
            b1 = (u[k - 1] > torch.sigmoid(-alpha)).to(alpha.dtype)  # 1[u > 1 - p]
            branch = [*z[: k - 1], b1, *sample(m, b1, u, start=k + 1)]
            f1 = signal(m, X, branch)
            G.append((f1 - f2)[..., None] * self.pair_weight(alpha, u[k - 1], b1, z[k - 1]))
        return logit_estimates(problem, z, G, self.keep)


class VAEARM(_PairEstimator):
    """ARM (Augment-REINFORCE-Merge) per latent layer (``_PairEstimator``):

        G_k = (f(b1_k) - f(z)) (u_k - 1/2),
        b1_k = 1[u_k > sigmoid(-alpha_k)],   z_k = 1[u_k < sigmoid(alpha_k)],

    the ARM identity grad_alpha E_{z ~ Bern(sigmoid(alpha))}[h(z)] =
    E_u[(h(1[u > sigmoid(-alpha)]) - h(1[u < sigmoid(alpha)])) (u - 1/2)]. Unbiased in every
    parameter. The encoder's pathwise term: ``path`` (default dropped, as in the paper's VAE
    experiments, which differentiate E_q[f] with f held). Cost: L + 1 evaluations of f.
    Reference: Yin & Zhou, "ARM: Augment-REINFORCE-Merge gradient for stochastic binary
    networks", ICLR 2019, arXiv 1807.11143, Theorem 1 (eq. 5) and its multi-layer form (eq. 11).
    """

    name = "vae-arm"
    reference = "Yin & Zhou, ICLR 2019, arXiv 1807.11143"
    verified = (
        "statistical: conformance check (per-layer pairs with common random numbers upwards, L "
        "+ 1 evaluations)"
    )
    tests = ("tests/test_sbvae_estimators.py",)

    def pair_weight(self, alpha: Tensor, u: Tensor, b1: Tensor, b2: Tensor) -> Tensor:
        return u - 0.5


class VAEDisARM(_PairEstimator):
    """DisARM (= U2G) per latent layer (``_PairEstimator``): ARM with the augmentation noise
    integrated out given the pair,

        G_k = (1/2) (f(b1_k) - f(z)) (-1)^{z_k} 1[b1_k != z_k] sigmoid(|alpha_k|),

    elementwise per unit (z_k = b2_k = 1[u_k < sigmoid(alpha_k)]). Unbiased in every parameter,
    and never of larger variance than ARM for a single layer (Rao-Blackwellisation). The
    encoder's pathwise term: ``path`` (default dropped). Cost: L + 1 evaluations of f.
    Reference: Dong, Mnih & Tucker, "DisARM: an antithetic gradient estimator for binary latent
    variables", NeurIPS 2020, arXiv 2006.10680, eq. 5 (single layer) and Section 4 (multi-layer);
    Yin, Ho & Zhou, "Probabilistic best subset selection via gradient-based optimization"
    (U2G), arXiv 2006.06448.
    """

    name = "vae-disarm"
    reference = "Dong, Mnih & Tucker, NeurIPS 2020, arXiv 2006.10680"
    verified = (
        "statistical: conformance check (path dropped and kept); encoder variance below ARM's "
        "on a one-layer VAE"
    )
    tests = ("tests/test_sbvae_estimators.py",)
    # The paper compares the encoder's gradients (the decoder's is the same pathwise term for
    # every estimator there): the claim is about the encoder blocks (enc1.., encoder).
    variance_claims = (
        VarianceClaim(
            "vae-rloo",
            "Dong, Mnih & Tucker, NeurIPS 2020: DisARM below LOORF (RLOO, K = 2)",
            ("enc*",),
        ),
        VarianceClaim("vae-arm", "Dong, Mnih & Tucker, NeurIPS 2020: DisARM below ARM", ("enc*",)),
    )

    def pair_weight(self, alpha: Tensor, u: Tensor, b1: Tensor, b2: Tensor) -> Tensor:
        sign = 1 - 2 * b2  # (-1)^{b2}
        return 0.5 * sign * (b1 != b2).to(alpha.dtype) * torch.sigmoid(alpha.abs())
