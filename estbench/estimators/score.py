"""Score-function family: unbiased estimators built on d log P(path) / d theta (spec §2, §4.6).

Two kinds of estimator live here:

* path estimators (``PathEstimator``), whose only randomness is the sampled path, so that their
  exact moments follow by enumeration (``exact_moments.path_moments``): REINFORCE, MuProp, LEG;
* noise estimators (``NoiseEstimator``), which also use auxiliary noise (coupled branches, common
  random numbers downstream, copulas, conditional relaxed noise): RLOO, ARM, DisARM, ARMS, REBAR,
  Tokui-Sato. Each is a deterministic function ``estimate(problem, noise)`` of U(0, 1) tensors
  drawn by ``sample_noise``, which lets tests integrate an estimator over its noise by quadrature.

Conventions shared by all (spec §1): layer k = 0..L-1 is the parameter pair feeding binary layer
k+1, layer L is the head. Logit gradients g_{a_k} [*B, N, n_{k+1}] become parameter gradients with
the input that produced a_k on the same path (pitfall P3). Every data point has its own noise; the
head always gets the pathwise gradient dl/dz x_L^T at the (base) sampled path, which is unbiased.
Formulas are in terms of the 0/1 bits and F(a) = P(on | a), so they hold for both codings; the
coding only changes the values a layer passes on (``encode``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..exact import exact_gradient
from ..model import SBN, Noise, encode
from .base import Estimator, Hyper, PathEstimator, Problem
from .ops import (
    Contribution,
    Path,
    assemble,
    backprop,
    broadcasts_into,
    first_preactivation,
    head_grad,
    layer_terms,
    preactivation,
    sample_path,
    uniform_path,
    uniforms,
)

# ------------------------------------------------------------------------------------------------
# Local helpers (candidates for ops.py / model.py; kept here so this module owns its semantics)
# ------------------------------------------------------------------------------------------------


def _loss(problem: Problem, z: Tensor) -> Tensor:
    """l(z, y_n) per point, [*B, N] (z [*B, N, K]; extra batch dimensions must lead)."""
    return problem.model.head.loss(z, problem.Y)


def _coding_step(model: SBN) -> float:
    """Value of an "on" unit minus that of an "off" one: 1 for {0,1}, 2 for +-1 states."""
    return 2.0 if model.coding == "pm1" else 1.0


def _log_cdf(noise: Noise, a: Tensor) -> Tensor:
    """log F(a), stably in the tails for the built-in noises (-inf where F(a) = 0)."""
    if noise.name == "logistic":
        return torch.nn.functional.logsigmoid(a)
    if noise.name == "gaussian":
        return torch.special.log_ndtr(a)
    return torch.log(noise.cdf(a))


def _uniform_path(problem: Problem, us: Sequence[Tensor]) -> Path:
    """The path along uniforms ``us[k]`` [*B, N, n_{k+1}]: unit on iff u < F(a) (as sample_path)."""
    return uniform_path(problem, us)


def _propagate(problem: Problem, k: int, x: Tensor, us: Sequence[Tensor | None]) -> Tensor:
    """Head output z after binary layer k+1 takes the coded states ``x`` [*F, *B, N, n_{k+1}] and
    layers k+2..L follow with uniforms ``us[j]`` (unit on iff u < F(a); entries j <= k unused).
    Leading dimensions *F of ``x`` (branches, flips) broadcast against the uniforms [*B, N, n]."""
    m = problem.model
    for j in range(k + 1, m.depth):
        a = preactivation(problem, j, x)
        u = us[j]
        assert u is not None
        # F(a) > u (= u < F(a)) written over the fresh F(a): no bool tensor, no conversion.
        x = encode(m.noise.cdf(a).gt_(u), m.coding)
    return preactivation(problem, m.depth, x)


def _flip_bits(bits: Tensor) -> Tensor:
    """[*B, N, n] -> [n, *B, N, n]: copy j has unit j toggled (flip index leading, so that head
    losses broadcast against the targets)."""
    n = bits.shape[-1]
    eye = torch.eye(n, dtype=bits.dtype, device=bits.device)
    eye = eye.reshape(n, *([1] * (bits.dim() - 1)), n)
    return bits + eye * (1 - 2 * bits)


def _last_layer_flip_losses(problem: Problem, path: Path) -> Tensor:
    """l with unit j of the last binary layer toggled, [*B, N, n_L], by rank-1 head updates."""
    m = problem.model
    b = path.bits[-1]
    dx = (1 - 2 * b) * _coding_step(m)  # change of x_Lj when it flips
    WT = m.weights[-1].T  # [n_L, K]
    dx = dx.movedim(-1, 0)  # [n_L, *B, N]
    z = path.z + dx[..., None] * WT.reshape(WT.shape[0], *([1] * (dx.dim() - 1)), WT.shape[1])
    return _loss(problem, z).movedim(0, -1)


def _last_layer_local_expectation(problem: Problem, path: Path, f: Tensor) -> Tensor:
    """F'(a_j) (f(x | x_j on) - f(x | x_j off)) for the last binary layer, [*B, N, n_L]: the exact
    per-unit local expectation gradient (LEG) given the other units of that layer."""
    b = path.bits[-1]
    diff = (2 * b - 1) * (f[..., None] - _last_layer_flip_losses(problem, path))
    return path.pdf(problem)[-1] * diff


def _mb_ratio(noise: Noise, a: Tensor, p: Tensor, d: Tensor) -> Tensor:
    """F'(a) (R1 - R0) / (F(a) R1 + F(-a) R0) with d = log R1 - log R0, without overflow.

    With e = exp(-|d|): (1 - e) / (F(a) + F(-a) e) for d > 0, and -(1 - e) / (F(-a) + F(a) e)
    for d <= 0 (divide numerator and denominator by the larger of R1, R0)."""
    q = noise.cdf(-a)
    e = torch.exp(-d.abs())
    num = -torch.expm1(-d.abs())
    den = torch.where(d > 0, p + q * e, q + p * e)
    pdf = noise.pdf_given(a, p)
    ok = (pdf > 0) & (den > 0)  # a unit that cannot change (F' = 0) has no gradient
    r = torch.where(ok, pdf * num / torch.where(ok, den, 1.0), 0.0)
    return torch.where(d > 0, r, -r)


# ------------------------------------------------------------------------------------------------
# Path estimators
# ------------------------------------------------------------------------------------------------


class Reinforce(PathEstimator):
    """REINFORCE / score function (Williams 1992), with an optional baseline c_n per data point.

    g_{a_k} = (f(x_L) - c_n) * d log P(x_k | x_{k-1}) / d a_k for every binary layer, with the
    scores at the sampled upstream states (pitfall P3); the head gets the pathwise gradient
    dl/dz x_L^T. Unbiased for any baseline independent of the current sample:

    * ``none``: c = 0;  ``constant``: c = the parameter ``c``;
    * ``oracle``: c_n = E[l | X_n], the exact expected loss of each point (a reference, not a
      practical method);
    * ``frozen``: c_n = the mean loss of ``warmup`` independent paths per point, drawn once per
      ``draw`` call and then held fixed (spec §2.1, "frozen baseline").

    Requires only f on the cube. Cost: 1 loss evaluation, no backward pass through the network.
    Reference: R. J. Williams, Machine Learning 8, 1992. Spec §2.1 [num: exactly unbiased].
    """

    name = "reinforce"
    family = "score-function"
    unbiased = "yes"
    reference = "Williams, Machine Learning 8:229-256 (1992)"
    hyperparameters = {
        "baseline": Hyper(
            "none",
            str,
            choices=("none", "constant", "oracle", "frozen"),
            help="baseline c subtracted from the loss",
        ),
        "c": Hyper(0.0, float, help="the constant of baseline=constant"),
        "warmup": Hyper(100, int, minimum=1, help="paths per point for baseline=frozen"),
    }

    def prepare(self, problem: Problem, generator: torch.Generator) -> Tensor | None:
        kind = self.params["baseline"]
        if kind == "oracle":
            return exact_gradient(
                problem.model, problem.X, problem.Y, with_grad=False
            ).loss_per_point
        if kind == "frozen":
            path = sample_path(problem, self.params["warmup"], generator)
            return problem.model.head.loss(path.z, problem.Y).mean(0)
        if kind == "constant":
            return torch.full(
                (problem.n_points,),
                self.params["c"],
                dtype=problem.X.dtype,
                device=problem.X.device,
            )
        return None

    def path_terms(
        self, problem: Problem, path: Path, context: Any = None
    ) -> list[list[Contribution]]:
        f = problem.model.head.loss(path.z, problem.Y)
        signal = (f if context is None else f - context)[..., None]
        # The scores are fresh tensors: scaled in place.
        logit_grads = [
            s.mul_(signal) if broadcasts_into(signal, s) else s * signal
            for s in path.scores(problem)
        ]
        return layer_terms(path, logit_grads, head_grad(problem, path.z))


class MuProp(PathEstimator):
    """MuProp, plain (eta = 1, no learned baseline): REINFORCE with a first-order Taylor control
    variate around the deterministic mean-field network, whose mean is added back analytically.

    Mean field: mu_0 = x_0, mu_k = m(W mu_{k-1} + b) with m(a) = E[x | a] (F(a) for {0,1},
    2F(a) - 1 for +-1), fbar = l(mu_L); gbar_k = d fbar / d mu_k by backpropagation through it.
    Per layer, along the sampled path x (spec §2.6):

        g_{a_k} = [f(x_L) - fbar - gbar_k . (x_k - mu_k)] * score_k + gbar_k * m'(a_k(x_{k-1})),

    with m'(a) = 2F'(a) (+-1) or F'(a) ({0,1}); the correction term uses the *sampled* upstream
    x_{k-1} (with mu_{k-1} it would be biased) and holds gbar_k fixed. Since
    E[(x_k - mu_k) score_k | x_{k-1}] = m'(a_k), the control variate has exactly the mean that is
    added back: unbiased for any f and any depth. Requires f (the head) to accept real inputs for
    the mean-field pass. Single Bernoulli: g = (b-p)^3 + 2(p-t)p(1-p) for f = (b-t)^2.

    Cost: 1 loss evaluation on the path plus 1 mean-field forward/backward pass (deterministic,
    shared by all draws of a call, but counted: evals_per_draw = 2 as in spec §0).
    Reference: Gu, Levine, Sutskever & Mnih, ICLR 2016, arXiv 1511.05176; formula as in
    tensorflow/models research/rebar (spec §2.6, [code]).
    Verified here: exactly unbiased by path enumeration on depth-3 networks (both codings, three
    noises, all heads) and on the anchor network of spec §5.3; the §5.1 closed form (mean and
    variance) and the numeric anchors (Var MuProp) on the Bernoulli toy.
    """

    name = "muprop"
    family = "score-function"
    unbiased = "yes"
    reference = "Gu, Levine, Sutskever & Mnih, ICLR 2016, arXiv 1511.05176"

    def evals_per_draw(self, model: SBN) -> float:
        return 2.0

    @staticmethod
    def mean_field(problem: Problem) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """(mu_k [N, n_k], gbar_k = d l(mu_L) / d mu_k [N, n_k], l(mu_L) [N]), k = 1..L."""
        m = problem.model
        step = _coding_step(m)
        mus, As = [], []
        x = problem.X
        for k in range(m.depth):
            a = preactivation(problem, k, x) if k > 0 else first_preactivation(problem)
            p = m.noise.cdf(a)
            x = p if m.coding == "01" else 2 * p - 1
            mus.append(x)
            As.append(a)
        z = preactivation(problem, m.depth, x)
        fbar = _loss(problem, z)
        gbar = [head_grad(problem, z) @ m.weights[-1]]
        for k in range(m.depth - 1, 0, -1):
            da = gbar[0] * step * m.noise.pdf(As[k])
            gbar.insert(0, da @ m.weights[k])
        return mus, gbar, fbar

    def path_terms(
        self, problem: Problem, path: Path, context: Any = None
    ) -> list[list[Contribution]]:
        mus, gbar, fbar = self.mean_field(problem)
        f = _loss(problem, path.z)
        step = _coding_step(problem.model)
        logit_grads = []
        for x, mu, gb, s, d in zip(
            path.xs, mus, gbar, path.scores(problem), path.pdf(problem), strict=True
        ):
            signal = f - fbar - (gb * (x - mu)).sum(-1)
            logit_grads.append(signal[..., None] * s + gb * (step * d))
        return layer_terms(path, logit_grads, head_grad(problem, path.z))


class LocalExpectation(PathEstimator):
    """Local expectation gradients (LEG): every binary unit's own Bernoulli is summed out exactly.

    Last binary layer L (both forms): g_{a_Lj} = F'(a_Lj) (f(x | x_Lj on) - f(x | x_Lj off)), the
    single-layer LEG of Titsias & Lazaro-Gredilla with the other units at their sampled values:
    exact per unit given the rest of the path, n_L head evaluations (rank-1 updates of z).

    ``form=markov-blanket`` (default; spec §4.6 "Markov-blanket LEG", ~ HNCA): a hidden unit j of
    layer k < L sums its own state out against its Markov blanket, i.e. its children x_{k+1}:

        g_{a_kj} = f(x_L) F'(a_kj) (R(on) - R(off)) / (F(a_kj) R(on) + F(-a_kj) R(off)),
        R(s) = P(x_{k+1} | x_k with x_kj = s),

    computed in log space from rank-1 updates of a_{k+1}. Given x_{k,-j} and x_{k+1}, the weight is
    d/da of the marginal P(x_{k+1} | x_{k,-j}) over that marginal, so E[g | x_{<k}] = the exact
    d E[f | x_{<k}] / d a_kj: **exactly unbiased at every depth**.

    ``form=single-layer``: the (n + 1)-evaluation form applied literally to every layer, f as a
    function of a unit with all other units -- including the downstream layers -- held at their
    sampled values. f(x_L) does not depend on a hidden unit once x_L is held fixed, so hidden
    layers get exactly 0. What it claims: exact (unbiased) in the last binary layer and in the
    head, biased (zero) in every hidden layer k < L; for L = 1 it is the full single-layer LEG
    and unbiased. ``unbiased_layers`` says exactly this. (IndeCateR, De Smet, Sansone & Zuidberg
    Dos Martires, NeurIPS 2023, arXiv 2311.12569 -- id checked -- is said to reduce to this
    single-layer form for binary variables; that equivalence is still UNVERIFIED: abstract only.)

    Requires only f on the cube. Cost: 1 + n_L loss evaluations (the n_L flipped heads), no
    backward pass; O(sum_k n_k n_{k+1}) logit updates for the Markov blanket.
    References: Titsias & Lazaro-Gredilla, NeurIPS 2015, arXiv 1503.01494 (LEG); the deep Markov
    blanket form as in Tokui & Sato's code (beam2d/sbn ``compute_local_expectation``: the weight
    sigmoid(log q(z_j) + log q(y | z) - log q(not z_j) - log q(y | z flipped)) is the posterior of
    the sampled state given its children, which gives this formula when f does not depend on x_k
    directly -- checked against that code); K. Young, "Hindsight network credit assignment"
    (arXiv 2011.12351, 2110.07700) assigns credit through immediate children in the same way
    (equivalence of the exact formulas still UNVERIFIED: abstracts only).
    Verified here: markov-blanket exactly unbiased by path enumeration (depth 3, both codings,
    three noises) and on the anchor network (matches the exact row of spec §5.3); single-layer
    exact in the last binary layer and head, zero below; both give g with zero variance on the
    Bernoulli toy (spec §5.1).
    """

    name = "leg"
    family = "score-function"
    unbiased = "yes"  # form=markov-blanket; form=single-layer: see ``claim``
    reference = (
        "Titsias & Lazaro-Gredilla, NeurIPS 2015, arXiv 1503.01494; deep Markov-blanket form as "
        "in Tokui & Sato's code (beam2d/sbn), cf. Young, HNCA, arXiv 2110.07700"
    )
    hyperparameters = {
        "form": Hyper(
            "markov-blanket",
            str,
            choices=("markov-blanket", "single-layer"),
            help="hidden layers: Markov-blanket local expectation, or the literal single-layer "
            "form (zero below the last binary layer)",
        ),
    }

    def claim(self, model: SBN) -> str:
        """form=single-layer: the last binary layer and the head only (every layer when L = 1)."""
        if self.params["form"] == "markov-blanket" or model.depth == 1:
            return "yes"
        return "last layer only"

    def evals_per_draw(self, model: SBN) -> float:
        return 1.0 + model.widths[-1]

    def bytes_per_draw(self, problem: Problem) -> int:
        m = problem.model
        extra = 16 * max(
            n * n_next for n, n_next in zip(m.widths, (*m.widths[1:], m.out_dim), strict=True)
        )
        return super().bytes_per_draw(problem) + 8 * problem.n_points * extra

    def path_terms(
        self, problem: Problem, path: Path, context: Any = None
    ) -> list[list[Contribution]]:
        m = problem.model
        f = _loss(problem, path.z)
        last = _last_layer_local_expectation(problem, path, f)
        logit_grads = []
        for k in range(m.depth - 1):
            if self.params["form"] == "single-layer":
                logit_grads.append(torch.zeros_like(path.a[k]))
                continue
            logit_grads.append(f[..., None] * self._blanket_weight(problem, path, k))
        logit_grads.append(last)
        return layer_terms(path, logit_grads, head_grad(problem, path.z))

    @staticmethod
    def _blanket_weight(problem: Problem, path: Path, k: int) -> Tensor:
        """F'(a) (R1 - R0) / (F(a) R1 + F(-a) R0) for the units of hidden layer k, [*B, N, n_k]."""
        m = problem.model
        a_next, b_next = path.a[k + 1], path.bits[k + 1]
        # log P(x_{k+1,i} | a) = log F(s_i a_i) with s_i = +-1 the child's sampled sign. Flipping
        # x_kj moves a_i by (1 - 2 b_kj) c W_ij (c = coding step), so s_i a_i moves by
        # (s_i (1 - 2 b_kj)) c W_ij: one fused multiply-add over [*B, N, n_k, n_{k+1}].
        s = 2 * b_next - 1
        sa = s * a_next
        outer = (1 - 2 * path.bits[k])[..., :, None] * s[..., None, :]
        t = torch.addcmul(sa[..., None, :], outer, _coding_step(m) * m.weights[k + 1].T)
        flip = _log_cdf(m.noise, t).sum(-1)  # log R(flipped) per unit j
        base = _log_cdf(m.noise, sa).sum(-1, keepdim=True)  # log R(sampled)
        d = (2 * path.bits[k] - 1) * (base - flip)  # log R(on) - log R(off)
        return _mb_ratio(m.noise, path.a[k], path.p[k], d)


# ------------------------------------------------------------------------------------------------
# Noise estimators
# ------------------------------------------------------------------------------------------------


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
    Verified here: exact mean and variance on the Bernoulli toy by enumerating the K uniforms
    (spec §5.1 closed form and the Var RLOO K = 4 anchors); statistically unbiased on depth-3
    networks; the 1/K variant is flagged biased by the same test.
    """

    name = "rloo"
    unbiased = "yes"
    reference = "Kool, van Hoof & Welling, ICLR 2019 workshop (LOORF); Salimans & Knowles 2014"
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
        path = _uniform_path(problem, noise)  # batch [S, K]
        f = _loss(problem, path.z)  # [S, K, N]
        signal = ((f - f.mean(1, keepdim=True)) / self.loo_divisor(K))[..., None]
        logit_grads = [signal * s for s in path.scores(problem)]
        terms = layer_terms(path, logit_grads, head_grad(problem, path.z) / K)
        return assemble(problem, terms, per_point=False).sum(1)


class _PairEstimator(NoiseEstimator):
    """Per-layer antithetic pairs (ARM, DisARM): a base path with uniforms u_k (on iff u < F(a));
    for each binary layer k the pair b1 = 1[u_k > 1 - F(a_k)], b2 = 1[u_k < F(a_k)] (= the base
    bits) at the base path's upstream, each propagated to the loss; the layer's logit gradient is
    (f1 - f2) * ``pair_weight``. Downstream noise (``downstream``): ``crn`` reuses the base
    uniforms u_{>k} for both branches, so branch 2 is the base path (L + 1 loss evaluations);
    ``fresh`` gives both branches of every hidden layer independent new uniforms (2L)."""

    unbiased = "yes"
    hyperparameters = {
        "downstream": Hyper(
            "crn",
            str,
            choices=("crn", "fresh"),
            help="noise below each branched layer: the base path's uniforms (common random "
            "numbers, L+1 evaluations) or fresh independent uniforms per branch (2L)",
        ),
    }
    # Whether branch 2 equals the base path's bits (it does for the pair above); a subclass with
    # another pair sets this False and the branch is propagated like branch 1.
    branch2_is_base = True

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

    def pair(self, u: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """(b1, b2) = (1[u > 1 - p], 1[u < p])."""
        b1 = (1 - p).lt_(u)  # 1 - p < u, written over the fresh 1 - p
        return b1, torch.lt(u, p, out=u.new_empty(u.shape))

    @abstractmethod
    def pair_weight(
        self, noise: Noise, a: Tensor, p: Tensor, u: Tensor, b1: Tensor, b2: Tensor
    ) -> Tensor:
        """Multiplier of (f1 - f2) for the logit gradient of each unit."""

    def estimate(self, problem: Problem, noise: Sequence[Tensor], context: Any = None) -> Tensor:
        m = problem.model
        L = m.depth
        us = list(noise[:L])
        fresh = iter(noise[L:])
        path = _uniform_path(problem, us)
        f_base = _loss(problem, path.z)
        logit_grads = []
        for k in range(L):
            a, p, u = path.a[k], path.p[k], us[k]
            b1, b2 = self.pair(u, p)
            if self.params["downstream"] == "fresh" and k < L - 1:
                down: list[Tensor | None] = [None] * (k + 1)
                down += [next(fresh) for _ in range(k + 1, L)]  # [S, 2, N, n_j]: one per branch
                x = encode(torch.stack((b1, b2), 1), m.coding)  # [S, 2, N, n]
                f12 = _loss(problem, _propagate(problem, k, x, down))
                f1, f2 = f12[:, 0], f12[:, 1]
            else:
                f1 = _loss(problem, _propagate(problem, k, encode(b1, m.coding), us))
                if self.branch2_is_base:
                    f2 = f_base
                else:
                    f2 = _loss(problem, _propagate(problem, k, encode(b2, m.coding), us))
            w = self.pair_weight(m.noise, a, p, u, b1, b2)
            df = (f1 - f2)[..., None]
            logit_grads.append(w.mul_(df) if broadcasts_into(df, w) else w * df)  # w is fresh
        terms = layer_terms(path, logit_grads, head_grad(problem, path.z))
        return assemble(problem, terms, per_point=False)


class ARM(_PairEstimator):
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
    Verified here: exact mean and variance on the Bernoulli toy by Gauss-Legendre quadrature
    over u (spec §5.1 closed form, Var ARM anchors); statistically unbiased on depth-3 networks
    (both codings, gaussian/uniform noise, softmax/mse heads) for crn and fresh; the complement
    pair is flagged biased by the same test.
    """

    name = "arm"
    reference = "Yin & Zhou, ICLR 2019, arXiv 1807.11143"

    def pair_weight(
        self, noise: Noise, a: Tensor, p: Tensor, u: Tensor, b1: Tensor, b2: Tensor
    ) -> Tensor:
        if noise.name == "logistic":  # F'(a) = p(1-p) exactly: skip the ratio
            return u - 0.5
        pq = p * noise.cdf(-a)
        ok = pq > 0  # p in {0, 1} (uniform noise saturates): b1 = b2, no gradient
        return torch.where(ok, noise.pdf(a) / torch.where(ok, pq, 1.0), 0.0) * (u - 0.5)


class DisARM(_PairEstimator):
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
    Verified here: exact mean and variance on the Bernoulli toy by quadrature (spec §5.1 closed
    form, Var DisARM anchors); statistically unbiased on depth-3 networks.
    """

    name = "disarm"
    reference = "Dong, Mnih & Tucker, NeurIPS 2020, arXiv 2006.10680 (= U2G, arXiv 2006.06448)"

    def pair_weight(
        self, noise: Noise, a: Tensor, p: Tensor, u: Tensor, b1: Tensor, b2: Tensor
    ) -> Tensor:
        if noise.name == "logistic":  # F' / (2 min(p, 1-p)) = max(p, 1-p) / 2
            return 0.5 * torch.maximum(p, 1 - p) * (b1 - b2)
        low = torch.minimum(p, noise.cdf(-a))
        ok = low > 0
        return torch.where(ok, noise.pdf(a) / (2 * torch.where(ok, low, 1.0)), 0.0) * (b1 - b2)


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

    (logistic: the factor p(1-p) / (p - J_K(p)) of alekdimi/arms; p - J_K(p) = m - J_K(m) for
    p >= 1/2 because J_K(p) = 2p - 1 + J_K(1-p)). K = 2 is DisARM; independent samples give RLOO.

    Deep form (per layer, like ARM): the base path uses sample i = 0 of each layer's copula
    (its uniform u_{k,0} is U(0, 1) given the upstream); for each layer k the K samples b_{k,i}
    share the base upstream x_{<k}, and all branches use the base path's uniforms u_{j,0} below
    (common random numbers), so branch 0 is the base path itself. Downstream uniforms are U(0, 1)
    and independent of layer k's copula given everything above, hence E[f_i | copula] =
    E[f | x_k = b_i, x_{<k}] and the single-layer identity gives unbiasedness per layer.
    Requires only f on the cube. Cost: 1 + (K-1) L loss evaluations per draw.
    Reference: Dimitriev & Zhou, ICML 2021, arXiv 2105.14141 (id checked); formula checked
    against alekdimi/arms ``networks.py`` 'arms' (copula, flip at p < 1/2, J_K, debias factor).
    Verified here: J_K against simulation of the copula; K = 2 reproduces DisARM's exact toy
    variance; the toy mean (and variance against the exact count distribution) by Monte Carlo at
    K = 4; the deep per-layer form statistically unbiased on depth-3 networks (both codings,
    three noises) -- the spec had not checked the deep form.
    """

    name = "arms"
    unbiased = "yes"
    reference = "Dimitriev & Zhou, ICML 2021, arXiv 2105.14141"
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
        f_base = _loss(problem, path.z)  # [S, N]
        down = [t[:, None] for t in base_u]  # common random numbers for all K branches
        logit_grads = []
        for k in range(L):
            b_all, p, low = samples[k], ps[k], lows[k]
            x_other = encode(b_all[:, 1:], m.coding)  # [S, K-1, N, n]
            f_other = _loss(problem, _propagate(problem, k, x_other, down))  # [S, K-1, N]
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
    Verified here: deterministic g (zero variance) on the Bernoulli toy; statistically unbiased on
    depth-3 networks (both codings, three noises).
    """

    name = "tokui-sato"
    unbiased = "yes"
    reference = "Tokui & Sato, ICML 2017 (PMLR 70:3414-3423), arXiv 1611.01239"

    def evals_per_draw(self, model: SBN) -> float:
        return 1.0 + sum(model.widths)

    def bytes_per_draw(self, problem: Problem) -> int:
        return (2 + max(problem.model.widths)) * super().bytes_per_draw(problem)

    def noise_shapes(self, problem: Problem) -> list[tuple[int, ...]]:
        return _layer_shapes(problem)

    def estimate(self, problem: Problem, noise: Sequence[Tensor], context: Any = None) -> Tensor:
        m = problem.model
        path = _uniform_path(problem, noise)
        f = _loss(problem, path.z)
        pdf = path.pdf(problem)
        logit_grads = []
        for k in range(m.depth - 1):
            flipped = _flip_bits(path.bits[k])  # [n_k, S, N, n_k]
            f_flip = _loss(problem, _propagate(problem, k, encode(flipped, m.coding), noise))
            diff = (2 * path.bits[k] - 1) * (f[..., None] - f_flip.movedim(0, -1))
            logit_grads.append(pdf[k] * diff)
        logit_grads.append(_last_layer_local_expectation(problem, path, f))
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
    Verified here: mean = g on the Bernoulli toy by 2-D Gauss-Legendre quadrature over (u, v) for
    several theta, tau, eta; statistically unbiased on depth-3 networks (both codings, three
    noises, softmax/mse/logistic heads).
    """

    name = "rebar"
    unbiased = "yes"
    reference = "Tucker et al., NeurIPS 2017, arXiv 1703.07370 (fixed surrogate, joint deep form)"
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
        step = _coding_step(m)
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
        signal = (_loss(problem, z) - eta * _loss(problem, z_cond))[..., None]
        g_soft = backprop(problem, soft_D, head_grad(problem, z_soft))
        g_cond = backprop(problem, cond_D, head_grad(problem, z_cond))
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


ESTIMATORS: list[type[Estimator]] = [
    Reinforce,
    RLOO,
    ARM,
    DisARM,
    ARMS,
    MuProp,
    REBAR,
    TokuiSato,
    LocalExpectation,
]
