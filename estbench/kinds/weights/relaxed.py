"""The relaxation family for stochastic binary weights: Concrete, ST Gumbel-Softmax, Gumbel-Rao.

**Weights.** A Bernoulli weight is the sign of a noisy threshold: W = sign(eta + L) with
L = -F_w^{-1}(u), u ~ U(0, 1), F_w the model's weight noise, so W = +1 iff u < F_w(eta) -- the
sampling convention of ``paths.draw_uniforms`` / ``path_from_uniforms``, whose uniform u each
relaxation reuses. The binary Concrete (Gumbel-Softmax, sigma-form temperature) relaxes it, as the
core ``concrete`` relaxes an activation with S = F_w, to

    y = (eta + L) / tau,   W~ = 2 F_w(y) - 1,   dW~/deta = (2 / tau) F_w'(y)
                                                 (the factor 2 of the ±1 coding).

Logistic weight noise (default): L = -logit(u), W~ = 2 sigmoid(y) - 1 = tanh(y / 2) in (-1, 1),
dW~/deta = (2 / tau) sigmoid(y) sigmoid(-y). Uniform weight noise (the hard sigmoid): L = 1 - 2u,
W~ = clip(y, -1, 1) (a hardtanh of the noisy latent weight), dW~/deta = (1 / tau) 1[|y| <= 1]. Both
tend to the hard sample W as tau -> 0 and to 0 as tau -> infinity.

**Stochastic activations** are relaxed as the core ``concrete`` relaxes them (module
``estbench.kinds.sbn.estimators.relaxed``): on iff v < F(a), L' = -F^{-1}(v),
x~ = S((a + L')/tau) with
S = F ({0,1}) or 2 S - 1 (±1), dx~/da = c tau^-1 F'((a + L')/tau), c = 1 or 2, with the same
tau as the weights.

**Sign activations** have no noise to relax. Choice made here: they stay hard in the forward
pass, sign(a) with the tie rule of the model (on iff a >= 0), and the backward pass goes through
the proxy of ``weight-st`` (``sign_proxy``: (c/2) 1[|a| <= 1] for ``hardtanh``, c/2 for
``identity``, or ``tanh`` / ``approxsign``; see ``estimators.sign_jacobian``). Without a proxy
the relaxed loss would be piecewise constant in everything below the last sign layer, and every
Bernoulli pair feeds a sign layer (the head is real), so every relaxed weight gradient would be 0
almost surely. With sign activations ``weight-concrete`` is therefore "relaxed weights,
straight-through activations": the exact gradient of the relaxed loss
in the head only, the proxy's gradient below it.

The estimates are written by hand (no autograd), vectorised over draws, points and units; the
backward pass is the straight-through estimators' (``estimators.backward``) along the relaxed
pass, with the weight factor per draw (shared weights) or per draw and point (per-point weights).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ...estimators.base import Hyper
from ..sbn.estimators.ops import uniforms
from ..sbn.estimators.relaxed import TAU, open_unit
from ..sbn.model import NOISES, Noise, coding_scale, encode
from .estimators import (
    SIGN_PROXY,
    WEIGHTS_MODE,
    BackwardPass,
    WeightEstimator,
    backward,
    flatten,
    sign_jacobian,
)
from .model import WeightProblem, WeightSBN
from .paths import Uniforms, apply_weights, draw_uniforms, path_from_uniforms


def weight_argument(
    eta: Tensor, u: Tensor, tau: float, noise: Noise = NOISES["logistic"]
) -> Tensor:
    """y = (eta + L) / tau with L = -F_w^{-1}(u) (-logit(u) for the logistic weight noise):
    y > 0 iff u < F_w(eta), the hard sample of the same uniform. ``u`` is not modified."""
    return (eta - noise.icdf(open_unit(u))) / tau


def state_argument(noise: Noise, a: Tensor, v: Tensor, tau: float) -> Tensor:
    """y = (a + L') / tau with L' = -F^{-1}(v): y > 0 iff v < F(a). ``v`` is not modified."""
    return (a - noise.icdf(open_unit(v))) / tau


def conditional_kernels(
    noise: Noise,
    a: Tensor,
    bits: Tensor,
    tau: float,
    extra: int,
    generator: torch.Generator | None,
) -> Tensor | None:
    """sum_{i=1..extra} F'((a + L_i) / tau) over noises L_i drawn from the law of L given the
    hard state ``bits`` (1 iff a + L > 0), by inversion in the lower tail of the state's side:
    z = F^{-1}(v F(a)) < a if on (L = -z), L = F^{-1}(v F(-a)) < -a if off. None if extra = 0."""
    if extra == 0:
        return None
    if generator is None:
        raise ValueError("the conditional noise needs a generator")
    mass = torch.where(bits == 1, noise.cdf(a), noise.cdf(-a))
    side = 1 - 2 * bits  # on: y = (a - z)/tau; off: y = (a + L)/tau
    total = None
    for _ in range(extra):  # K - 1 conditional noises; the working set stays one weight tensor
        q = noise.icdf(open_unit(uniforms(mass.shape, generator, mass).mul_(mass), inplace=True))
        kernel = noise.pdf((a + side * q) / tau)
        total = kernel if total is None else total.add_(kernel)
    return total


class _WeightRelaxedBase(WeightEstimator):
    """Shared parts: hyperparameters, the weight Jacobian, drawing from ``draw_uniforms``."""

    family = "relaxation"
    hyperparameters = {"weights": WEIGHTS_MODE, "tau": TAU, "sign_proxy": SIGN_PROXY}
    weight_coding: ClassVar[float] = 2.0  # W~ = 2 s - 1: d W~ / d s for ±1 weights

    def weight_jacobian(self, model: WeightSBN, y: Tensor) -> Tensor:
        """dW~/deta = (2 / tau) F_w'(y) at y = (eta + L) / tau: (2 / tau) sigmoid(y) sigmoid(-y)
        (logistic weight noise), (1 / tau) 1[|y| <= 1] (uniform)."""
        c = self.weight_coding / self.params["tau"]
        if model.logistic_weights:
            return c * torch.sigmoid(y) * torch.sigmoid(-y)
        return c * model.weight_noise.pdf(y)

    def bytes_per_draw(self, problem: WeightProblem) -> int:
        # Beyond the base: the uniforms, y, the relaxed weights and dW/deta per weight, and the
        # per-point outer product of the backward pass.
        m = problem.model
        weights = sum(W.numel() for W in m.params) * (problem.n_points if self.per_point else 1)
        return super().bytes_per_draw(problem) + 8 * 5 * weights

    def _draw(
        self, problem: WeightProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        noise = draw_uniforms(problem, n_draws, generator, self.per_point)
        out = self.estimate(problem, noise, generator)
        return out.expand(n_draws, -1).contiguous() if out.dim() == 1 else out

    def estimate(
        self, problem: WeightProblem, noise: Uniforms, generator: torch.Generator | None = None
    ) -> Tensor:
        """[S, P] estimates as a function of the uniforms (and, for Gumbel-Rao, of the extra
        conditional noise drawn from ``generator``)."""
        return flatten(backward(problem, self.relaxed_pass(problem, noise, generator)))

    def relaxed_pass(
        self, problem: WeightProblem, noise: Uniforms, generator: torch.Generator | None
    ) -> BackwardPass:
        raise NotImplementedError


class WeightConcrete(_WeightRelaxedBase):
    """Binary Concrete / Gumbel-Softmax for Bernoulli weights (and stochastic activations),
    wrt eta: the exact pathwise gradient of the relaxed loss.

    Forward, from the uniforms of ``draw_uniforms`` (module docstring): every Bernoulli weight
    W~ = 2 F_w((eta + L)/tau) - 1, L = -F_w^{-1}(u) (tanh((eta + L)/(2 tau)), L = -logit(u), for
    the logistic weight noise; clip((eta + L)/tau, -1, 1), L = 1 - 2u, for the uniform one); every
    stochastic unit x~ = S((a~ + L')/tau) (2S - 1 for ±1) with a~ computed from the relaxed
    weights and inputs; sign units hard, sign(a~). The estimate is d l(W_L x~_L + b_L, y) along
    this pass:

        g_eta_k = mean_n (g_{a_k}^T x~_{k-1}) * (2/tau) F_w'(y_k),
        g_{a_k} = delta_k * c tau^-1 F'((a~_k + L'_k)/tau)   (sign: ``sign_proxy``),
        delta_{k-1} = g_{a_k} W~_k,   real weights and biases from g_{a_k}, the head at x~_L.

    Derivation: W~ is a smooth (uniform weight noise: Lipschitz, piecewise linear) function of
    (eta, L) with the law of L free of eta, so E_L[d l~/d eta] = d E_L[l~]/d eta (the
    reparameterisation trick; for the clip the kinks have probability 0); dW~/deta =
    2 F_w'(y) dy/deta with dy/deta = 1/tau (logistic: d tanh(y/2)/dy = 2 sigmoid(y) sigmoid(-y)).

    Biased in every layer, the head included, for every tau > 0: it estimates the gradient of
    the relaxed objective E[l~], not of J (with sign activations also through the proxy).
    Variance grows as tau -> 0 (dW~/deta concentrates near y = 0). Cost: 1 relaxed loss
    evaluation, 1 backward pass. wrt = eta only.
    References: Maddison, Mnih & Teh, "The Concrete distribution", arXiv 1611.00712; Jang, Gu &
    Poole, "Categorical reparameterization with Gumbel-Softmax", arXiv 1611.01144.
    """

    name = "weight-concrete"
    unbiased = "no"
    reference = "Maddison et al., arXiv 1611.00712; Jang et al., arXiv 1611.01144 (ICLR 2017)"
    verified = (
        "torch autograd of the relaxed forward pass rebuilt from the same uniforms, to 1e-10 "
        "(both modes, logistic/gaussian/sign activations, both codings, real and Bernoulli "
        "first layer, every weight noise); E[g_η] of a one-weight network against quadrature by "
        "a z-test (false-fail rate 1e-4); the limits τ → 0 (hard sample) and τ → ∞ (W̃ → 0); "
        "`check_estimator`; negative control: a factor-1 Jacobian fails the z-test"
    )
    tests = ("tests/test_weights_relaxed.py", "tests/test_weights_hardsigmoid.py")

    def relaxed_pass(
        self, problem: WeightProblem, noise: Uniforms, generator: torch.Generator | None = None
    ) -> BackwardPass:
        m, tau = problem.model, self.params["tau"]
        weights: list[Tensor] = []
        factors: list[Tensor | None] = []
        for W, u in zip(m.params, noise.weights, strict=True):
            if u is None:
                weights.append(W)
                factors.append(None)
                continue
            y = weight_argument(W, u, tau, m.weight_noise)
            relaxed = torch.tanh(y / 2) if m.logistic_weights else 2 * m.weight_noise.cdf(y) - 1
            weights.append(relaxed)
            factors.append(self.weight_jacobian(m, y))
        x: Tensor = problem.X
        inputs, jacobians = [x], []
        for k in range(m.depth):
            a = apply_weights(weights[k], x, self.per_point) + m.biases[k]
            v = noise.states[k]
            if m.noise is None or v is None:  # sign: hard forward, proxy backward
                x = encode((a >= 0).to(a.dtype), m.coding)
                jacobians.append(sign_jacobian(m, a, self.params["sign_proxy"]))
            else:
                y = state_argument(m.noise, a, v, tau)
                s = m.noise.cdf(y)
                x = s if m.coding == "01" else 2 * s - 1
                jacobians.append(m.noise.pdf_given(y, s) * (coding_scale(m.coding) / tau))
            inputs.append(x)
        z = apply_weights(weights[-1], x, self.per_point) + m.biases[-1]
        return BackwardPass(weights, inputs, jacobians, factors, z, self.per_point)


class WeightStraightThroughGumbelSoftmax(_WeightRelaxedBase):
    """Straight-through Gumbel-Softmax (ST-GS) for Bernoulli weights, wrt eta.

    Forward: the SBN's own hard sample (``paths.path_from_uniforms`` with the same uniforms:
    W = sign(eta + L), states on iff v < F(a)). Backward: the recursion of ``weight-st`` with the
    relaxed Jacobians of the noise that made the sample,

        g_eta_k = mean_n (g_{a_k}^T x_{k-1}) * (2/tau) F_w'(y_k),
        y_k = (eta_k + L_k)/tau,   L_k = -F_w^{-1}(u_k)   (F_w = sigmoid by default),
        g_{a_k} = delta_k * c tau^-1 F'((a_k + L'_k)/tau)     (sign activations: ``sign_proxy``),

    with a_k, x_{k-1} and delta_{k-1} = g_{a_k} W_k on the hard path (W_k the sampled ±1 weights).
    Derivation: the derivative of the relaxed sample is used as a proxy for that of the hard
    one, d W / d eta ~ d W~ / d eta at the same L.

    Biased in every binary layer, even for an affine loss: E_L[(2/tau) sigmoid'(y)] =
    E[dW~/deta] is not d mu/d eta = 2 F_w'(eta) in general (the core spec §3.2 argument; with
    the uniform weight noise a deterministic weight, |eta| > 1, still gets a nonzero Jacobian
    wherever |eta + L| <= tau).
    The head gradient is pathwise at the hard sample, so unbiased ("head only"). Cost: 1 loss
    evaluation, 1 backward pass.
    Reference: Jang, Gu & Poole, arXiv 1611.01144 (ICLR 2017).
    """

    name = "weight-st-gs"
    unbiased = "head only"
    reference = "Jang, Gu & Poole, arXiv 1611.01144 (ICLR 2017)"
    verified = (
        "the hard forward equals `path_from_uniforms`' and the estimate equals autograd of hard "
        "+ (relaxed − relaxed.detach()) with the same uniforms, to 1e-10 (hard-sigmoid and "
        "probit weights too); E[g_η] of a one-weight network with a stochastic unit against "
        "quadrature by a z-test (false-fail rate 1e-4; the factor-1 Jacobian fails); head "
        "unbiased and the bias below it measured against the exact gradient; `check_estimator`"
    )
    tests = ("tests/test_weights_relaxed.py", "tests/test_weights_hardsigmoid.py")

    def extra_kernels(self) -> int:
        """Conditional noises beyond the forward pass's own (0 for ST-GS)."""
        return 0

    def relaxed_pass(
        self, problem: WeightProblem, noise: Uniforms, generator: torch.Generator | None = None
    ) -> BackwardPass:
        m, tau, extra = problem.model, self.params["tau"], self.extra_kernels()
        path = path_from_uniforms(problem, noise, self.per_point)
        noise_w = m.weight_noise
        mean_of = 1 + extra
        factors: list[Tensor | None] = []
        for eta, u, wbits in zip(m.params, noise.weights, path.wbits, strict=True):
            if u is None or wbits is None:
                factors.append(None)
                continue
            kern = noise_w.pdf(weight_argument(eta, u, tau, noise_w))
            more = conditional_kernels(noise_w, eta, wbits, tau, extra, generator)
            if more is not None:
                kern = kern + more
            factors.append(kern * (self.weight_coding / (tau * mean_of)))
        jacobians: list[Tensor] = []
        for k, v in enumerate(noise.states):
            a = path.a[k]
            if m.noise is None or v is None:
                jacobians.append(sign_jacobian(m, a, self.params["sign_proxy"]))
                continue
            kern = m.noise.pdf(state_argument(m.noise, a, v, tau))
            more = conditional_kernels(m.noise, a, path.bits[k], tau, extra, generator)
            if more is not None:
                kern = kern + more
            jacobians.append(kern * (coding_scale(m.coding) / (tau * mean_of)))
        return BackwardPass(path.weights, path.inputs, jacobians, factors, path.z, self.per_point)


class WeightGumbelRao(WeightStraightThroughGumbelSoftmax):
    """Gumbel-Rao (GR-MC_K): ST-GS for weights with each relaxed Jacobian averaged over K
    noises drawn from the law of the noise **given** the hard sample, wrt eta.

        dW/deta ~ (2 / (tau K)) sum_i F_w'((eta + L_i)/tau),       L_i ~ F_w | W,
        dx/da   ~ (c / (tau K)) sum_i F'((a + L'_i)/tau),           L'_i ~ F | state,

    i.e. conditioned on sign(eta + L_i) = W and sign(a + L'_i) = the sampled state

    (sign activations: ``sign_proxy``, nothing to average). The conditional noise is drawn by
    inversion from fresh uniforms (``conditional_kernels``); the forward pass's own L has that
    conditional law, so it is L_1 and K - 1 fresh noises are added: K = 1 is ``weight-st-gs``
    draw for draw. Derivation: given the hard path (every W and x), the ST-GS estimate is linear
    in each Jacobian entry and the entries' noises are conditionally independent, so averaging
    the Jacobians over conditional draws estimates E[ST-GS | path] unbiasedly: the same mean as
    ST-GS, a smaller variance (the partial-derivative reading of the paper; the L_i carry no
    gradient). Biased like ST-GS below the head; head pathwise, unbiased.
    Cost: 1 loss evaluation, 1 backward pass, K - 1 extra noise draws and kernel evaluations
    per weight and stochastic unit.
    Reference: Paulus, Maddison & Krause, "Rao-Blackwellizing the straight-through
    Gumbel-Softmax gradient estimator", ICLR 2021, arXiv 2010.04838.
    """

    name = "weight-gumbel-rao"
    reference = "Paulus, Maddison & Krause, arXiv 2010.04838 (ICLR 2021)"
    verified = (
        "K = 1 equals `weight-st-gs` draw for draw; at K = 10 the paired difference from ST-GS "
        "on the same hard path has mean 0 (z-test, false-fail rate 1e-4; with hard-sigmoid "
        "weights 1e-3) and the variance is lower; `check_estimator`"
    )
    tests = ("tests/test_weights_relaxed.py", "tests/test_weights_hardsigmoid.py")
    hyperparameters = {
        **_WeightRelaxedBase.hyperparameters,
        "k": Hyper(10, int, minimum=1, help="conditional noise samples per weight and unit"),
    }

    def extra_kernels(self) -> int:
        return self.params["k"] - 1

    def bytes_per_draw(self, problem: WeightProblem) -> int:
        m = problem.model
        weights = sum(W.numel() for W in m.params) * (problem.n_points if self.per_point else 1)
        return super().bytes_per_draw(problem) + 8 * 4 * weights  # mass, side, q, kernel sum
