"""Gradient estimators for SBNs with stochastic binary weights.

The contract is the core one (``estbench.estimators.base``) with a ``WeightProblem``:
``draw(problem, S, generator=g)`` returns [S, P] single-draw estimates of the gradient of
J = (1/N) sum_n E[l_n], flattened per layer as concat(theta_k.reshape(-1), b_k), k = 0..L, with
all randomness from ``g`` and no Python loop over draws or data points. Two additions:

* ``wrt``: what the Bernoulli coordinates estimate -- ``"eta"`` (dJ/deta, the latent weights) or
  ``"mu"`` (dJ/dmu, mu = E W = 2 F_w(eta) - 1). They differ by the factor
  d mu / d eta = 2 F_w'(eta) (``WeightSBN.mean_jacobian``; 2 sigmoid(eta) sigmoid(-eta) for the
  default logistic weight noise, 1[|eta| <= 1] for the uniform one); compare with
  ``WeightExactResult.flat(wrt)``.
  Real parameters (biases, real weights, the head) are the same in both.
* ``weights``: ``"shared"`` (default; one weight draw for all data points, as in training) or
  ``"per-point"`` (each point its own weights). Same mean, different variance.

Conventions for the gradient flow, used by every estimator below: the activation units of binary
layer k+1 have pre-activations a (per point); a logit gradient g_a [*B, N, n_{k+1}] becomes the
bias gradient mean_n g_a and, for a real pair, the weight gradient mean_n g_a^T x_k with the input
x_k on the same path (pitfall P3). With sign activations there is no activation noise and the exact
gradient of every real parameter feeding a sign is 0: unbiased estimators return exactly 0 there.

Derivations are ours, from the model definition; the seed paper (Shekhovtsov & Yanush, arXiv
2006.06880) could be read here only in its abstract and introduction, which state that "correct
ST estimators for ... weights" are obtained and that latent weights "arise from the mirror descent
method when optimizing over probabilities" -- the formulas below are consistent with that but
were NOT checked against the paper's equations (UNVERIFIED as a citation; verified numerically,
as docs/kinds/weights.md lists per estimator).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch
from torch import Tensor

from ...estimators.base import Estimator, Hyper
from ..layered_estimators import ARMPairs, DisARMPairs, PairEstimator, backprop, logit_scale
from ..sbn.model import coding_scale
from .exact import exact_gradient
from .model import WeightProblem, WeightSBN
from .paths import Uniforms, WeightPath, back_weights, draw_uniforms, path_from_uniforms

WEIGHTS_MODE: Hyper = Hyper(
    "shared",
    str,
    choices=("shared", "per-point"),
    help="one weight draw shared by all data points, or one per point (same mean, other variance)",
)
LayerGrad = tuple[Tensor, Tensor]  # (d theta_k [..., n_out, n_in], d b_k [..., n_out])


# ---- reductions over the data: per point (``keep``) or the draw's mean ----------------------


def outer(g: Tensor, inp: Tensor, keep: bool) -> Tensor:
    """g^T x: per point [*B, N, out, in] (``keep``) or averaged over N [*B, out, in]."""
    if keep:
        return g[..., :, None] * inp[..., None, :]
    inp = inp.expand(*g.shape[:-1], inp.shape[-1])
    return torch.einsum("...nj,...ni->...ji", g, inp) / g.shape[-2]


def scaled(signal: Tensor, score: Tensor, per_point_score: bool, keep: bool) -> Tensor:
    """signal_n * score for signal [*B, N] and a weight-shaped score, shared [*B, out, in] or per
    point [*B, N, out, in]; per point or averaged over N."""
    if keep:
        return signal[..., None, None] * (score if per_point_score else score.unsqueeze(-3))
    if per_point_score:
        return torch.einsum("...n,...nji->...ji", signal, score) / signal.shape[-1]
    return signal.mean(-1)[..., None, None] * score


def mean_points(g: Tensor, keep: bool) -> Tensor:
    return g if keep else g.mean(-2)


def flatten(pairs: list[LayerGrad]) -> Tensor:
    """[(dtheta_k, db_k)] -> [..., P], broadcasting the leading dimensions of all layers."""
    lead = torch.broadcast_shapes(
        *(t.shape[:-2] for t, _ in pairs), *(b.shape[:-1] for _, b in pairs)
    )
    parts = []
    for t, b in pairs:
        parts.append(t.expand(*lead, *t.shape[-2:]).reshape(*lead, -1))
        parts.append(b.expand(*lead, b.shape[-1]))
    return torch.cat(parts, -1)


def head_grad(problem: WeightProblem, path: WeightPath, keep: bool) -> LayerGrad:
    """The pathwise head gradient dl/dz x_L^T (real head weights, unbiased at a hard sample)."""
    dz = problem.model.head.grad(path.z, problem.Y)
    return outer(dz, path.inputs[-1], keep), mean_points(dz, keep)


# ---- base classes ------------------------------------------------------------------------------


class WeightEstimator(Estimator[WeightProblem, WeightSBN]):
    """Base of the weight estimators: the ``weights`` mode and what ``wrt`` the estimate is."""

    default_wrt: ClassVar[str] = "eta"
    problem = "weights"
    hyperparameters = {"weights": WEIGHTS_MODE}

    @property
    def wrt(self) -> str:
        """ "eta" or "mu": the parametrisation of the Bernoulli coordinates of the estimate."""
        return self.params.get("wrt", self.default_wrt)

    @property
    def per_point(self) -> bool:
        return self.params["weights"] == "per-point"

    def bytes_per_draw(self, problem: WeightProblem) -> int:
        m, N = problem.model, problem.n_points
        weights = sum(W.numel() for W in m.params) * (N if self.per_point else 1)
        units = N * (sum(m.widths) + m.input_dim + m.out_dim)
        return 8 * (6 * weights + 16 * units + 4 * N * problem.n_params)

    def fixed_weights(self, problem: WeightProblem) -> list[Tensor | None] | None:
        """0/1 weights used instead of sampling (deterministic forward), or None."""
        return None


class WeightPathEstimator(WeightEstimator):
    """An estimator whose only randomness is the sampled path (weights and states), so that its
    exact mean and variance follow by enumeration (``paths.path_moments``)."""

    @abstractmethod
    def path_terms(
        self, problem: WeightProblem, path: WeightPath, keep: bool, context: Any = None
    ) -> list[LayerGrad]:
        """Per layer (dtheta_k, db_k): per point if ``keep``, else averaged over the data."""

    def path_estimate(
        self, problem: WeightProblem, path: WeightPath, context: Any = None
    ) -> Tensor:
        """Per-point estimates [*B, N, P] along ``path``; a draw is their mean over N."""
        return flatten(self.path_terms(problem, path, True, context))

    def _draw(
        self, problem: WeightProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        noise = draw_uniforms(problem, n_draws, generator, self.per_point)
        path = path_from_uniforms(
            problem, noise, self.per_point, fixed_weights=self.fixed_weights(problem)
        )
        out = flatten(self.path_terms(problem, path, False, context))
        # A deterministic path (sign(eta) weights with sign activations) has no draw dimension.
        return out.expand(n_draws, -1).contiguous() if out.dim() == 1 else out


# ---- REINFORCE ---------------------------------------------------------------------------------


class WeightReinforce(WeightPathEstimator):
    """REINFORCE (score function) over the joint draw of weights and states, wrt eta.

    With b = 1[W = +1], p = F_w(eta), q = F_w(-eta) and log P(W) = b log p + (1 - b) log q,

        d log P(W) / d eta = F_w'(eta) (b / p - (1 - b) / q) =: s(W),

    which is b - p for the logistic weight noise (F_w' = p q) and (1/2)(b / p - (1 - b) / q) on
    |eta| < 1 for the uniform one; a deterministic weight (p q = 0) has score 0. One draw:

        shared:    g_eta_k = (1/N) sum_n (l_n - c_n) s(W_k)
        per point: g_eta_k = (1/N) sum_n (l_n - c_n) s(W_k^n)
        g_{a_k}    = (l_n - c_n) d log P(x_k | a_k) / d a_k   (stochastic activations; 0 for sign)

    biases and real weights from g_{a_k} with the sampled inputs; the head pathwise. ``baseline``:
    ``none`` (c = 0) or ``oracle`` (c_n = the exact E[l_n], a reference, not a practical method).
    Unbiased in every layer for any baseline independent of the draw: E[(l - c) d log P] =
    d E[l] and E[d log P] = 0. Cost: 1 loss evaluation, no backward pass.
    Reference: Williams, Machine Learning 8, 1992; for weights as in Shekhovtsov & Yanush,
    arXiv 2006.06880 (the score of Bernoulli weights; equations not checked, see module).
    """

    name = "weight-reinforce"
    family = "score-function"
    unbiased = "yes"
    reference = "Williams, Machine Learning 8:229-256 (1992)"
    verified = (
        "exact: mean = exact dJ/dη to 1e-10 (both codings, stochastic and sign activations, "
        "real and Bernoulli first layer, both modes, every weight noise); exact variance of "
        "both modes against the variance of draws; negative control: with the hard-sigmoid and "
        "the probit weight noise the sigmoid score b − p fails the exact test"
    )
    tests = ("tests/test_weights_estimators.py", "tests/test_weights_hardsigmoid.py")
    hyperparameters = {
        **WeightEstimator.hyperparameters,
        "baseline": Hyper("none", str, choices=("none", "oracle"), help="c subtracted from l"),
    }

    def prepare(self, problem: WeightProblem, generator: torch.Generator | None) -> Tensor | None:
        if self.params["baseline"] == "oracle":
            return exact_gradient(
                problem.model, problem.X, problem.Y, with_grad=False
            ).loss_per_point
        return None

    def weight_score(self, problem: WeightProblem, path: WeightPath, k: int) -> Tensor:
        """d log P(W_k) / d eta_k = F_w'(eta) (b / p - (1 - b) / q): b - p (logistic weight
        noise, the expression kept as it is), 0 where the weight is deterministic (p q = 0)."""
        m = problem.model
        wbits = path.wbits[k]
        assert wbits is not None
        p, q = m.probs(k)
        if m.logistic_weights:
            return wbits - p
        ok = p * q > 0
        ratio = torch.where(wbits == 1, 1 / torch.where(ok, p, 1.0), -1 / torch.where(ok, q, 1.0))
        return torch.where(ok, m.weight_density(k) * ratio, 0.0)

    def path_terms(
        self, problem: WeightProblem, path: WeightPath, keep: bool, context: Any = None
    ) -> list[LayerGrad]:
        m = problem.model
        f = m.head.loss(path.z, problem.Y)
        signal = f if context is None else f - context
        pairs = []
        for k in range(m.depth):
            if m.noise is None:
                g_a = torch.zeros_like(path.a[k])
            else:
                g_a = signal[..., None] * m.noise.score(path.a[k], path.on[k], path.bits[k])
            if m.kinds[k] == "bernoulli":
                dtheta = scaled(signal, self.weight_score(problem, path, k), path.per_point, keep)
            else:
                dtheta = outer(g_a, path.inputs[k], keep)
            pairs.append((dtheta, mean_points(g_a, keep)))
        pairs.append(head_grad(problem, path, keep))
        return pairs


# ---- straight-through --------------------------------------------------------------------------


def activation_jacobians(model: WeightSBN, path: WeightPath, sign_proxy: str) -> list[Tensor]:
    """The proxy "dx/da" of every binary layer. Stochastic activations: the principled ST,
    d E[x | a] / d a = c F'(a) (c = 2 for ±1, 1 for {0,1}). Sign activations have no noise: the
    empirical proxies of ``sign_jacobian`` (``hardtanh``, ``identity``, ``tanh``,
    ``approxsign``), the ±1 sign's proxy scaled to the coding."""
    c = coding_scale(model.coding)
    if model.noise is not None:
        return [c * model.noise.pdf_given(a, on) for a, on in zip(path.a, path.on, strict=True)]
    return [sign_jacobian(model, a, sign_proxy) for a in path.a]


def sign_jacobian(model: WeightSBN, a: Tensor, sign_proxy: str) -> Tensor:
    """The proxy "dx/da" of a sign activation (x = sign(a), c/2 times the ±1 proxy's slope):

        identity    c/2                                   (BinaryConnect / BNN "straight-through")
        hardtanh    (c/2) 1[|a| <= 1]                     (BNN's clipped identity)
        tanh        (c/2) (1 - tanh^2 a)
        approxsign  (c/2) max(0, 2 - 2|a|)                (Bi-Real Net's ApproxSign)

    Each bounded proxy is the principled ST Jacobian c F'(a) of a stochastic unit whose noise F
    is uniform on [-1, 1] (hardtanh), logistic with scale 1/2, F(a) = sigmoid(2a) (tanh), or
    triangular on [-1, 1] (approxsign), evaluated on the deterministic path: the empirical proxies
    read as ST estimators of the SBN with that noise, at its mode. References: Hubara et al.,
    arXiv 1602.02830 (hardtanh); Liu et al., "Bi-Real Net", ECCV 2018, arXiv 1808.00278
    (ApproxSign).
    """
    c = coding_scale(model.coding)
    if sign_proxy == "identity":
        return a.new_full((), c / 2)
    if sign_proxy == "tanh":
        return (c / 2) * (1 - torch.tanh(a) ** 2)
    if sign_proxy == "approxsign":
        return (c / 2) * (2 - 2 * a.abs()).clamp(min=0)
    return (c / 2) * (a.abs() <= 1).to(a.dtype)


@dataclass(frozen=True)
class BackwardPass:
    """What the backward pass needs: the matrices each pair multiplied (``weights``: the sampled
    ±1 draws, relaxed weights or real ones; shared [*B, out, in] or per point [*B, N, out, in]
    as ``per_point``), their inputs (``inputs[k]`` multiplies pair k), the "dx/da" of every
    binary layer (``jacobians``), "dW/deta" of every Bernoulli pair (``factors``; None for real
    pairs, and for Bernoulli pairs whose coordinates are dl/dW itself) and the head output z."""

    weights: list[Tensor]
    inputs: list[Tensor]
    jacobians: list[Tensor]
    factors: list[Tensor | None]
    z: Tensor
    per_point: bool


def backward(problem: WeightProblem, bp: BackwardPass, keep: bool = False) -> list[LayerGrad]:
    """Backpropagation along ``bp`` (``layered_estimators.backprop`` with the matrices the forward
    pass used): delta_L = dl/dz W_L, g_{a_k} = delta_k * D_k, delta_{k-1} = g_{a_k} W_k, and per
    layer (d theta_k, d b_k) = (g_{a_k}^T x_{k-1} * dW/deta, g_{a_k}), per point if ``keep``, else
    averaged over the data. A factor that differs per point (relaxed per-point weights) multiplies
    each point's product before the mean."""
    m = problem.model
    dz = m.head.grad(bp.z, problem.Y)
    back = partial(back_weights, per_point=bp.per_point)
    grads = backprop(dz, bp.weights, bp.jacobians, back)
    pairs: list[LayerGrad] = []
    for g_a, x, factor in zip(grads, bp.inputs, bp.factors, strict=False):
        per_point_factor = factor is not None and factor.dim() > g_a.dim()  # [*B, N, out, in]
        dtheta = outer(g_a, x, keep or per_point_factor)
        if factor is not None:
            dtheta = dtheta * factor
        if per_point_factor and not keep:
            dtheta = dtheta.mean(-3)
        pairs.append((dtheta, mean_points(g_a, keep)))
    pairs.append((outer(dz, bp.inputs[-1], keep), mean_points(dz, keep)))
    return pairs


SIGN_PROXY: Hyper = Hyper(
    "hardtanh",
    str,
    choices=("hardtanh", "identity", "tanh", "approxsign"),
    help="proxy derivative of sign activations (no effect with stochastic activations)",
)


class WeightStraightThrough(WeightPathEstimator):
    """Principled straight-through (ST) for Bernoulli weights, ``wrt`` eta (default) or mu.

    Derivation. Write W = sign(eta + L) with L ~ F_w (the model's weight noise), so
    P(W = +1) = F_w(eta) and E[W] = mu = 2 F_w(eta) - 1. The principled ST replaces the derivative
    of the sample by that of its mean, dW/deta ~ d mu / d eta = 2 F_w'(eta), and the loss
    derivative is taken at the sampled network:

        g_mu_k  = dl/dW_k (at the sampled W and states) = mean_n g_{a_k}^T x_{k-1}
        g_eta_k = g_mu_k * 2 F_w'(eta_k)      (``WeightSBN.mean_jacobian``)

    with 2 F_w'(eta) = 2 sigmoid(eta) sigmoid(-eta) for the logistic weight noise and
    1[|eta| <= 1] -- the clipped identity of ``binaryconnect(proxy=hardtanh)`` -- for the uniform
    one (the hard sigmoid). The activations use their principled ST (D = c F'(a), the core
    ``st``) for g_{a_k}, or a BNN proxy for sign activations (``sign_proxy``). The two ``wrt``
    forms are one estimator in two parametrisations. g_mu is the "identity" latent-weight
    gradient of BinaryConnect; for the logistic weight noise a mirror-descent step on mu with the
    Bernoulli negative entropy as mirror map, grad phi(mu) = atanh(mu) = eta / 2, is
    eta <- eta - 2 eps g_mu, i.e. plain SGD on the latent weights with the identity-ST gradient --
    this is how latent weights arise.

    Exactness: the exact gradient is dJ/dmu_ji = (E[l | W_ji = +1] - E[l | W_ji = -1]) / 2, a
    finite difference; ST uses the derivative at the sample. Given W, E[g_mu | W] is the core
    ST's mean on the network with weights W, so E[g_mu] = E_W[E st(W)]. It is unbiased when the
    loss is multilinear in x_L and every E[x | a] is affine in a over the reachable
    pre-activations (uniform noise with |a| <= 1): then the activation ST is exact and E[l | W]
    is multilinear in the weights, so derivative and finite difference agree. None of the
    shipped heads is multilinear in x_L (mse has x_j^2 terms whose derivative does not vanish),
    so with them ST is biased in every layer below the head; the head's pathwise gradient is
    unbiased. Cost: 1 loss evaluation, 1 backward pass.
    Reference: Shekhovtsov & Yanush, arXiv 2006.06880 (GCPR 2021) -- formulas derived here, not
    checked against the paper's equations (see module).
    """

    name = "weight-st"
    family = "straight-through"
    unbiased = "head only"
    reference = "Shekhovtsov & Yanush, arXiv 2006.06880 (GCPR 2021)"
    verified = (
        "exact: E[g] = E_W[core `st` mean on SBN(W)] to 1e-12; unbiased to 1e-10 in every layer "
        "for an affine (test-only) head and uniform noise in its linear range (depth 2, "
        "Bernoulli first layer, both codings), biased there with logistic noise or the mse head "
        "and with sign activations in depth; head unbiased to 1e-10; wrt = μ times dμ/dη equals "
        "wrt = η draw for draw; the mirror-descent step numerically (stationarity of the "
        "Bregman-proximal objective). Hard-sigmoid weights: E[g] = E_W[core `st` mean on "
        "SBN(W)] to 1e-12, and equal to `binaryconnect(proxy=hardtanh)` draw for draw. Probit "
        "weights: wrt = η equals wrt = μ times 2φ(η) draw for draw"
    )
    tests = (
        "tests/test_weights_estimators.py",
        "tests/test_weights_training.py",
        "tests/test_weights_hardsigmoid.py",
        "tests/test_weights_probit.py",
    )
    hyperparameters = {
        **WeightEstimator.hyperparameters,
        "wrt": Hyper("eta", str, choices=("eta", "mu"), help="latent weights or weight means"),
        "sign_proxy": SIGN_PROXY,
    }

    def path_terms(
        self, problem: WeightProblem, path: WeightPath, keep: bool, context: Any = None
    ) -> list[LayerGrad]:
        m = problem.model
        factors: list[Tensor | None] = [
            m.mean_jacobian(k) if kind == "bernoulli" and self.wrt == "eta" else None
            for k, kind in enumerate(m.kinds[:-1])
        ]
        jac = activation_jacobians(m, path, self.params["sign_proxy"])
        bp = BackwardPass(path.weights, path.inputs, jac, factors, path.z, path.per_point)
        return backward(problem, bp, keep)


class BinaryConnect(WeightPathEstimator):
    """Empirical latent-weight straight-through (BinaryConnect / BNN), compared with dJ/dmu
    (``wrt=mu``, default) or dJ/deta (``wrt=eta``).

    The Bernoulli coordinates are the latent-weight update direction dl/dW * P(eta):

    * ``forward=sample``: W drawn from the model's weight distribution, P(W = +1) = F_w(eta)
      (stochastic binarisation); ``forward=sign``: W = sign(eta) with sign(0) = +1 (deterministic
      binarisation, the mode of either weight distribution; the draw is then random only through
      the activations);
    * ``proxy=identity``: P = 1; ``proxy=hardtanh``: P = 1[|eta| <= 1] (the clipped identity).

    ``wrt`` only says which exact gradient the draws are compared with (and how ``estbench run``
    reports them); the draws, and a training step with them, are the same for both.

    What the derivation explains: forward=sample with proxy=identity *is* the principled ST wrt
    mu (``weight-st(wrt=mu)``, identical draws, for every weight noise); used as the step for eta
    it is mirror descent for the logistic weight noise (see ``weight-st``). The clipped identity
    is the principled ST wrt eta of the hard-sigmoid weight model (``weight_noise="uniform"``:
    P(W = +1) = clip((eta + 1)/2, 0, 1), the stochastic binarisation of BinaryConnect), whose
    d mu / d eta = 2 F_w'(eta) = 1[|eta| <= 1]: there forward=sample with proxy=hardtanh equals
    ``weight-st`` (wrt eta) draw for draw, and

        dJ/deta = dJ/dmu * 1[|eta| <= 1],

    so it is compared with dJ/deta by ``binaryconnect(proxy=hardtanh, wrt=eta)``; with the default
    wrt=mu the coordinates with |eta| <= 1 are compared with the same numbers and those with
    |eta| > 1 (deterministic weights: estimate 0, dJ/deta = 0) show the bias -dJ/dmu. With
    sigmoid weights the clipped identity is a heuristic. forward=sign evaluates the gradient at the
    mode of the weight distribution, not at samples: it estimates the gradient of a different
    (deterministic-weight) objective. Activations use the principled ST (stochastic) or
    ``sign_proxy`` (sign), as in ``weight-st``.
    Biased in general (every layer for forward=sign, the head included; the head is pathwise and
    unbiased for forward=sample). Cost: 1 loss evaluation, 1 backward pass.
    References: Courbariaux, Bengio & David, "BinaryConnect", NeurIPS 2015, arXiv 1511.00363;
    Hubara et al., "Binarized neural networks", arXiv 1602.02830; interpretation after
    Shekhovtsov & Yanush, arXiv 2006.06880 (not checked against its equations).
    """

    name = "binaryconnect"
    family = "straight-through"
    unbiased = "head only"  # forward=sample; forward=sign: see ``claim``
    default_wrt = "mu"
    reference = "Courbariaux, Bengio & David, arXiv 1511.00363 (NeurIPS 2015)"
    verified = (
        "forward=sample, proxy=identity equals `weight-st(wrt=mu)` draw for draw; exact mean of "
        "forward=sign (enumerating states) equals the core ST mean on SBN(sign(η)); "
        "hard-sigmoid weights: forward=sample, proxy=hardtanh equals `weight-st(wrt=eta)` draw "
        "for draw"
    )
    tests = ("tests/test_weights_estimators.py", "tests/test_weights_hardsigmoid.py")
    hyperparameters = {
        **WeightEstimator.hyperparameters,
        "forward": Hyper("sample", str, choices=("sample", "sign"), help="binarisation"),
        "proxy": Hyper("identity", str, choices=("identity", "hardtanh"), help="dW/deta proxy"),
        "sign_proxy": SIGN_PROXY,
        "wrt": Hyper(
            "mu",
            str,
            choices=("mu", "eta"),
            help="the exact gradient compared with (the draws do not change)",
        ),
    }

    def claim(self, model: WeightSBN) -> str:
        """forward=sign: deterministic sign(eta) weights, biased everywhere, the head too."""
        return "head only" if self.params["forward"] == "sample" else "no"

    def fixed_weights(self, problem: WeightProblem) -> list[Tensor | None] | None:
        if self.params["forward"] == "sample":
            return None
        m = problem.model
        return [
            (W >= 0).to(W.dtype) if kind == "bernoulli" else None
            for W, kind in zip(m.params, m.kinds, strict=True)
        ]

    def path_terms(
        self, problem: WeightProblem, path: WeightPath, keep: bool, context: Any = None
    ) -> list[LayerGrad]:
        m = problem.model
        factors: list[Tensor | None] = []
        for k, kind in enumerate(m.kinds[:-1]):
            clipped = kind == "bernoulli" and self.params["proxy"] == "hardtanh"
            factors.append((m.params[k].abs() <= 1).to(m.dtype) if clipped else None)
        jac = activation_jacobians(m, path, self.params["sign_proxy"])
        bp = BackwardPass(path.weights, path.inputs, jac, factors, path.z, path.per_point)
        return backward(problem, bp, keep)


# ---- ARM / DisARM ------------------------------------------------------------------------------


def weight_logit_scale(model: WeightSBN, k: int, p: Tensor, q: Tensor) -> Tensor | None:
    """d phi / d eta for the logit phi = log(p / q) of a Bernoulli weight: F_w'(eta) / (p q)
    (``layered_estimators.logit_scale``), 0 where the weight is deterministic (p q = 0). None for
    the logistic weight noise, where phi = eta (the factor 1, left out so that its draws are
    unchanged). Uniform weight noise: 1 / (2 p q) on |eta| < 1."""
    if model.logistic_weights:
        return None
    return logit_scale(model.weight_density(k), p, q)


class _PairEstimator(PairEstimator, WeightEstimator):
    """Antithetic pairs (``layered_estimators.PairEstimator``) per Bernoulli group: each Bernoulli
    pair's weights and each stochastic activation layer. The base path is drawn from uniforms;
    for group G branch 1 replaces G's bits by the pair's b1 (antithetic 1[u > 1 - p]) and keeps
    every other uniform (common random numbers, upstream and downstream). Per group the estimate
    is (f(b1) - f(b2)) * ``pair_weight`` * d phi / d theta, with f the mean loss over the data
    for shared weights and the point's own loss otherwise (per-point weights, activations)."""

    def bytes_per_draw(self, problem: WeightProblem) -> int:
        return 3 * super().bytes_per_draw(problem)  # the base path, one branch, accumulators

    def evals_per_draw(self, model: WeightSBN) -> float:
        stochastic_layers = 0 if model.noise is None else model.depth
        return 1.0 + len(model.bernoulli_layers) + stochastic_layers

    def _draw(
        self, problem: WeightProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        return self.estimate(problem, draw_uniforms(problem, n_draws, generator, self.per_point))

    def estimate(self, problem: WeightProblem, noise: Uniforms) -> Tensor:
        """[S, P] estimates as a deterministic function of the uniforms."""
        m = problem.model
        base = path_from_uniforms(problem, noise, self.per_point)
        f = m.head.loss(base.z, problem.Y)  # [S, N]

        def loss_change(group: str, k: int, b1: Tensor, b2: Tensor) -> Tensor:
            """f(b1) - f(b2) with group k's bits replaced."""

            def loss(bits: Tensor) -> Tensor:
                path = path_from_uniforms(problem, noise, self.per_point, branch=(group, k, bits))
                return m.head.loss(path.z, problem.Y)

            return loss(b1) - (f if self.branch2_is_base else loss(b2))

        def group_weight(
            u: Tensor, p: Tensor, q: Tensor, b1: Tensor, b2: Tensor, chain: Tensor | None
        ) -> Tensor:
            # ARM's or DisARM's weight for the logit phi, times d phi / d theta: the chain rule as
            # this kind's draws always applied it (given the density instead, DisARM folds it
            # into F'/(2 min(p, q)): the same number, rounded otherwise).
            w = self.pair_weight(u, p, q, b1, b2, None)
            return w if chain is None else w * chain

        pairs: list[LayerGrad] = []
        for k in range(m.depth):
            g_a = torch.zeros_like(base.a[k])
            v = noise.states[k]
            if v is not None and m.noise is not None:
                a, on, off = base.a[k], base.on[k], base.off[k]
                b1, b2 = self.pair(v, on, off)
                # d phi / d a, also for logistic noise (= 1 up to rounding, kept in these draws)
                chain = logit_scale(m.noise.pdf_given(a, on), on, off)
                w = group_weight(v, on, off, b1, b2, chain)
                g_a = self.unit_gradient(loss_change("states", k, b1, b2), w)
            if m.kinds[k] == "bernoulli":
                u = noise.weights[k]
                assert u is not None
                p, q = m.probs(k)
                b1, b2 = self.pair(u, p, q)
                w = group_weight(u, p, q, b1, b2, weight_logit_scale(m, k, p, q))
                dtheta = scaled(loss_change("weights", k, b1, b2), w, self.per_point, False)
            else:
                dtheta = outer(g_a, base.inputs[k], False)
            pairs.append((dtheta, g_a.mean(-2)))
        pairs.append(head_grad(problem, base, False))
        return flatten(pairs)


class WeightARM(ARMPairs, _PairEstimator):
    """ARM per Bernoulli group (weights of each Bernoulli pair, states of each stochastic
    layer), wrt eta.

    For a group of independent Bernoullis with logits phi, u ~ U(0,1)^n, base b = 1[u < p] and
    antithetic b' = 1[u > 1 - p]:  g_phi = (f(b') - f(b)) (u - 1/2)  (Yin & Zhou, Theorem 1).
    Weights: phi = logit F_w(eta), g_eta = g_phi F_w'(eta) / (p q) (``weight_logit_scale``;
    phi = eta, factor 1, for the logistic weight noise; 0 for a deterministic weight), f = mean_n
    l_n (shared) or l_n with that point's u (per point).
    Activations: phi = logit F(a), g_a = g_phi F'(a) / (F(a) F(-a)) per point (factor 1 for
    logistic noise); biases and real weights from g_a, the head pathwise at the base path. Every
    other uniform is shared by both branches (common random numbers): given them, f is a fixed
    function of the group's bits, so each group's estimate is unbiased, and so is the sum.
    Unbiased in every layer. Cost: 1 + (#Bernoulli pairs) + (#stochastic layers) loss
    evaluations per draw. Reference: Yin & Zhou, ICLR 2019, arXiv 1807.11143; the same pair and
    weight as the core ``arm``.
    """

    name = "weight-arm"
    reference = "Yin & Zhou, ICLR 2019, arXiv 1807.11143"
    verified = (
        "statistically unbiased (per-coordinate z with Bonferroni, false-fail rate 1e-3) in "
        "both modes, stochastic and sign activations, every weight noise; exactly unbiased over "
        "the cells of the uniforms (sign activations); negative controls: the complement pair "
        "(b′ = 1 − b) fails both tests, and so does the estimate without dφ/dη for hard-sigmoid "
        "weights (and the z-test for probit weights)"
    )
    tests = ("tests/test_weights_estimators.py", "tests/test_weights_hardsigmoid.py")


class WeightDisARM(DisARMPairs, _PairEstimator):
    """DisARM (= U2G) per Bernoulli group, wrt eta: the ARM pair with the augmentation noise
    integrated out,

        g_phi = (1/2) (f(b') - f(b)) (b' - b) sigmoid(|phi|),

    (Dong, Mnih & Tucker; sigmoid(|phi|) = max(p, 1 - p)); activations through d phi / d a and
    weights through d phi / d eta (uniform weight noise) as for ARM. Exactly 0 for a group whose
    pair equals its base. Unbiased in every layer; the same branches and cost as ``weight-arm``.
    Reference: Dong, Mnih & Tucker, NeurIPS 2020, arXiv 2006.10680; the same weight as the core
    ``disarm``.
    """

    name = "weight-disarm"
    reference = "Dong, Mnih & Tucker, NeurIPS 2020, arXiv 2006.10680"
    verified = (
        "statistically unbiased (per-coordinate z with Bonferroni, false-fail rate 1e-3) in "
        "both modes, stochastic and sign activations, every weight noise; exactly unbiased over "
        "the cells of the uniforms (sign activations); negative control: the estimate without "
        "dφ/dη fails the cell test for hard-sigmoid weights"
    )
    tests = ("tests/test_weights_estimators.py", "tests/test_weights_hardsigmoid.py")


# The relaxation family and the estimators of issue 19 build on the helpers above, hence the
# late imports.
from .logit_st import WeightGappedST, WeightReinMax  # noqa: E402
from .loo_cv import WeightDoubleCV, WeightRODEO  # noqa: E402
from .multisample import WeightARMS, WeightCARMS  # noqa: E402
from .relaxed import (  # noqa: E402
    WeightConcrete,
    WeightGumbelRao,
    WeightStraightThroughGumbelSoftmax,
)

ESTIMATORS: list[type[WeightEstimator]] = [
    WeightReinforce,
    WeightStraightThrough,
    BinaryConnect,
    WeightARM,
    WeightDisARM,
    WeightConcrete,
    WeightStraightThroughGumbelSoftmax,
    WeightGumbelRao,
    WeightARMS,
    WeightCARMS,
    WeightReinMax,
    WeightGappedST,
    WeightDoubleCV,
    WeightRODEO,
]
