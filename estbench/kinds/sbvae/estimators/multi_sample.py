"""Antithetic multi-sample estimators of the ``sbvae`` kind: ARMS and CARMS's binary case, per
latent layer, as the sbn kind's ``arms`` and ``carms`` (``estbench.kinds.sbn.estimators.
score_noise``, where each is checked against its authors' code). Shared notation and the
encoder's pathwise term: ``base``.

Both draw, for every latent layer k, K mutually antithetic uniforms per unit and data point from
the Dirichlet copula (``dirichlet_copula``: e_i ~ Exp(1), d_i = e_i / sum e, v_i = (1 - d_i)^{K-1},
each U(0, 1), negatively dependent) and go per layer like ``vae-arm``: the base path z is sample
i = 0 of every layer's copula; for layer k, the K samples b_{k,i} of the layer share the base
path's z_{<k} and are continued upwards with the base path's uniforms (common random numbers), so
that branch 0 is the base path itself and f_i = f(branch i), f = log p(x, z) - log q(z | x) with
every parameter held. The continuation's uniforms are U(0, 1) given everything below them, so
E[f_i | layer k's copula] = E[f | z_k = b_{k,i}, z_{<k}] = h(b_{k,i}), and the single-layer
identity makes each layer's logit-gradient estimate G_k unbiased for d E[f | z_{<k}] / d alpha_k
(f held). The estimate (``base.logit_estimates``)

    g = -(1/N) sum_n [ sum_k G_k . grad_phi alpha_k(z_{k-1}) + grad_theta log p(x_n, z)
                       - kappa grad_phi log q(z | x_n) ]

takes the decoder's gradient pathwise at the base path, and the encoder's pathwise term by
``path`` (kappa = 1 when "keep"; default "drop", as the papers' VAE experiments, which
differentiate E_q[f] with f held). Unbiased in every parameter (claim "yes"). Cost:
1 + (K - 1) L evaluations of f.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Hyper
from ...sbn.estimators.score_noise import arms_joint, copula_pair_pmf, dirichlet_copula
from ..model import SBVAE, VAEProblem
from .base import VAEEstimator, layer_uniforms, logit_estimates, sample, signal

K_SAMPLES = Hyper(4, int, minimum=2, help="coupled samples per unit and layer (K >= 2)")


class _CopulaEstimator(VAEEstimator):
    """K copula samples per unit and latent layer, the base path their sample 0, branches per
    layer continued with the base path's uniforms (module docstring). Subclasses give the
    sampling rule (``states``) and the layer's logit-gradient estimate (``layer_gradient``)."""

    hyperparameters = {**VAEEstimator.hyperparameters, "k": K_SAMPLES}

    def evals_per_draw(self, model: SBVAE) -> float:
        return 1.0 + (self.params["k"] - 1) * model.n_latent

    def bytes_per_draw(self, problem: VAEProblem) -> int:
        """The base class's (it counts the evaluations) and the per-unit tensors of the K
        samples and their K x K pairs (CARMS's ratios)."""
        K, m = self.params["k"], problem.model
        return super().bytes_per_draw(problem) + 8 * problem.n_points * sum(m.latent) * 6 * K * K

    def states(self, v: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """(the K samples [S, K, N, n] of a layer from its copula uniforms v and P(on) = p
        [S, N, n], the base path's uniform [S, N, n]: on iff it is below p)."""
        raise NotImplementedError

    def layer_gradient(self, f: Tensor, b: Tensor, p: Tensor) -> Tensor:
        """G_k [S, N, n] from f of the K branches [S, K, N], their states b [S, K, N, n] and
        p [S, N, n]."""
        raise NotImplementedError

    def _draw(
        self, problem: VAEProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        c = layer_uniforms(problem, (n_draws, self.params["k"]), generator)  # [S, K, N, n_k]
        return self.estimates(problem, c)

    def estimates(self, problem: VAEProblem, c: list[Tensor]) -> Tensor:
        """[S, P] from i.i.d. uniforms c ([S, K, N, n_k] per layer), the copula's input."""
        m, X, K = problem.model, problem.X, self.params["k"]
        v = [dirichlet_copula(ck, K) for ck in c]
        below, z, samples, ps, base_u = X, [], [], [], []
        for k in range(1, m.n_latent + 1):
            p = torch.sigmoid(m.encoder_logits(k, below)).expand(v[k - 1][:, 0].shape)
            b, u = self.states(v[k - 1], p)
            below = b[:, 0]
            z.append(below)
            samples.append(b)
            ps.append(p)
            base_u.append(u[:, None])  # broadcast over the K - 1 branches
        f0 = signal(m, X, z)  # [S, N]
        G = []
        for k in range(1, m.n_latent + 1):
            others = samples[k - 1][:, 1:]  # [S, K - 1, N, n_k]
            branch = [zj[:, None] for zj in z[: k - 1]]
            branch += [others, *sample(m, others, base_u, start=k + 1)]
            f = torch.cat((f0[:, None], signal(m, X, branch)), 1)  # [S, K, N]
            G.append(self.layer_gradient(f, samples[k - 1], ps[k - 1]))
        return logit_estimates(problem, z, G, self.keep)


class VAEARMS(_CopulaEstimator):
    """ARMS (antithetic REINFORCE multi-sample) with the Dirichlet copula, per latent layer, as
    the sbn kind's ``arms``. Per unit, with p = sigmoid(alpha_k), m = min(p, 1 - p) and
    J_K(m) = max(2 m^{1/(K-1)} - 1, 0)^{K-1} the probability that two of the K samples are both
    in the minority state (``arms_joint``): the samples b_i = 1[v_i < p] when p < 1/2 and
    b_i = 1[1 - v_i < p] when p >= 1/2 (the minority state on the copula's lower tail), and

        G_k = p (1 - p) / (m - J_K(m)) * (1/(K-1)) sum_i (f_i - fbar) (b_i - p),

    fbar the mean of the K. K = 2 is DisARM; independent samples would give RLOO. Deep form, base
    path, branches and the encoder's pathwise term (``path``): module docstring. Unbiased in
    every parameter (claim "yes"). Cost: 1 + (K - 1) L evaluations of f.
    Reference: Dimitriev & Zhou, "ARMS: antithetic-REINFORCE-multi-sample gradient for binary
    variables", ICML 2021, arXiv 2105.14141; formula as checked in the sbn kind against the
    authors' code alekdimi/arms ``networks.py`` 'arms' (copula, flip at p < 1/2, J_K, debias
    factor). Equation numbers: none in the sbn kind's provenance, not read here (UNVERIFIED);
    the spec had not checked the deep per-layer form (its derivation: module docstring).
    """

    name = "vae-arms"
    unbiased = "yes"
    reference = "Dimitriev & Zhou, ICML 2021, arXiv 2105.14141"
    verified = (
        "statistical: conformance check (K = 4 and 3, path dropped and kept); equals "
        "`vae-carms` on the same noise when every p ≤ 1/2; K = 2 has `vae-disarm`'s mean and "
        "variance (the same law); negative control: without the J_K correction (the "
        "independent-sample factor p(1 − p)/(p − p²) on antithetic samples) the check fails"
    )
    tests = ("tests/test_sbvae_more.py",)

    def states(self, v: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        high = p >= 0.5
        low = torch.minimum(p, 1 - p)
        b = ((v < low[:, None]) != high[:, None]).to(p.dtype)
        return b, torch.where(high, 1 - v[:, 0], v[:, 0])

    def debias(self, p: Tensor) -> Tensor:
        """p (1 - p) / (m - J_K(m)), m = min(p, 1 - p); 0 where the denominator is 0."""
        low = torch.minimum(p, 1 - p)
        den = low - arms_joint(low, self.params["k"])
        ok = den > 0
        return torch.where(ok, p * (1 - p) / torch.where(ok, den, 1.0), 0.0)

    def layer_gradient(self, f: Tensor, b: Tensor, p: Tensor) -> Tensor:
        K = self.params["k"]
        centred = (f - f.mean(1, keepdim=True))[..., None]
        # sum_i (f_i - fbar)(b_i - p) = sum_i (f_i - fbar) b_i: the p term sums to zero
        return self.debias(p) * (centred * b).sum(1) / (K - 1)


class VAECARMS(_CopulaEstimator):
    """CARMS (Dimitriev & Zhou, NeurIPS 2021), binary case, per latent layer, as the sbn kind's
    ``carms``: K jointly antithetic samples b_i = 1[v_i < p] from the Dirichlet copula (no flip:
    "on" is the first category, the authors' fixed order) and the leave-one-out REINFORCE
    estimator made unbiased by importance weights of each pair of samples,

        G_k = 1/(K (K-1)) sum_{i != j} r(b_i, b_j) (f_i - f_j) (b_i - p),
        r(c, c') = P(c) P(c') / P2(c, c'),

    P2 the bivariate pmf of two copula samples (``copula_pair_pmf``; r = 0 for a pair of
    probability 0), per unit. When every unit has p <= 1/2 this is ``vae-arms`` (the pairwise sum
    reduces to ARMS's form, the minority state being on the lower tail in both); for p > 1/2 it
    differs (``vae-arms`` flips), so it measures what the flip is worth. The authors' code clips
    r to [0.01, 10] with smoothing (biased); the exact ratio is used here. Deep form, base path,
    branches and the encoder's pathwise term (``path``): module docstring. Unbiased in every
    parameter (claim "yes"). Cost: 1 + (K - 1) L evaluations of f.
    Reference: Dimitriev & Zhou, "CARMS: categorical-antithetic-REINFORCE multi-sample gradient
    estimator", NeurIPS 2021, arXiv 2110.14002; formula as checked in the sbn kind against the
    authors' code alekdimi/carms (``vae.py`` ``CategoricalVAE.matrix_grad``, ``antithetic.py``
    ``InverseCategorical``). UNVERIFIED, as in the sbn kind: the paper's equation numbers (its
    text could not be read).
    """

    name = "vae-carms"
    unbiased = "yes"
    reference = "Dimitriev & Zhou, NeurIPS 2021, arXiv 2110.14002; alekdimi/carms"
    verified = (
        "statistical: conformance check (K = 4 and 3, path dropped and kept); equals `vae-arms` "
        "on the same noise when every p ≤ 1/2 (and differs where p > 1/2); negative control: "
        "the importance weights dropped (plain leave-one-out on the antithetic samples) fails "
        "the check"
    )
    tests = ("tests/test_sbvae_more.py",)

    def states(self, v: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        return (v < p[:, None]).to(p.dtype), v[:, 0]

    def pair_ratios(self, p: Tensor, b: Tensor) -> Tensor:
        """r(b_i, b_j) [S, K, K, N, n] for the samples b [S, K, N, n] (diagonal unused)."""
        p11, p10, p00 = (t[:, None, None] for t in copula_pair_pmf(p, self.params["k"]))
        bi, bj = b[:, :, None], b[:, None, :]
        pp = p[:, None, None]
        joint = torch.where(bi == bj, torch.where(bi == 1, p11, p00), p10)
        marg_i = torch.where(bi == 1, pp, 1 - pp)
        marg_j = torch.where(bj == 1, pp, 1 - pp)
        ok = joint > 0
        return torch.where(ok, marg_i * marg_j / torch.where(ok, joint, 1.0), 0.0)

    def layer_gradient(self, f: Tensor, b: Tensor, p: Tensor) -> Tensor:
        K = self.params["k"]
        off = ~torch.eye(K, dtype=torch.bool, device=b.device).reshape(1, K, K, 1, 1)
        diff = (f[:, :, None] - f[:, None, :])[..., None]  # f_i - f_j, [S, K, K, N, 1]
        pair = torch.where(off, self.pair_ratios(p, b) * diff, 0.0).sum(2)  # [S, K, N, n]
        return ((b - p[:, None]) * pair).sum(1) / (K * (K - 1))


ESTIMATORS = (VAEARMS, VAECARMS)
