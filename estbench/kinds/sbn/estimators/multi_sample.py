"""Multi-sample score-function estimators published since 2021: CARMS (binary case).

They follow ``score_noise.NoiseEstimator``: a deterministic function ``estimate(problem, noise)``
of U(0, 1) tensors, so that tests can integrate over the noise, and per-layer branches like ARMS
(base path, K coupled samples of each layer at the base upstream, common random numbers below).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Estimator, Hyper
from ...layered_estimators import logit_scale
from ..model import SBN, Problem, encode
from .ops import (
    Path,
    assemble,
    first_preactivation,
    head_grad,
    layer_terms,
    point_losses,
    preactivation,
    propagate,
)
from .score_noise import NoiseEstimator, arms_joint


def dirichlet_copula(c: Tensor, K: int) -> Tensor:
    """K mutually antithetic U(0, 1) variables along dim 1 from i.i.d. uniforms ``c`` [S, K, ...]:
    e_i = -log(1 - c_i) ~ Exp(1), d = e / sum e, v_i = (1 - d_i)^{K-1} (alekdimi/carms
    ``copulas.Dirichlet.sample``)."""
    e = torch.log1p(-c)  # = -Exp(1); the sign cancels in d
    return (1 - e / e.sum(1, keepdim=True)) ** (K - 1)


def copula_pair_pmf(p: Tensor, K: int) -> tuple[Tensor, Tensor, Tensor]:
    """(P11, P10, P00): the joint pmf of two of the K copula samples of a unit that is on iff
    v < p, from the copula's bivariate CDF C(p, p) = max(2 p^{1/(K-1)} - 1, 0)^{K-1}
    (``arms_joint``; alekdimi/carms ``copulas.Dirichlet.bivariate_cdf``, non-inverted), valid for
    every p in [0, 1]; P01 = P10."""
    p11 = arms_joint(p, K)
    p10 = p - p11
    return p11, p10, 1 - 2 * p + p11


class CARMS(NoiseEstimator):
    """CARMS (Dimitriev & Zhou, NeurIPS 2021), binary case: K jointly antithetic samples from the
    Dirichlet copula and the leave-one-out REINFORCE estimator made unbiased by importance weights
    of each *pair* of samples,

        g_phi = 1/(K (K-1)) sum_{i != j} r(z_i, z_j) (f_i - f_j) (z_i - p),
        r(c, c') = P(c) P(c') / P2(c, c'),

    with P2 the bivariate pmf of two copula samples (``copula_pair_pmf``) and z_i - p the score
    of the on-logit phi (authors' code alekdimi/carms: ``vae.py`` ``CategoricalVAE.matrix_grad``
    -- R = (diag(row sums) - offdiag ratios) / M, times M/(M-1) -- and ``antithetic.py``
    ``InverseCategorical``: inverse-CDF sampling of the categories in a fixed order from one
    copula uniform per sample). For two categories the authors' code keeps only the identity
    order, so a unit is on iff v < p whichever state is likelier; here "on" is the first category
    (the project's convention u < F(a)). With independent samples r = 1 and CARMS is RLOO
    (LOORF), as the paper states.

    Binary reduction [derived]: r is symmetric, so pairs (i, j) and (j, i) add to
    r (f_i - f_j)(z_i - z_j), zero for equal states: only mixed pairs count, with
    r = p q / (p - C(p, p)), and g_phi = p q / (p - C(p, p)) (1/(K-1)) sum_i (f_i - fbar)(z_i - p):
    ARMS's form. With the minority state on the copula's lower tail it *is* ARMS (the paper:
    "ARMS ... is CARMS for two categories"); in the authors' fixed order it differs from ``arms``
    for units with p > 1/2 (on is the majority but still on the lower tail; ``arms`` flips). So
    ``carms`` measures what the flip is worth: the same estimator as ``arms`` when every unit
    has p <= 1/2 (tests: equal draws on the same noise). The pairwise sum is computed as the
    paper writes it, not through the reduction. The authors' code clips the ratio to [0.01, 10]
    with 1e-3 smoothing (biased); this implementation uses the exact ratio (0 for a pair of
    probability 0).

    Deep form, per layer as ``arms``: the base path is sample 0 of each layer's copula; each
    layer's K samples share the base upstream and, below, the base path's uniforms (common random
    numbers), so E[f_i | copula] = E[f | x_k = z_i, x_{<k}] and every layer is unbiased for any f
    and noise (d phi / d a = F'(a) / (p q) for non-logistic noise, [derived]).
    Claim: unbiased ("yes"). Cost: 1 + (K - 1) L loss evaluations per draw (``evals_per_draw``).
    Reference: Dimitriev & Zhou, "CARMS: categorical-antithetic-REINFORCE multi-sample gradient
    estimator", NeurIPS 2021, arXiv 2110.14002. UNVERIFIED: the paper's equation numbers (its text
    could not be read here; its abstract's statements are quoted above); the formula is checked
    against the authors' code named above.
    """

    name = "carms"
    unbiased = "yes"
    reference = "Dimitriev & Zhou, NeurIPS 2021, arXiv 2110.14002; alekdimi/carms"
    hyperparameters = {
        "k": Hyper(4, int, minimum=2, help="coupled samples per unit and layer (K >= 2)"),
    }

    def evals_per_draw(self, model: SBN) -> float:
        return 1.0 + (self.params["k"] - 1) * model.depth

    def bytes_per_draw(self, problem: Problem) -> int:
        K = self.params["k"]
        return (K * K + K + 2) * super().bytes_per_draw(problem)

    def noise_shapes(self, problem: Problem) -> list[tuple[int, ...]]:
        K = self.params["k"]
        return [(K, problem.n_points, n) for n in problem.model.widths]

    def pair_ratios(self, p: Tensor, q: Tensor, z: Tensor) -> Tensor:
        """r(z_i, z_j) = P(z_i) P(z_j) / P2(z_i, z_j) for the samples z [S, K, N, n]:
        [S, K, K, N, n] (the diagonal is unused); 0 where P2 = 0."""
        K = self.params["k"]
        p11, p10, p00 = copula_pair_pmf(p, K)
        zi, zj = z[:, :, None], z[:, None, :]
        p11, p10, p00, p, q = (t[:, None, None] for t in (p11, p10, p00, p, q))
        joint = torch.where(zi == zj, torch.where(zi == 1, p11, p00), p10)
        marg_i = torch.where(zi == 1, p, q)
        marg_j = torch.where(zj == 1, p, q)
        ok = joint > 0
        return torch.where(ok, marg_i * marg_j / torch.where(ok, joint, 1.0), 0.0)

    def estimate(self, problem: Problem, noise: Sequence[Tensor], context: Any = None) -> Tensor:
        m = problem.model
        K = self.params["k"]
        L = m.depth
        copula = [dirichlet_copula(c, K) for c in noise]  # [S, K, N, n] per layer
        a = first_preactivation(problem).expand(copula[0][:, 0].shape)
        xs: list[Tensor]
        bits, xs, As, ps, samples = [], [], [], [], []
        for k in range(L):
            if k > 0:
                a = preactivation(problem, k, xs[-1])
            p = m.noise.cdf(a)
            z = (copula[k] < p[:, None]).to(a.dtype)  # on iff v < p, no flip
            samples.append(z)
            bits.append(z[:, 0])
            xs.append(encode(bits[-1], m.coding))
            As.append(a)
            ps.append(p)
        path = Path(bits, xs, As, ps, [problem.X, *xs], preactivation(problem, L, xs[-1]))
        f_base = point_losses(problem, path.z)  # [S, N]
        down = [v[:, :1] for v in copula]  # the base path's uniforms, broadcast over branches
        logit_grads = []
        off = ~torch.eye(K, dtype=torch.bool, device=problem.X.device)
        off = off.reshape(1, K, K, 1, 1)
        for k in range(L):
            z, p, a = samples[k], ps[k], As[k]
            q = 1 - p if m.noise.name == "logistic" else m.noise.cdf(-a)
            x_other = encode(z[:, 1:], m.coding)  # [S, K-1, N, n]
            f_other = point_losses(problem, propagate(problem, k, x_other, down))
            f = torch.cat((f_base[:, None], f_other), 1)[..., None]  # [S, K, N, 1]
            r = self.pair_ratios(p, q, z)  # [S, K, K, N, n]
            diff = f[:, :, None] - f[:, None, :]  # f_i - f_j, [S, K, K, N, 1]
            pair = torch.where(off, r * diff, 0.0).sum(2)  # sum_j, [S, K, N, n]
            g_phi = ((z - p[:, None]) * pair).sum(1) / (K * (K - 1))
            if m.noise.name != "logistic":
                g_phi = g_phi * logit_scale(m.noise.pdf_given(a, p), p, q)
            logit_grads.append(g_phi)
        terms = layer_terms(path, logit_grads, head_grad(problem, path.z))
        return assemble(problem, terms, per_point=False)


ESTIMATORS: list[type[Estimator]] = [CARMS]
