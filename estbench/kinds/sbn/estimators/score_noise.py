"""Score-function family, noise estimators: unbiased estimators built on d log P(path) / d theta
that also use auxiliary noise -- coupled branches, common random numbers downstream, copulas,
conditional relaxed noise (spec §2, §4.6): RLOO, ARM, DisARM, ARMS, Tokui-Sato, REBAR.

Each is a deterministic function ``estimate(problem, noise)`` of U(0, 1) tensors drawn by
``sample_noise`` (``NoiseEstimator``), which lets tests integrate an estimator over its noise by
quadrature. The path estimators of the family (REINFORCE, MuProp, LEG), whose only randomness is
the sampled path, are in ``score.py``; the conventions of both are stated there.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Estimator, Hyper
from ...layered_estimators import ARMPairs, DisARMPairs, PairEstimator, backprop, logit_scale
from ..model import SBN, Problem, coding_scale, encode
from .ops import (
    Contribution,
    Path,
    assemble,
    first_preactivation,
    flip_bits,
    head_grad,
    last_layer_local_expectation,
    layer_terms,
    point_losses,
    preactivation,
    propagate,
    uniform_path,
    uniforms,
)


class NoiseEstimator(Estimator[Problem, SBN]):
    """An estimator that is a deterministic function of U(0, 1) noise.

    ``noise_shapes(problem)`` lists the per-draw shapes of the uniform tensors; ``sample_noise``
    draws them from the generator ([S, *shape] each, in list order) and ``estimate(problem,
    noise)`` maps them to [S, P] draws. A test may pass its own noise (e.g. quadrature nodes) to
    ``estimate`` to compute moments by integration instead of sampling.
    """

    family = "score-function"

    @abstractmethod
    def noise_shapes(self, problem: Problem) -> list[tuple[int, ...]]:
        """Per-draw shapes of the uniform noise tensors."""

    @abstractmethod
    def estimate(self, problem: Problem, noise: Sequence[Tensor], context: Any = None) -> Tensor:
        """[S, P] estimates from uniform noise tensors [S, *shape]."""

    def sample_noise(
        self, problem: Problem, n_draws: int, generator: torch.Generator
    ) -> list[Tensor]:
        return [
            uniforms((n_draws, *shape), generator, problem.X)
            for shape in self.noise_shapes(problem)
        ]

    def _draw(
        self, problem: Problem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        return self.estimate(problem, self.sample_noise(problem, n_draws, generator), context)


def _layer_shapes(problem: Problem, *lead: int) -> list[tuple[int, ...]]:
    return [(*lead, problem.n_points, n) for n in problem.model.widths]


class RLOO(NoiseEstimator):
    """REINFORCE with the leave-one-out baseline (RLOO / LOORF), K i.i.d. paths per data point.

        g = (1/K) sum_i (f_i - (1/(K-1)) sum_{j != i} f_j) s_i = (1/(K-1)) sum_i (f_i - fbar) s_i

    per binary layer, with s_i the scores along path i (sampled upstream, P3), and the head's
    pathwise gradient averaged over the K paths. The baseline of path i uses only the other,
    independent paths, so it is unbiased for any f and depth; dividing by K instead of K - 1
    (pitfall P4) gives mean (K-1)/K g. Requires only f on the cube. Cost: K loss evaluations per
    draw (compare with the mean of K REINFORCE draws at equal cost).
    References: Kool, van Hoof & Welling, "Buy 4 REINFORCE samples, get a baseline for free!",
    ICLR 2019 workshop; Salimans & Knowles, arXiv 1401.1022 (2014; id checked: "On using control
    variates with stochastic approximation for variational Bayes..."). Formula checked against
    alekdimi/arms ``loorf`` (mean over samples of (f - fbar)(b - p) K/(K-1)).
    """

    name = "rloo"
    unbiased = "yes"
    reference = "Kool, van Hoof & Welling, ICLR 2019 workshop (LOORF); Salimans & Knowles 2014"
    verified = (
        "toy: exact mean and variance by enumerating the K uniforms (§5.1 closed form, Var RLOO "
        "K = 4 anchors); statistically unbiased; negative control: dividing by K instead of K − "
        "1 (pitfall P4)"
    )
    tests = ("tests/test_score_estimators.py",)
    hyperparameters = {
        "k": Hyper(4, int, minimum=2, help="paths per data point (K >= 2)"),
    }

    def evals_per_draw(self, model: SBN) -> float:
        return float(self.params["k"])

    def bytes_per_draw(self, problem: Problem) -> int:
        return (self.params["k"] + 1) * super().bytes_per_draw(problem)

    def noise_shapes(self, problem: Problem) -> list[tuple[int, ...]]:
        return _layer_shapes(problem, self.params["k"])

    def loo_divisor(self, K: int) -> float:
        """The normaliser of sum_i (f_i - fbar) s_i: K - 1 (the leave-one-out mean)."""
        return K - 1.0

    def estimate(self, problem: Problem, noise: Sequence[Tensor], context: Any = None) -> Tensor:
        K = self.params["k"]
        path = uniform_path(problem, noise)  # batch [S, K]
        f = point_losses(problem, path.z)  # [S, K, N]
        signal = ((f - f.mean(1, keepdim=True)) / self.loo_divisor(K))[..., None]
        logit_grads = [signal * s for s in path.scores(problem)]
        terms = layer_terms(path, logit_grads, head_grad(problem, path.z) / K)
        return assemble(problem, terms, per_point=False).sum(1)


class _PairEstimator(PairEstimator, NoiseEstimator):
    """Per-layer antithetic pairs (ARM, DisARM; ``layered_estimators.PairEstimator``): a base path
    with uniforms u_k (on iff u < F(a)); for each binary layer k the pair b1 = 1[u_k > 1 - F(a_k)],
    b2 = 1[u_k < F(a_k)] (= the base bits) at the base path's upstream, each propagated to the
    loss; the layer's logit gradient is (f1 - f2) * ``pair_weight``. Downstream noise
    (``downstream``): ``crn`` reuses the base uniforms u_{>k} for both branches, so branch 2 is
    the base path (L + 1 loss evaluations); ``fresh`` gives both branches of every hidden layer
    independent new uniforms (2L)."""

    hyperparameters = {
        "downstream": Hyper(
            "crn",
            str,
            choices=("crn", "fresh"),
            help="noise below each branched layer: the base path's uniforms (common random "
            "numbers, L+1 evaluations) or fresh independent uniforms per branch (2L)",
        ),
    }

    def evals_per_draw(self, model: SBN) -> float:
        L = model.depth
        return float(L + 1 if self.params["downstream"] == "crn" else 2 * L)

    def bytes_per_draw(self, problem: Problem) -> int:
        return 4 * super().bytes_per_draw(problem)

    def noise_shapes(self, problem: Problem) -> list[tuple[int, ...]]:
        shapes = _layer_shapes(problem)
        if self.params["downstream"] == "fresh":
            widths = problem.model.widths
            for k in range(len(widths)):
                shapes += [(2, problem.n_points, widths[j]) for j in range(k + 1, len(widths))]
        return shapes

    def estimate(self, problem: Problem, noise: Sequence[Tensor], context: Any = None) -> Tensor:
        m = problem.model
        L = m.depth
        us = list(noise[:L])
        fresh = iter(noise[L:])
        path = uniform_path(problem, us)
        f_base = point_losses(problem, path.z)
        logit_grads = []
        for k in range(L):
            a, p, u = path.a[k], path.p[k], us[k]
            q = 1 - p
            b1, b2 = self.pair(u, p, q)
            if self.params["downstream"] == "fresh" and k < L - 1:
                down: list[Tensor | None] = [None] * (k + 1)
                down += [next(fresh) for _ in range(k + 1, L)]  # [S, 2, N, n_j]: one per branch
                x = encode(torch.stack((b1, b2), 1), m.coding)  # [S, 2, N, n]
                f12 = point_losses(problem, propagate(problem, k, x, down))
                f1, f2 = f12[:, 0], f12[:, 1]
            else:
                f1 = point_losses(problem, propagate(problem, k, encode(b1, m.coding), us))
                if self.branch2_is_base:
                    f2 = f_base
                else:
                    f2 = point_losses(problem, propagate(problem, k, encode(b2, m.coding), us))
            # The weight for a: logistic noise has logit phi = a (no density); other noise gives
            # its density F'(a) and q = F(-a), accurate in the tail (the pair above keeps 1 - p,
            # with which these draws were always made).
            density = None
            if m.noise.name != "logistic":
                q, density = m.noise.cdf(-a), m.noise.pdf(a)
            w = self.pair_weight(u, p, q, b1, b2, density)
            logit_grads.append(self.unit_gradient(f1 - f2, w))
        terms = layer_terms(path, logit_grads, head_grad(problem, path.z))
        return assemble(problem, terms, per_point=False)


class ARM(ARMPairs, _PairEstimator):
    """ARM (Augment-REINFORCE-Merge), per layer with the base path's upstream (spec §2.2).

    With the base path drawn from uniforms u_k (unit on iff u < F(a)), for every binary layer k:
    b1 = 1[u_k > 1 - F(a_k)], b2 = 1[u_k < F(a_k)] (= the base bits), both with the base path's
    upstream x_{<k}, each propagated to the loss, and

        g_{a_k} = F'(a_k) / (p (1 - p)) * (f(b1) - f(b2)) * (u_k - 1/2),   p = F(a_k)

    (for logistic noise the factor is 1: the ARM of Yin & Zhou; for other noise the chain rule
    through logit p, spec §2.2 [derived]). Not the complement pair (1[u > 1-p], 1[u < 1-p]),
    which is biased for n > 1 (pitfall P7). Per layer, E[. | x_{<k}] is ARM's single-layer
    identity applied to h(x_k) = E[f | x_k, x_{<k}]; downstream noise independent of u_k keeps
    E[f_i | u_k] = h(b_i), so every layer is unbiased and so is the sum.

    ``downstream=crn`` (default): both branches reuse the base path's u_{>k}; branch 2 is then the
    base path itself, so f2 = f(base) for all k: L + 1 loss evaluations per draw, O(L^2) layer
    evaluations. ``downstream=fresh``: each branch of a hidden layer gets independent new uniforms
    below layer k (2L evaluations); the last layer has no downstream noise. Both are unbiased
    (spec §2.2: CRN had lower variance). Requires only f on the cube.
    Reference: Yin & Zhou, ICLR 2019, arXiv 1807.11143; pair as in Yin's ARM-gradient and
    google-research disarm (spec §2.2 [code]; also alekdimi/arms 'arm', checked here).
    """

    name = "arm"
    reference = "Yin & Zhou, ICLR 2019, arXiv 1807.11143"
    verified = (
        "toy: exact mean and variance by Gauss-Legendre quadrature over u (§5.1 closed form, "
        "Var ARM anchors); statistically unbiased (gaussian/uniform noise, softmax/mse heads), "
        "`downstream` crn and fresh; negative control: the complement pair (pitfall P7)"
    )
    tests = ("tests/test_score_estimators.py",)


class DisARM(DisARMPairs, _PairEstimator):
    """DisARM (= U2G): ARM with the augmentation noise integrated out (spec §2.3).

    The same per-layer pairs and branches as ``arm``, with the weight

        g_{a_kj} = F'(a) / (2 min(p, 1-p)) * (f(b1) - f(b2)) * (b1_j - b2_j),

    which for logistic noise is (1/2)(f1 - f2)(b1 - b2) sigmoid(|a|) (Dong, Mnih & Tucker; the U2G
    form (f1 - f2)(b1 - b2) max(p, 1-p) / 2 of Yin et al. is identical). In +-1 terms
    (b1 - b2) = (x1 - x2)/2. A layer's gradient is exactly 0 whenever b1 = b2 for all its units
    (pitfall P8). Unbiased for any f at any depth, per layer like ARM; ``downstream`` as for ARM
    (crn: L + 1 loss evaluations, fresh: 2L). Requires only f on the cube.
    References: Dong, Mnih & Tucker, NeurIPS 2020, arXiv 2006.10680; Yin, Ho, Yan, Qian & Zhou,
    arXiv 2006.06448 (U2G). Formula as in google-research disarm and alekdimi/arms 'disarm'
    ((-1)^{b2} 1[b1 != b2] sigmoid(|phi|) / 2, checked here).
    """

    name = "disarm"
    reference = "Dong, Mnih & Tucker, NeurIPS 2020, arXiv 2006.10680 (= U2G, arXiv 2006.06448)"
    verified = (
        "toy: exact mean and variance by quadrature (§5.1 closed form, Var DisARM anchors); "
        "statistically unbiased"
    )
    tests = ("tests/test_score_estimators.py",)


def arms_joint(m: Tensor, K: int) -> Tensor:
    """J_K(m) = P(b_i = b_j = 1) of two of K Dirichlet-copula samples with P(on) = m <= 1/2:
    max(2 m^{1/(K-1)} - 1, 0)^{K-1} (spec §2.4; alekdimi/arms ``bivariate``)."""
    return (2 * m ** (1.0 / (K - 1)) - 1).clamp_min(0) ** (K - 1)


class ARMS(NoiseEstimator):
    """ARMS (antithetic REINFORCE multi-sample) with the Dirichlet copula, per layer (spec §2.4).

    K mutually antithetic samples of each unit of a layer: e_i ~ Exp(1), d_i = e_i / sum e,
    v_i = (1 - d_i)^{K-1} ~ U(0, 1) (negatively dependent), u_i = v_i if p < 1/2 else 1 - v_i,
    b_i = 1[u_i < p], and with m = min(p, 1-p), J_K the pair probability (``arms_joint``),

        g_{a_kj} = F'(a) / (m - J_K(m)) * (1/(K-1)) sum_i (f_i - fbar) (b_ij - p)

    (logistic: the factor p(1-p) / (p - P(b_i = b_j = 1)) of alekdimi/arms. For p >= 1/2 the
    samples are complements of copula samples c_i with P(on) = m = 1 - p, so P(b_i = b_j = 1) =
    1 - 2m + J_K(m) and p - P(b_i = b_j = 1) = m - J_K(m) again; the copula is not symmetric
    under u -> 1 - u, so J_K(p) itself is not 2p - 1 + J_K(1 - p), which is why the samples
    are flipped.) K = 2 is DisARM; independent samples give RLOO.

    Deep form (per layer, like ARM): the base path uses sample i = 0 of each layer's copula
    (its uniform u_{k,0} is U(0, 1) given the upstream); for each layer k the K samples b_{k,i}
    share the base upstream x_{<k}, and all branches use the base path's uniforms u_{j,0} below
    (common random numbers), so branch 0 is the base path itself. Downstream uniforms are U(0, 1)
    and independent of layer k's copula given everything above, hence E[f_i | copula] =
    E[f | x_k = b_i, x_{<k}] and the single-layer identity gives unbiasedness per layer.
    Requires only f on the cube. Cost: 1 + (K-1) L loss evaluations per draw.
    Reference: Dimitriev & Zhou, ICML 2021, arXiv 2105.14141 (id checked); formula checked
    against alekdimi/arms ``networks.py`` 'arms' (copula, flip at p < 1/2, J_K, debias factor).
    The spec had not checked the deep per-layer form.
    """

    name = "arms"
    unbiased = "yes"
    reference = "Dimitriev & Zhou, ICML 2021, arXiv 2105.14141"
    verified = (
        "J_K against a simulation of the copula; K = 2 reproduces DisARM's exact toy variance; "
        "toy mean (and variance against the exact count distribution) by Monte Carlo at K = 4; "
        "the deep per-layer form statistically unbiased (both codings, three noises)"
    )
    tests = ("tests/test_score_estimators.py",)
    hyperparameters = {
        "k": Hyper(4, int, minimum=2, help="coupled samples per unit and layer (K >= 2)"),
    }

    def evals_per_draw(self, model: SBN) -> float:
        return 1.0 + (self.params["k"] - 1) * model.depth

    def bytes_per_draw(self, problem: Problem) -> int:
        return (self.params["k"] + 2) * super().bytes_per_draw(problem)

    def noise_shapes(self, problem: Problem) -> list[tuple[int, ...]]:
        return _layer_shapes(problem, self.params["k"])

    def estimate(self, problem: Problem, noise: Sequence[Tensor], context: Any = None) -> Tensor:
        m = problem.model
        K = self.params["k"]
        L = m.depth
        # The copula's uniforms v [S, K, N, n] per layer (independent of the path). log1p(-c) is
        # -Exp(1); the sign cancels in d = e / sum e.
        copula = []
        for c in noise:
            e = torch.log1p(-c)
            copula.append((1 - e / e.sum(1, keepdim=True)) ** (K - 1))
        # Base path along sample 0 of every layer. With low = min(p, 1-p): for p < 1/2,
        # b = 1[v < p]; for p >= 1/2, u = 1 - v and b = 1[1 - v < p] = not 1[v < 1 - p].
        a = first_preactivation(problem).expand(copula[0][:, 0].shape)
        xs: list[Tensor]
        bits, xs, As, ps, lows, samples, base_u = [], [], [], [], [], [], []
        for k in range(L):
            if k > 0:
                a = preactivation(problem, k, xs[-1])
            p = m.noise.cdf(a)
            q = 1 - p if m.noise.name == "logistic" else m.noise.cdf(-a)
            low, high = torch.minimum(p, q), p >= 0.5
            v = copula[k]
            b_all = ((v < low[:, None]) != high[:, None]).to(a.dtype)  # [S, K, N, n]
            samples.append(b_all)
            base_u.append(torch.where(high, 1 - v[:, 0], v[:, 0]))
            bits.append(b_all[:, 0])
            xs.append(encode(bits[-1], m.coding))
            As.append(a)
            ps.append(p)
            lows.append(low)
        path = Path(bits, xs, As, ps, [problem.X, *xs], preactivation(problem, L, xs[-1]))
        f_base = point_losses(problem, path.z)  # [S, N]
        down = [t[:, None] for t in base_u]  # common random numbers for all K branches
        logit_grads = []
        for k in range(L):
            b_all, p, low = samples[k], ps[k], lows[k]
            x_other = encode(b_all[:, 1:], m.coding)  # [S, K-1, N, n]
            f_other = point_losses(problem, propagate(problem, k, x_other, down))  # [S, K-1, N]
            f = torch.cat((f_base[:, None], f_other), 1)  # [S, K, N]
            centred = (f - f.mean(1, keepdim=True))[..., None]
            # sum_i (f_i - fbar)(b_i - p) = sum_i (f_i - fbar) b_i: the p term sums to zero
            s = (centred * b_all).sum(1) / (K - 1)  # [S, N, n]
            den = low - arms_joint(low, K)
            ok = den > 0
            w = torch.where(ok, m.noise.pdf_given(As[k], p) / torch.where(ok, den, 1.0), 0.0)
            logit_grads.append(w * s)
        terms = layer_terms(path, logit_grads, head_grad(problem, path.z))
        return assemble(problem, terms, per_point=False)


class TokuiSato(NoiseEstimator):
    """Tokui & Sato's discrete reparameterization: local expectations with common random numbers.

    Sample the path with uniforms u (on iff u < F(a)). For every binary layer k and unit j, set
    x_kj on and off (one of them is the sample), recompute layers k+1..L with the *same* u_{>k},
    and take

        g_{a_kj} = F'(a_kj) (f(x_kj on) - f(x_kj off)).

    With the noise u_{>k} fixed the downstream path is a deterministic function of x_k (the
    reparameterization), so E[f | x_kj = s, x_{k,-j}, x_{<k}] is what each evaluation estimates
    and g is the local expectation of unit j: unbiased for any f at any depth (spec §4.6).
    Requires only f on the cube. Cost: 1 + sum_k n_k loss evaluations (partial passes from layer
    k+1; the last layer's flips are rank-1 head updates).
    Reference: Tokui & Sato, "Evaluating the variance of likelihood-ratio gradient estimators",
    ICML 2017 (PMLR 70); arXiv 1611.01239. Checked against beam2d/sbn
    ``compute_reparameterized_local_expectation`` (flips, downstream with the same noise,
    gradient through q(z_j) (vb - vb_flipped)).
    """

    name = "tokui-sato"
    unbiased = "yes"
    reference = "Tokui & Sato, ICML 2017 (PMLR 70:3414-3423), arXiv 1611.01239"
    verified = (
        "toy: deterministic (zero variance); statistically unbiased (both codings, three noises)"
    )
    tests = ("tests/test_score_estimators.py",)

    def evals_per_draw(self, model: SBN) -> float:
        return 1.0 + sum(model.widths)

    def bytes_per_draw(self, problem: Problem) -> int:
        return (2 + max(problem.model.widths)) * super().bytes_per_draw(problem)

    def noise_shapes(self, problem: Problem) -> list[tuple[int, ...]]:
        return _layer_shapes(problem)

    def estimate(self, problem: Problem, noise: Sequence[Tensor], context: Any = None) -> Tensor:
        m = problem.model
        path = uniform_path(problem, noise)
        f = point_losses(problem, path.z)
        pdf = path.pdf(problem)
        logit_grads = []
        for k in range(m.depth - 1):
            flipped = flip_bits(path.bits[k])  # [n_k, S, N, n_k]
            f_flip = point_losses(problem, propagate(problem, k, encode(flipped, m.coding), noise))
            diff = (2 * path.bits[k] - 1) * (f[..., None] - f_flip.movedim(0, -1))
            logit_grads.append(pdf[k] * diff)
        logit_grads.append(last_layer_local_expectation(problem, path, f))
        terms = layer_terms(path, logit_grads, head_grad(problem, path.z))
        return assemble(problem, terms, per_point=False)


class REBAR(NoiseEstimator):
    """REBAR with a fixed surrogate (eta, tau; no training), joint deep form (spec §2.5 (i)).

    Hard path: uniforms u_k, noise eps_k = F^{-1}(u_k), unit on iff a_k + eps_k > 0, i.e.
    u_k > 1 - F(a_k) (the REBAR convention z = a + logit u; the relaxed noise is coupled to the
    hard sample through the same u -- pitfall P2). Relaxed paths, with r(y) = sigmoid(y / tau)
    for {0,1} states and 2 sigmoid(y / tau) - 1 for +-1 states:

    * soft: x~_k = r(a_k(x~_{k-1}) + eps_k);
    * conditional: x~'_k = r(a_k(x~'_{k-1}) + eps~_k), eps~_k ~ eps | hard bit, from uniforms
      v_k and the *hard* logits: eps~ = -F^{-1}(F(a)(1 - v)) if on, F^{-1}(F(-a) v) if off.

    With c = eta l(x~_L) and c~ = eta l(x~'_L):

        g = [f(x_L) - c~] sum_k d log P(x_k | x_{k-1}) + d c - d c~,

    where d c is the pathwise gradient with u fixed and d c~ the total derivative with the hard
    bits and v fixed, including d eps~_k / d a_k = -F'(a)(1 - v) / F'(eps~) (on) or
    -F'(a) v / F'(eps~) (off) through the hard logits. This is RELAX's identity for the
    surrogate c(z, theta) of z_k = a_k(x_{k-1}) + eps_k, whose law given the hard path factorises
    per layer, so it is unbiased for any fixed eta, tau and any noise. The head gets the pathwise
    gradient of the hard path (the control-variate terms have zero mean there). Requires the
    head and layers to accept real inputs for the surrogate (not for unbiasedness). The relaxation
    uses sigmoid for every noise; uniforms are clamped to [eps, 1 - eps] (float eps) so that
    F^{-1} stays finite (bias < 1e-15). Cost: 1 hard + 2 relaxed loss evaluations, 2 backward
    passes through the relaxed network.
    References: Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein, NeurIPS 2017, arXiv 1703.07370;
    Grathwohl et al. (RELAX), ICLR 2018, arXiv 1711.00123; conditional sampling as in the RELAX
    tex and tensorflow/models research/rebar (spec §2.5 [code]); the joint deep form is [derived]
    in the spec and re-derived here.
    """

    name = "rebar"
    unbiased = "yes"
    reference = "Tucker et al., NeurIPS 2017, arXiv 1703.07370 (fixed surrogate, joint deep form)"
    verified = (
        "toy: mean = g by 2-D Gauss-Legendre quadrature over (u, v) for several θ, τ, η; "
        "statistically unbiased (both codings, three noises, softmax/mse/logistic heads)"
    )
    tests = ("tests/test_score_estimators.py",)
    hyperparameters = {
        "tau": Hyper(0.5, float, minimum=0.0, exclusive=True, help="relaxation temperature"),
        "eta": Hyper(1.0, float, help="scale of the control variate eta f(relaxed)"),
    }

    def evals_per_draw(self, model: SBN) -> float:
        return 3.0

    def bytes_per_draw(self, problem: Problem) -> int:
        return 5 * super().bytes_per_draw(problem)

    def noise_shapes(self, problem: Problem) -> list[tuple[int, ...]]:
        return _layer_shapes(problem) * 2  # u_1..u_L, then v_1..v_L

    def estimate(self, problem: Problem, noise: Sequence[Tensor], context: Any = None) -> Tensor:
        m = problem.model
        L, F = m.depth, m.noise
        tau, eta = self.params["tau"], self.params["eta"]
        step = coding_scale(m.coding)
        eps = torch.finfo(problem.X.dtype).eps
        us = [u.clamp(eps, 1 - eps) for u in noise[:L]]
        vs = [v.clamp(eps, 1 - eps) for v in noise[L:]]

        def relax(y: Tensor) -> tuple[Tensor, Tensor]:
            s = torch.sigmoid(y / tau)
            x = s if m.coding == "01" else 2 * s - 1
            return x, step * s * (1 - s) / tau  # value and d x / d y

        xs: list[Tensor]
        bits, xs, As, ps, scores, deps = [], [], [], [], [], []
        soft_x, soft_D, cond_x, cond_D = [], [], [], []
        a = first_preactivation(problem).expand(us[0].shape)
        x_soft = x_cond = problem.X
        for k in range(L):
            if k > 0:
                a = preactivation(problem, k, xs[-1])
            p, q = F.cdf(a), F.cdf(-a)
            b = (us[k] > q).to(a.dtype)
            on = b == 1
            # Conditional noise given the hard bit, from the tail mass next to -a:
            # eps~ = -F^{-1}(w) if on, F^{-1}(w) if off, with w = p (1 - v) or q v.
            w = torch.where(on, p * (1 - vs[k]), q * vs[k]).clamp_min(torch.finfo(a.dtype).tiny)
            e0 = F.icdf(w)
            eps_cond = torch.where(on, -e0, e0)
            if F.name == "logistic":  # F'(a) / F'(e0) = p q / (w (1 - w)), simplified
                deps.append(-torch.where(on, q, p) / (1 - w))
            else:
                dens = F.pdf(e0)
                ok = dens > 0
                dnum = torch.where(on, 1 - vs[k], vs[k])
                deps.append(-torch.where(ok, F.pdf(a) * dnum / torch.where(ok, dens, 1.0), 0.0))
            # Soft and conditional relaxed layers (their own upstream).
            a_soft = first_preactivation(problem) if k == 0 else preactivation(problem, k, x_soft)
            a_cond = first_preactivation(problem) if k == 0 else preactivation(problem, k, x_cond)
            x_soft, D = relax(a_soft + F.icdf(us[k]))
            soft_x.append(x_soft)
            soft_D.append(D)
            x_cond, D = relax(a_cond + eps_cond)
            cond_x.append(x_cond)
            cond_D.append(D)
            bits.append(b)
            xs.append(encode(b, m.coding))
            As.append(a)
            ps.append(p)
            scores.append(F.score(a, p, b))
        z = preactivation(problem, L, xs[-1])
        z_soft = preactivation(problem, L, soft_x[-1])
        z_cond = preactivation(problem, L, cond_x[-1])
        signal = (point_losses(problem, z) - eta * point_losses(problem, z_cond))[..., None]
        g_soft = backprop(head_grad(problem, z_soft), m.weights, soft_D)
        g_cond = backprop(head_grad(problem, z_cond), m.weights, cond_D)
        hard_in, soft_in, cond_in = [problem.X, *xs], [problem.X, *soft_x], [problem.X, *cond_x]
        terms: list[list[Contribution]] = []
        for k in range(L):
            terms.append(
                [
                    (signal * scores[k] - eta * g_cond[k] * deps[k], hard_in[k]),
                    (eta * g_soft[k], soft_in[k]),
                    (-eta * g_cond[k], cond_in[k]),
                ]
            )
        terms.append([(head_grad(problem, z), xs[-1])])
        return assemble(problem, terms, per_point=False)


# ---- CARMS (Dimitriev & Zhou, NeurIPS 2021), binary case -----------------------------------------
#
# A noise estimator like ARMS (a deterministic function of U(0, 1) tensors, per-layer branches:
# base path, K coupled samples of each layer at the base upstream, common random numbers below).


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
    verified = (
        "the pair pmf of the copula (marginals, K = 2 antithetic); equals `arms` on the same "
        "noise when p ≤ 1/2 (deterministic); toy with p > 1/2: mean and variance from the "
        "copula's count distribution by Monte Carlo (200k draws, |z| < 4.5), a variance `arms` "
        "does not have; statistically unbiased (K = 4 and 3, both codings, three noises); "
        "negative control: the importance weights dropped (plain leave-one-out on the "
        "antithetic samples)"
    )
    tests = ("tests/test_multi_sample.py",)
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


ESTIMATORS: list[type[Estimator]] = [
    RLOO,
    ARM,
    DisARM,
    ARMS,
    TokuiSato,
    REBAR,
    CARMS,
]
