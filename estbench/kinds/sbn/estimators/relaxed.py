"""Relaxation family: estimators built on the noise of the sampled threshold (spec §3).

A binary unit is x = sign(a - z) with z ~ F, i.e. on iff a + L > 0 with L = -z (F symmetric, so
L ~ F). The relaxed unit replaces the step by a soft step S of temperature tau,

    s = S((a + L) / tau) in (0, 1);   x~ = s ({0,1} states) or 2s - 1 (+-1 states),

and "dx/da" by c tau^-1 S'((a + L) / tau), with c = 2 for +-1 and 1 for {0,1} states.

**Which soft step.** S is the model's own noise CDF F. For logistic noise (the default and the
seed study's) S = sigmoid: the binary Concrete / Gumbel-Softmax in the sigma-form temperature
convention of Maddison et al. and Jang et al. -- PSA's ``GumbelMethod`` writes tanh((a - Z)/T)
with T = 2 tau (pitfall P9). For Gaussian noise S = Phi and for uniform noise on [-1, 1]
S = clip((y + 1)/2, 0, 1): an F-based relaxation of the same threshold, which turns into the
hard step as tau -> 0 and reduces to the standard construction for logistic noise. Only the
logistic case is the published estimator; the others are estbench's extension, so results for
them are labelled by the noise.

**Noise and sampling convention.** As ``ops.sample_path``: u ~ U(0, 1) per unit, the unit is on
iff u < F(a), and z = F^{-1}(u) (so L = -F^{-1}(u)); u is clamped into the open interval before
F^{-1} (pitfall P11). The hard estimators (``st-gs``, ``gumbel-rao``) therefore sample exactly the
paths that ``st`` samples from the same generator state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Estimator, Hyper
from ...layered_estimators import backprop
from ..model import SBN, Noise, Problem, coding_scale
from .ops import assemble, first_preactivation, head_grad, preactivation, uniforms

TAU = Hyper(
    1.0,
    float,
    minimum=0.0,
    exclusive=True,
    help="temperature tau of the sigma-form relaxation S((a + L) / tau)",
)


def open_unit(u: Tensor, *, inplace: bool = False) -> Tensor:
    """u clamped into (0, 1), so that F^{-1}(u) is finite for every noise (pitfall P11)."""
    info = torch.finfo(u.dtype)
    clamp = u.clamp_ if inplace else u.clamp
    return clamp(info.tiny, 1 - info.eps / 2)


def relaxed_argument(noise: Noise, a: Tensor, u: Tensor, tau: float) -> Tensor:
    """y = (a + L) / tau with L = -F^{-1}(u): the soft step's argument for the unit drawn with
    uniform u (on iff u < F(a) iff y > 0). ``u`` is consumed (overwritten in place)."""
    u = open_unit(u, inplace=True)
    # In-place updates of the fresh tensor: these passes are memory-bound. a - y is -y + a
    # bit for bit; dividing by tau = 1 is skipped (exact).
    y = u.logit_() if noise.name == "logistic" else noise.icdf(u)
    y = torch.sub(a, y, out=y)
    return y if tau == 1 else y.div_(tau)


class Concrete(Estimator[Problem, SBN]):
    """Binary Concrete / Gumbel-Softmax, fully relaxed: the pathwise gradient of E[f(x~_L)].

    Every binary layer is relaxed, x~_k = S((a_k(x~_{k-1}) + L_k) / tau) ({0,1}) or
    2 S(.) - 1 (+-1), with L_k = -F^{-1}(u_k) and S = F (sigmoid for logistic noise; see the
    module docstring for other noises). The relaxed values feed the next layer and the head,
    and the estimate is the exact gradient of l(W_L x~_L + b_L, y) for that noise: the §1.4
    recursion with D_k = c tau^-1 S'((a_k + L_k)/tau), where a_k, and the inputs of every weight
    gradient, are the relaxed ones. Written out by hand (no autograd), vectorised over draws,
    points and units.

    It estimates the gradient of a different objective, E[f(x~_L)], so it is biased in every
    layer, the head included, for every tau > 0; its variance grows as tau -> 0. It needs f
    (and the layers) on real inputs, so the result depends on the real extension (P10).
    One-unit mean (spec §5.1): E = int sigma'(l) f'(sigma((theta + l)/tau))
    tau^-1 sigma'((theta + l)/tau) dl. Cost: 1 relaxed loss evaluation, 1 backward pass.

    References: Maddison, Mnih & Teh, "The Concrete distribution", arXiv 1611.00712; Jang, Gu &
    Poole, "Categorical reparameterization with Gumbel-Softmax", arXiv 1611.01144.
    Provenance: [code] equals the seed study's ``concrete`` (shekhovt/PSA-Neurips2020,
    ``gradeval/model.py`` ``fw_concrete``: sigmoid((a - Z)/tau), Z = logit(U), relaxed values
    fed forward, {0,1} states; our a + L with L = -Z is the same).
    """

    name = "concrete"
    family = "relaxation"
    unbiased = "no"
    reference = "Maddison et al., arXiv 1611.00712; Jang et al., arXiv 1611.01144 (ICLR 2017)"
    verified = (
        'toy: the §5.1 quadrature mean and the anchor "E Concrete" by Monte Carlo z-tests; '
        "autograd of the relaxed objective with the same noise; coding invariance of the first "
        "layer; negative control: a wrong temperature convention (tanh((a + L)/τ) in ±1 coding, "
        "pitfall P9)"
    )
    tests = ("tests/test_relaxed_estimators.py",)
    hyperparameters = {"tau": TAU}

    def _draw(
        self, problem: Problem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        m = problem.model
        noise, tau, c = m.noise, self.params["tau"], coding_scale(problem.model.coding)
        a0 = first_preactivation(problem)
        a = a0.expand(n_draws, *a0.shape)
        x = problem.X
        inputs, jacobians = [x], []
        for k in range(m.depth):
            if k > 0:
                a = preactivation(problem, k, x)
            y = relaxed_argument(noise, a, uniforms(a.shape, generator, a), tau)
            if noise.name == "logistic":  # S = sigmoid in place; F' needs only S (p (1 - p))
                s = y.sigmoid_()
                jac = noise.pdf_given(s, s)
            else:
                s = noise.cdf(y)
                jac = noise.pdf_given(y, s)
            jacobians.append(jac if c == tau else jac.mul_(c / tau))  # x 1.0 skipped (exact)
            x = s if c == 1 else 2 * s - 1
            inputs.append(x)
        dz = head_grad(problem, preactivation(problem, m.depth, x))
        grads = backprop(dz, problem.model.weights, jacobians)
        terms = [[(g, inp)] for g, inp in zip(grads, inputs, strict=False)] + [[(dz, x)]]
        return assemble(problem, terms, per_point=False)


class _HardRelaxedBase(Estimator[Problem, SBN]):
    """Hard forward pass (the SBN's own path) with a relaxed Jacobian in the §1.4 recursion."""

    family = "relaxation"
    unbiased = "head only"

    def conditional_kernels(
        self, problem: Problem, a: Tensor, p: Tensor, bits: Tensor, generator: torch.Generator
    ) -> Tensor | None:
        """Sum over extra conditional noises of S'((a + L^(i)) / tau), or None (ST-GS)."""
        return None

    def n_kernels(self) -> int:
        return 1

    def _draw(
        self, problem: Problem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        m = problem.model
        noise, tau, c = m.noise, self.params["tau"], coding_scale(problem.model.coding)
        a0 = first_preactivation(problem)
        a = a0.expand(n_draws, *a0.shape)
        x = problem.X
        inputs, As, ps, bits, kernels = [x], [], [], [], []
        # Forward: the generator is consumed exactly as ops.sample_path consumes it.
        for k in range(m.depth):
            if k > 0:
                a = preactivation(problem, k, x)
            p = noise.cdf(a)
            u = uniforms(a.shape, generator, a)
            b = (u < p).to(a.dtype)
            kernels.append(noise.pdf(relaxed_argument(noise, a, u, tau)))
            x = b if c == 1 else 2 * b - 1
            inputs.append(x)
            As.append(a)
            ps.append(p)
            bits.append(b)
        jacobians = []
        for a, p, b, kern in zip(As, ps, bits, kernels, strict=True):
            extra = self.conditional_kernels(problem, a, p, b, generator)
            if extra is not None:
                kern.add_(extra)
            jacobians.append(kern.mul_(c / (tau * self.n_kernels())))
        dz = head_grad(problem, preactivation(problem, m.depth, x))
        grads = backprop(dz, problem.model.weights, jacobians)
        terms = [[(g, inp)] for g, inp in zip(grads, inputs, strict=False)] + [[(dz, x)]]
        return assemble(problem, terms, per_point=False)


class StraightThroughGumbelSoftmax(_HardRelaxedBase):
    """Straight-through Gumbel-Softmax (ST-GS): hard forward, relaxed backward.

    Forward: the SBN's own sample, on iff a + L > 0 (L = -F^{-1}(u), logistic by default).
    Backward: the §1.4 recursion with D = tau^-1 S'((a + L)/tau) for {0,1} states and
    2 tau^-1 S'((a + L)/tau) for +-1 states, S = F (sigmoid for logistic noise; module
    docstring for the others), with the same L that made the hard state.

    Biased in every binary layer, even for affine f: E_L[tau^-1 sigma'((a + L)/tau)] is not
    sigma'(a) (spec §3.2). The head gradient is pathwise at the hard state, hence unbiased.
    One unit (spec §5.1): E = f'(1) A + f'(0) B with A, B the two halves of
    int sigma'(l) tau^-1 sigma'((theta + l)/tau) dl split at l = -theta.
    Cost: 1 loss evaluation, 1 backward pass.
    Reference: Jang, Gu & Poole, arXiv 1611.01144 (ICLR 2017). It samples the same paths as
    ``st``.
    """

    name = "st-gs"
    reference = "Jang, Gu & Poole, arXiv 1611.01144 (ICLR 2017)"
    verified = (
        'toy: the §5.1 quadrature mean and second moment and the anchors "E ST-GS", "Var ST-GS" '
        "by Monte Carlo z-tests; samples the same paths as `st`"
    )
    tests = ("tests/test_relaxed_estimators.py",)
    hyperparameters = {"tau": TAU}


class GumbelRao(_HardRelaxedBase):
    """Gumbel-Rao Monte Carlo (GR-MC_K), specialised to binary units.

    Forward as ST-GS. Backward: the §1.4 recursion with the ST-GS Jacobian averaged over K
    noises drawn from the **conditional** law of L given the sampled state (spec §3.3):

        D = c / (tau K) * sum_i S'((a + L^(i)) / tau),   L^(i) ~ F | sign(a + L^(i)) = x,

    c = 2 (+-1) or 1 ({0,1}). The conditional noise is drawn by inversion from fresh
    v ~ U(0, 1): z = F^{-1}(v F(a)) and L = -z if the unit is on, L = F^{-1}(v F(-a)) if off --
    the spec's u' construction written through the lower tail of F for accuracy at saturated
    units. The forward pass's own L has exactly this conditional law given the state, so it
    serves as L^(1) and K - 1 fresh draws are added: K = 1 reproduces ``st-gs`` draw for draw.

    The derivative is partial (pitfall P5): the L^(i) carry no gradient, so D is computed
    directly and the estimator has the ST-GS mean for every K with a smaller variance (the
    K -> infinity limit is the conditional expectation of deep ST-GS given the path).
    Biased like ST-GS in every binary layer; unbiased in the head (pathwise at hard states).
    One-unit second moment: spec §5.1. Cost: 1 loss evaluation, 1 backward pass, and
    (K - 1) extra noise draws and kernel evaluations per unit.

    Reference: Paulus, Maddison & Krause, "Rao-Blackwellizing the straight-through
    Gumbel-Softmax gradient estimator", ICLR 2021, arXiv 2010.04838. Provenance: [code] the
    partial-derivative reading agrees with nshepperd/gumbel-rao-pytorch (``gumbel_rao.py``,
    which argues the paper's "total derivative" sentence is a mistake because only the partial
    form keeps the ST-GS mean). The paper's set of K values was not checked.
    """

    name = "gumbel-rao"
    reference = "Paulus, Maddison & Krause, arXiv 2010.04838 (ICLR 2021)"
    verified = (
        'toy: the §5.1 quadrature moments and the anchor "Var GR (K = 10)"; the ST-GS mean on '
        "deep networks by a paired z-test, with lower variance; K = 1 is `st-gs` draw for draw; "
        "negative control: the total-derivative form (pitfall P5)"
    )
    tests = ("tests/test_relaxed_estimators.py",)
    hyperparameters = {
        "tau": TAU,
        "k": Hyper(10, int, minimum=1, help="conditional noise samples per unit"),
    }

    def n_kernels(self) -> int:
        return self.params["k"]

    def conditional_kernels(
        self, problem: Problem, a: Tensor, p: Tensor, bits: Tensor, generator: torch.Generator
    ) -> Tensor | None:
        extra = self.params["k"] - 1
        if extra == 0:
            return None
        noise, tau = problem.model.noise, self.params["tau"]
        # Lower-tail quantiles of the side the state is on: z < a (on) or -z < -a (off), so
        # y = (a - q) / tau if on and (a + q) / tau if off.
        mass = torch.where(bits == 1, p, noise.cdf(-a))
        a_tau, sign_tau = a / tau, (1 - 2 * bits) / tau
        total = None
        # One [S, N, n] tensor at a time, looping over K, stays in cache (a [K - 1, S, N, n] batch
        # does not: docs/performance.md); every op after the draw is in place on fresh tensors.
        for _ in range(extra):
            v = uniforms(a.shape, generator, a).mul_(mass)
            q = noise.icdf(open_unit(v, inplace=True))
            kernel = noise.pdf(q.mul_(sign_tau).add_(a_tau))
            total = kernel if total is None else total.add_(kernel)
        return total


ESTIMATORS: list[type[Estimator]] = [Concrete, StraightThroughGumbelSoftmax, GumbelRao]
