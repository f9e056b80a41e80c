"""Score-function family, path estimators: unbiased estimators built on d log P(path) / d theta
(spec §2, §4.6) whose only randomness is the sampled path (``PathEstimator``), so that their exact
moments follow by enumeration (``exact_moments.path_moments``): REINFORCE, MuProp, LEG. The noise
estimators of the family (RLOO, ARM, DisARM, ARMS, Tokui-Sato, REBAR), which also use auxiliary
noise, are in ``score_noise.py``.

Conventions shared by all (spec §1): layer k = 0..L-1 is the parameter pair feeding binary layer
k+1, layer L is the head. Logit gradients g_{a_k} [*B, N, n_{k+1}] become parameter gradients with
the input that produced a_k on the same path (pitfall P3). Every data point has its own noise; the
head always gets the pathwise gradient dl/dz x_L^T at the (base) sampled path, which is unbiased.
Formulas are in terms of the 0/1 bits and F(a) = P(on | a), so they hold for both codings; the
coding only changes the values a layer passes on (``encode``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Estimator, Hyper
from ...layered_estimators import broadcasts_into
from ..exact import exact_gradient
from ..model import SBN, Noise, Problem, coding_scale
from .ops import (
    Contribution,
    Path,
    PathEstimator,
    first_preactivation,
    head_grad,
    last_layer_local_expectation,
    layer_terms,
    point_losses,
    preactivation,
    sample_path,
)

# ------------------------------------------------------------------------------------------------
# Local helpers
# ------------------------------------------------------------------------------------------------


def _log_cdf(noise: Noise, a: Tensor) -> Tensor:
    """log F(a), stably in the tails for the built-in noises (-inf where F(a) = 0)."""
    if noise.name == "logistic":
        return torch.nn.functional.logsigmoid(a)
    if noise.name == "gaussian":
        return torch.special.log_ndtr(a)
    return torch.log(noise.cdf(a))


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
    Reference: R. J. Williams, Machine Learning 8, 1992. Spec §2.1.
    """

    name = "reinforce"
    family = "score-function"
    unbiased = "yes"
    reference = "Williams, Machine Learning 8:229-256 (1992)"
    verified = (
        "exact: unbiased for the baselines none, constant and oracle (frozen: unbiased given "
        "its baseline, and lower variance than none); seed networks' stored exact expectations "
        "to 1e-10; toy closed forms (mean and variance) and numeric anchors; anchor network's "
        "exact row (spec §5.3)"
    )
    tests = ("tests/test_estimators_core.py", "tests/test_score_estimators.py")
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
    """

    name = "muprop"
    family = "score-function"
    unbiased = "yes"
    reference = "Gu, Levine, Sutskever & Mnih, ICLR 2016, arXiv 1511.05176"
    verified = (
        "exact: unbiased on depth-3 networks (both codings, three noises, all heads) and on the "
        "anchor network (§5.3); toy closed form (mean and variance) and the numeric anchors "
        "(Var MuProp)"
    )
    tests = ("tests/test_score_estimators.py",)

    def evals_per_draw(self, model: SBN) -> float:
        return 2.0

    @staticmethod
    def mean_field(problem: Problem) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """(mu_k [N, n_k], gbar_k = d l(mu_L) / d mu_k [N, n_k], l(mu_L) [N]), k = 1..L."""
        m = problem.model
        step = coding_scale(m.coding)
        mus, As = [], []
        x = problem.X
        for k in range(m.depth):
            a = preactivation(problem, k, x) if k > 0 else first_preactivation(problem)
            p = m.noise.cdf(a)
            x = p if m.coding == "01" else 2 * p - 1
            mus.append(x)
            As.append(a)
        z = preactivation(problem, m.depth, x)
        fbar = point_losses(problem, z)
        gbar = [head_grad(problem, z) @ m.weights[-1]]
        for k in range(m.depth - 1, 0, -1):
            da = gbar[0] * step * m.noise.pdf(As[k])
            gbar.insert(0, da @ m.weights[k])
        return mus, gbar, fbar

    def path_terms(
        self, problem: Problem, path: Path, context: Any = None
    ) -> list[list[Contribution]]:
        mus, gbar, fbar = self.mean_field(problem)
        f = point_losses(problem, path.z)
        step = coding_scale(problem.model.coding)
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
    """

    name = "leg"
    family = "score-function"
    unbiased = "yes"  # form=markov-blanket; form=single-layer: see ``claim``
    reference = (
        "Titsias & Lazaro-Gredilla, NeurIPS 2015, arXiv 1503.01494; deep Markov-blanket form as "
        "in Tokui & Sato's code (beam2d/sbn), cf. Young, HNCA, arXiv 2110.07700"
    )
    verified = (
        "exact: markov-blanket unbiased (depth 3, both codings, three noises) and the anchor "
        "network's exact row (§5.3); single-layer exact in the last binary layer and the head, "
        "zero below; both zero variance on the toy (§5.1)"
    )
    tests = ("tests/test_score_estimators.py",)
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
        f = point_losses(problem, path.z)
        last = last_layer_local_expectation(problem, path, f)
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
        t = torch.addcmul(sa[..., None, :], outer, coding_scale(m.coding) * m.weights[k + 1].T)
        flip = _log_cdf(m.noise, t).sum(-1)  # log R(flipped) per unit j
        base = _log_cdf(m.noise, sa).sum(-1, keepdim=True)  # log R(sampled)
        d = (2 * path.bits[k] - 1) * (base - flip)  # log R(on) - log R(off)
        return _mb_ratio(m.noise, path.a[k], path.p[k], d)


ESTIMATORS: list[type[Estimator]] = [Reinforce, MuProp, LocalExpectation]
