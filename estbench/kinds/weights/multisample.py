"""Multi-sample antithetic estimators for stochastic binary weights (issue 19): ARMS and CARMS per
Bernoulli group, beside ``weight-arm`` and ``weight-disarm``.

**Groups and branches** (as ``estimators._PairEstimator``): a group is the Bernoulli weights of
one pair (all data points' for shared weights, each point's own for per-point weights) or the
units of one stochastic activation layer (per point). Every Bernoulli of every group has its own
K mutually antithetic uniforms v_1..v_K from the Dirichlet copula (``dirichlet_copula``, the sbn
kind's; independent across Bernoullis and groups), mapped to sample uniforms u_i (``ARMS``: u_i =
v_i for p < 1/2 and 1 - v_i for p >= 1/2; ``CARMS``: u_i = v_i) and samples b_i = 1[u_i < p], the
sampling convention of ``paths``. The base path is sample 1 of every group (for a stochastic
layer with its P(on) = F(a) at the base path's upstream, so its flip is decided layer by layer);
for each group G the K - 1 branches replace G's bits by samples 2..K and keep the base path's
uniforms u_1 of every other group (common random numbers, upstream and downstream), so the base
path is branch 1 and each group costs K - 1 loss evaluations.

**Why each group is unbiased.** Given the uniforms of the groups upstream of G, G's copula is
independent of them and the loss of a branch is a fixed function of G's bits and of the
downstream uniforms. Downstream the base uniforms u_1 of a stochastic layer are flipped by ARMS
according to the base path's P(on), which depends on G's sample 1; but whatever the flip, a flipped
independent U(0, 1) is U(0, 1), so given G's copula (and, in layer order, the downstream uniforms
before it) each downstream uniform is still U(0, 1) and independent: E[f_i | G's copula] =
h(b_i) with h(x) = E[f | G's bits = x, upstream] -- the single-group setting of ARMS and CARMS, in
which both are unbiased. So is the sum over groups. This is the argument of the sbn kind's
``arms`` and ``carms`` (per layer), with the weight groups added as in ``weight-arm``.

f is the mean loss over the data for shared weights and the point's own loss otherwise
(per-point weights, activations). Chains to the parameters: d phi / d eta = F_w'(eta) / (p q)
for a weight (1 for the logistic weight noise, where phi = eta; 0 for a deterministic weight) and
d phi / d a = F'(a) / (F(a) F(-a)) for a unit (``layered_estimators.logit_scale``); biases and
real weights from the unit gradients with the base path's inputs; the head pathwise at the base
path.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor

from ...estimators.base import Hyper
from ..layered_estimators import logit_scale
from ..sbn.estimators.ops import uniforms
from ..sbn.estimators.score_noise import arms_joint, copula_pair_pmf, dirichlet_copula
from .estimators import (
    WEIGHTS_MODE,
    LayerGrad,
    WeightEstimator,
    flatten,
    head_grad,
    outer,
)
from .model import WeightProblem, WeightSBN
from .paths import Uniforms, base_bits, path_from_uniforms, walk

K_SAMPLES: Hyper = Hyper(
    4, int, minimum=2, help="coupled samples per Bernoulli (weight or unit) and group (K >= 2)"
)


class _MultiSampleEstimator(WeightEstimator):
    """K copula samples per Bernoulli, per group (module docstring). A subclass gives the sample
    uniforms of the copula (``sample_uniforms``) and the logit gradient of a group
    (``logit_gradient``)."""

    family = "score-function"
    unbiased = "yes"
    hyperparameters = {"weights": WEIGHTS_MODE, "k": K_SAMPLES}

    def evals_per_draw(self, model: WeightSBN) -> float:
        groups = len(model.bernoulli_layers) + (0 if model.noise is None else model.depth)
        return 1.0 + (self.params["k"] - 1) * groups

    def bytes_per_draw(self, problem: WeightProblem) -> int:
        K = self.params["k"]
        return (K * K + K + 2) * super().bytes_per_draw(problem)

    # ---- noise -----------------------------------------------------------------------------

    def copula_noise(
        self, problem: WeightProblem, n_draws: int, generator: torch.Generator
    ) -> Uniforms:
        """The copula samples v [S, K, ...] of every Bernoulli: weights first (pair order; [S, K,
        out, in] shared, [S, K, N, out, in] per point), then states (layer order; [S, K, N, n]),
        from i.i.d. uniforms of ``generator`` through ``dirichlet_copula``."""
        m, N, K = problem.model, problem.n_points, self.params["k"]
        lead = (n_draws, K, N) if self.per_point else (n_draws, K)
        weights = [
            dirichlet_copula(uniforms((*lead, *W.shape), generator, problem.X), K)
            if kind == "bernoulli"
            else None
            for W, kind in zip(m.params, m.kinds, strict=True)
        ]
        states = [
            None
            if m.noise is None
            else dirichlet_copula(uniforms((n_draws, K, N, n), generator, problem.X), K)
            for n in m.widths
        ]
        return Uniforms(weights, states)

    def _draw(
        self, problem: WeightProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        return self.estimate(problem, self.copula_noise(problem, n_draws, generator))

    @abstractmethod
    def sample_uniforms(self, v: Tensor, p: Tensor, q: Tensor) -> Tensor:
        """The uniforms u_i of the K samples (on iff u_i < p) from the copula's v_i."""

    @abstractmethod
    def logit_gradient(
        self, f: Tensor, bits: Tensor, p: Tensor, q: Tensor, density: Tensor, logistic: bool
    ) -> Tensor:
        """The gradient wrt theta (p = F(theta), q = F(-theta), density = F'(theta)) of a group
        from the K branches' losses f (broadcastable to ``bits``) and bits [S, K, *group]; p, q
        and density have the shape of one sample, [S, *group] or broadcastable to it.
        ``logistic``: phi = theta (no chain factor)."""

    # ---- the estimate ----------------------------------------------------------------------

    def estimate(self, problem: WeightProblem, noise: Uniforms) -> Tensor:
        """[S, P] estimates from the copula samples v (``copula_noise``'s layout)."""
        m = problem.model
        per_point = self.per_point
        # Weights: their p is fixed, so the sample uniforms and bits are known at once.
        w_uniforms: list[Tensor | None] = []
        w_bits: list[Tensor | None] = []
        for k, v in enumerate(noise.weights):
            if v is None:
                w_uniforms.append(None)
                w_bits.append(None)
                continue
            p, q = m.probs(k)
            u = self.sample_uniforms(v, p, q)
            w_uniforms.append(u)
            w_bits.append(base_bits(u, p))
        # States: their P(on) depends on the base path's upstream, so the base path is walked
        # layer by layer and each layer's K samples drawn with the base upstream's P(on).
        s_uniforms: list[Tensor | None] = [None] * m.depth
        s_bits: list[Tensor | None] = [None] * m.depth

        def rule(k: int, a: Tensor, on: Tensor, off: Tensor) -> Tensor:
            v = noise.states[k]
            if v is None:  # sign activation: deterministic
                return on
            shape = v[:, 0].shape
            u = self.sample_uniforms(v, on.expand(shape)[:, None], off.expand(shape)[:, None])
            s_uniforms[k] = u
            bits = base_bits(u, on.expand(shape)[:, None])
            s_bits[k] = bits
            return bits[:, 0]

        base_wbits = [None if b is None else b[:, 0] for b in w_bits]
        base = walk(problem, base_wbits, per_point, rule)
        f_base = m.head.loss(base.z, problem.Y)  # [S, N]
        # The base path's uniforms (sample 1 of every group), with a branch dimension of 1.
        crn = Uniforms(
            [None if u is None else u[:, :1] for u in w_uniforms],
            [None if u is None else u[:, :1] for u in s_uniforms],
        )

        def losses(group: str, k: int, bits: Tensor) -> Tensor:
            """[S, K, N]: the base path's losses, then those of branches 2..K."""
            path = path_from_uniforms(problem, crn, per_point, branch=(group, k, bits[:, 1:]))
            return torch.cat((f_base[:, None], m.head.loss(path.z, problem.Y)), 1)

        pairs: list[LayerGrad] = []
        for k in range(m.depth):
            g_a = torch.zeros_like(base.a[k])
            bits = s_bits[k]
            if bits is not None and m.noise is not None:
                a, on, off = base.a[k], base.on[k], base.off[k]
                f = losses("states", k, bits)[..., None]  # [S, K, N, 1]
                density = m.noise.pdf_given(a, on)
                logistic = m.noise.name == "logistic"
                g_a = self.logit_gradient(f, bits, on, off, density, logistic)
            wbits = w_bits[k]
            if m.kinds[k] == "bernoulli":
                assert wbits is not None
                p, q = m.probs(k)
                f = losses("weights", k, wbits)  # [S, K, N]
                # Shared weights: the data's mean loss; per point: each point's own.
                f = f[..., None, None] if per_point else f.mean(-1)[..., None, None]
                g = self.logit_gradient(f, wbits, p, q, m.weight_density(k), m.logistic_weights)
                dtheta = g.mean(-3) if per_point else g
            else:
                dtheta = outer(g_a, base.inputs[k], False)
            pairs.append((dtheta, g_a.mean(-2)))
        pairs.append(head_grad(problem, base, False))
        return flatten(pairs)


class WeightARMS(_MultiSampleEstimator):
    """ARMS (antithetic REINFORCE multi-sample, Dirichlet copula) per Bernoulli group: the weights
    of each Bernoulli pair and the units of each stochastic layer, wrt eta.

    Per Bernoulli (weight W_ji with p = F_w(eta), or unit with p = F(a)) K copula samples, flipped
    for p >= 1/2 so that the minority state lies on the copula's lower tail: u_i = v_i if p < 1/2
    else 1 - v_i, b_i = 1[u_i < p]; with m = min(p, 1 - p) and J_K(m) = P(b_i = b_j = 1) of two
    copula samples with P(on) = m (``arms_joint``),

        g_theta = F'(theta) / (m - J_K(m)) * (1/(K-1)) sum_i (f_i - fbar) (b_i - p),

    theta = eta (F = F_w, F'(eta) = p q for the logistic weight noise, i.e. g_phi = p q / (m - J_K)
    (...) for the logit phi = eta) or the unit's pre-activation a; 0 where m - J_K(m) = 0 (a
    deterministic weight, a saturated unit). The copula, flip and debiasing factor are those of
    the sbn kind's ``arms`` (module docstring: groups, branches, common random numbers and why
    each group is unbiased). K = 2 is ``weight-disarm`` (v_2 = 1 - v_1: the antithetic pair,
    J_2(m) = 0, and the weight F'/(2m) (f_1 - f_2)(b_1 - b_2)); independent samples would give the
    leave-one-out REINFORCE.
    Claim: unbiased in every layer ("yes"). Cost: 1 + (K - 1) (#Bernoulli pairs + #stochastic
    layers) loss evaluations per draw, no backward pass.
    Reference: Dimitriev & Zhou, "ARMS: antithetic-REINFORCE-multi-sample gradient for binary
    variables", ICML 2021, arXiv 2105.14141 (id checked); the formula as the sbn ``arms`` (checked
    there against alekdimi/arms ``networks.py`` 'arms'); the per-group form for weights is ours
    [derived], as for ``weight-arm``.
    """

    name = "weight-arms"
    reference = "Dimitriev & Zhou, ICML 2021, arXiv 2105.14141"
    verified = (
        "exact: the mean over every joint K-bit pattern of the weights' copulas (K = 3; "
        "exchangeable, pmf from the copula's count distribution) = dJ/dη to 1e-12 on a "
        "sign-activation network with p on both sides of ½; K = 2 equals `weight-disarm` on the"
        " same uniforms (sign activations, both modes); equals `weight-carms` draw for draw "
        "when every p < ½; statistically unbiased (per-coordinate z, Bonferroni, false-fail "
        "rate 1e-3; both modes, logistic, gaussian and uniform activations, hard-sigmoid "
        "weights); negative control: the copula not flipped for p ≥ ½ fails the exact test"
    )
    tests = ("tests/test_weights_multisample.py",)

    def sample_uniforms(self, v: Tensor, p: Tensor, q: Tensor) -> Tensor:
        return torch.where(p >= 0.5, 1 - v, v)

    def logit_gradient(
        self, f: Tensor, bits: Tensor, p: Tensor, q: Tensor, density: Tensor, logistic: bool
    ) -> Tensor:
        K = bits.shape[1]
        # sum_i (f_i - fbar)(b_i - p) = sum_i (f_i - fbar) b_i: the p term sums to zero
        s = ((f - f.mean(1, keepdim=True)) * bits).sum(1) / (K - 1)
        low = torch.minimum(p, q)
        den = low - arms_joint(low, K)
        ok = den > 0
        return torch.where(ok, density / torch.where(ok, den, 1.0), 0.0) * s


class WeightCARMS(_MultiSampleEstimator):
    """CARMS (Dimitriev & Zhou, NeurIPS 2021), binary case, per Bernoulli group: the weights of
    each Bernoulli pair and the units of each stochastic layer, wrt eta.

    Per Bernoulli K jointly antithetic samples from the Dirichlet copula in the authors' fixed
    category order (on iff v_i < p, no flip) and the leave-one-out REINFORCE estimator made
    unbiased by importance weights of each pair of samples,

        g_phi = 1/(K (K-1)) sum_{i != j} r(b_i, b_j) (f_i - f_j) (b_i - p),
        r(c, c') = P(c) P(c') / P2(c, c'),

    with P2 the bivariate pmf of two copula samples (``copula_pair_pmf``; r = 0 for a pair of
    probability 0) and b_i - p the score of the on-logit phi; g_eta = g_phi F_w'(eta) / (p q)
    for a weight (phi = eta, factor 1, for the logistic weight noise; 0 for a deterministic
    weight), g_a = g_phi F'(a) / (F(a) F(-a)) for a unit (factor 1 for logistic noise). As in the
    sbn ``carms`` the pairwise sum is computed as the paper writes it, and its binary reduction
    (only mixed pairs count, r = p q / (p - C(p, p))) makes it ``weight-arms`` whenever every
    Bernoulli has p < 1/2 (tests: equal draws); with p > 1/2 the authors' order keeps "on" on the
    copula's lower tail and it differs from ARMS (another variance, the same mean). K = 2 is
    ``weight-disarm`` for every p (r = max(p, q)). Groups, branches, common random numbers and
    why each group is unbiased: module docstring.
    Claim: unbiased in every layer ("yes"). Cost: 1 + (K - 1) (#Bernoulli pairs + #stochastic
    layers) loss evaluations per draw, no backward pass.
    Reference: Dimitriev & Zhou, "CARMS: categorical-antithetic-REINFORCE multi-sample gradient
    estimator", NeurIPS 2021, arXiv 2110.14002; the formula as the sbn ``carms`` (checked there
    against the authors' code alekdimi/carms, ``vae.py`` ``CategoricalVAE.matrix_grad`` and
    ``copulas.Dirichlet``). UNVERIFIED: the paper's equation numbers (its text could not be read;
    as for ``carms``). The per-group form for weights is ours [derived], as for ``weight-arm``.
    """

    name = "weight-carms"
    reference = "Dimitriev & Zhou, NeurIPS 2021, arXiv 2110.14002; alekdimi/carms"
    verified = (
        "exact: the mean over every joint K-bit pattern of the weights' copulas (K = 3; "
        "exchangeable, pmf from the copula's count distribution) = dJ/dη to 1e-12 on a "
        "sign-activation network with p on both sides of ½; equals `weight-arms` draw for draw "
        "when every p < ½ (weights and logistic units), not otherwise; K = 2 equals "
        "`weight-disarm` on the same uniforms (stochastic activations, both modes); "
        "statistically unbiased (per-coordinate z, Bonferroni, false-fail rate 1e-3; K = 4 and "
        "3, both modes, logistic, gaussian and uniform activations, hard-sigmoid weights); "
        "negative control: the importance weights dropped (r = 1) fail the exact and the z-test"
    )
    tests = ("tests/test_weights_multisample.py",)

    def sample_uniforms(self, v: Tensor, p: Tensor, q: Tensor) -> Tensor:
        return v

    def pair_ratios(self, bits: Tensor, p: Tensor, q: Tensor) -> Tensor:
        """r(b_i, b_j) = P(b_i) P(b_j) / P2(b_i, b_j) for bits [S, K, *group] and p, q of one
        sample: [S, K, K, *group] (the diagonal unused); 0 where P2 = 0."""
        K = bits.shape[1]
        p11, p10, p00 = (t[:, None, None] for t in copula_pair_pmf(p, K))
        p, q = p[:, None, None], q[:, None, None]
        bi, bj = bits[:, :, None], bits[:, None, :]
        joint = torch.where(bi == bj, torch.where(bi == 1, p11, p00), p10)
        marg = torch.where(bi == 1, p, q) * torch.where(bj == 1, p, q)
        ok = joint > 0
        return torch.where(ok, marg / torch.where(ok, joint, 1.0), 0.0)

    def logit_gradient(
        self, f: Tensor, bits: Tensor, p: Tensor, q: Tensor, density: Tensor, logistic: bool
    ) -> Tensor:
        K = bits.shape[1]
        one = bits[:, 0].shape
        p, q = p.expand(one), q.expand(one)
        r = self.pair_ratios(bits, p, q)  # [S, K, K, *group]
        diff = f[:, :, None] - f[:, None, :]  # f_i - f_j
        off = ~torch.eye(K, dtype=torch.bool, device=bits.device)
        off = off.reshape(1, K, K, *([1] * (bits.dim() - 2)))
        pair = torch.where(off, r * diff, 0.0).sum(2)  # sum_j, [S, K, *group]
        g_phi = ((bits - p[:, None]) * pair).sum(1) / (K * (K - 1))
        return g_phi if logistic else g_phi * logit_scale(density, p, q)
