"""Straight-through family: the sampled forward pass with a proxy Jacobian D_k in the backward
recursion of spec §1.4 (delta_L = W_L^T dl/dz, g_{a_k} = delta_k * D_k,
delta_{k-1} = W_k^T g_{a_k}; ``layered_estimators.backprop``), and the deterministic mean field
that shares the recursion."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Estimator, Hyper
from ...layered_estimators import backprop, logit_scale
from ..model import SBN, Problem, coding_scale
from .ops import Contribution, Path, PathEstimator, assemble, head_grad, layer_terms


class StraightThroughBase(PathEstimator):
    """Sampled forward pass, then the recursion of spec §1.4 with ``jacobian(problem, a, bits)``."""

    family = "straight-through"
    unbiased = "head only"  # the head's gradient is pathwise

    def jacobians(self, problem: Problem, path: Path) -> list[Tensor]:
        """The proxy D_k = "dx_k / da_k" of every binary layer along ``path``."""
        raise NotImplementedError

    def path_terms(
        self, problem: Problem, path: Path, context: Any = None
    ) -> list[list[Contribution]]:
        dz = head_grad(problem, path.z)
        grads = backprop(dz, problem.model.weights, self.jacobians(problem, path))
        return layer_terms(path, grads, dz)


class StraightThrough(StraightThroughBase):
    """Principled straight-through (ST): D = d E[x | a] / d a = 2F'(a) for +-1 states and F'(a)
    for {0,1} states -- the derivative of the conditional mean, so the estimator is invariant to
    the coding.

    Biased in general; unbiased in a one-layer network when f is multilinear (e.g. affine) in x.
    The head gradient is pathwise, hence unbiased. Cost: 1 loss evaluation, 1 backward pass.
    Reference: Shekhovtsov & Yanush, "Reintroducing straight-through estimators as principled
    methods for stochastic binary networks", arXiv 2006.06880 (GCPR 2021); spec §4.1.
    """

    name = "st"
    reference = "Shekhovtsov & Yanush, arXiv 2006.06880 (GCPR 2021)"
    unbiased = "head only"
    verified = (
        "seed networks' stored exact expectations of ST (sigmoid′(a) backward, {0,1}) to 1e-10; "
        "toy closed forms; exact: biased below the head, unbiased in it"
    )
    tests = ("tests/test_estimators_core.py", "tests/test_st_estimators.py")

    def jacobians(self, problem: Problem, path: Path) -> list[Tensor]:
        scale = coding_scale(problem.model.coding)
        if scale == 1:  # {0,1} states: D = F'(a) itself (x 1.0 would be a whole extra pass)
            return path.pdf(problem)
        return [scale * d for d in path.pdf(problem)]


class StraightThroughIdentity(StraightThroughBase):
    """Identity straight-through: D = 1 for every unit, in both codings.

    The classic heuristic (Hinton's 2012 lecture, Bengio et al. 2013): the sampled state is
    passed forward and the backward pass ignores the sign/threshold. It is **not** invariant to
    the coding (spec §4.1, pitfall P1): a {0,1} network with D = 1 is the +-1 network with D = 2,
    and neither equals the derivative of the conditional mean (2F' resp. F').

    Biased in every binary layer (even for affine f), unbiased in the head (pathwise gradient).
    Closed forms on the {0,1} toy f(b) = (b - t)^2: g_hat = 2(b - t), mean 2(p - t),
    variance 4p(1 - p); in +-1 coding g_hat = b - t (spec §5.1). Cost: 1 loss evaluation,
    1 backward pass. Reference: Bengio, Leonard & Courville, arXiv 1308.3432.
    """

    name = "st-identity"
    reference = "Bengio, Leonard & Courville, arXiv 1308.3432 (2013)"
    unbiased = "head only"
    verified = (
        'toy closed forms (§5.1) and the anchor row "E ST identity (±1)" (§5.3) by exact path '
        "enumeration; not coding invariant"
    )
    tests = ("tests/test_st_estimators.py",)

    def jacobians(self, problem: Problem, path: Path) -> list[Tensor]:
        # A 0-d one broadcasts in the recursion; no [S, N, n] tensor of ones is needed.
        return [a.new_ones(()) for a in path.a]


class StraightThroughHardtanh(StraightThroughBase):
    """Hardtanh ("clipped identity", BNN-style) straight-through: D = 1[|a| <= 1] for +-1
    states and (1/2) 1[|a| <= 1] for {0,1} states, so it is coding invariant.

    It is the principled ST of uniform noise on [-1, 1] (F = clip((a + 1)/2), 2F' = 1[|a| <= 1])
    and then equals ``st`` exactly; for other noises it is a heuristic proxy, biased in every
    binary layer and unbiased in the head. On the one-unit toy g_hat = (b - t) 1[|theta| <= 1]
    (spec §5.1). Cost: 1 loss evaluation, 1 backward pass.
    Reference: Hubara et al., "Binarized neural networks", arXiv 1602.02830; the authors'
    ``HardSTMethod`` in shekhovt/PSA-Neurips2020.
    """

    name = "st-hardtanh"
    reference = "Hubara et al., arXiv 1602.02830 (NeurIPS 2016)"
    unbiased = "head only"
    verified = "toy closed form; equals `st` under uniform noise by exact path enumeration"
    tests = ("tests/test_st_estimators.py",)

    def jacobians(self, problem: Problem, path: Path) -> list[Tensor]:
        half = coding_scale(problem.model.coding) / 2
        return [half * (a.abs() <= 1).to(a.dtype) for a in path.a]


class StraightThroughTanh(StraightThroughBase):
    """Tanh-proxy straight-through: D = 1 - tanh^2(a) for +-1 states, half that for {0,1}.

    Equals the principled ST of logistic noise with scale 1/2 (d/da tanh(a) = 2 F'(a) for
    F(a) = sigmoid(2a)); for the model's own noise it is a heuristic, biased in every binary
    layer and unbiased in the head. On the toy g_hat = (b - t)(1 - tanh^2 theta) (spec §5.1).
    Cost: 1 loss evaluation, 1 backward pass. Reference: spec §4.1 (tanh proxy, used
    empirically; see Shekhovtsov & Yanush, arXiv 2006.06880).
    """

    name = "st-tanh"
    reference = "spec §4.1; Shekhovtsov & Yanush, arXiv 2006.06880"
    unbiased = "head only"
    verified = "toy closed form"
    tests = ("tests/test_st_estimators.py",)

    def jacobians(self, problem: Problem, path: Path) -> list[Tensor]:
        half = coding_scale(problem.model.coding) / 2
        return [half * (1 - torch.tanh(a) ** 2) for a in path.a]


class StraightThroughSlope(StraightThroughBase):
    """Slope-annealed straight-through with a fixed slope s (a hyperparameter here, a schedule
    in training).

    * ``form=smooth``: D = 2 s F'(s a) for +-1 states, s F'(s a) for {0,1} (logistic noise:
      the derivative of 2 sigmoid(s a) - 1); s = 1 is principled ``st`` draw for draw.
    * ``form=hard``: the hard-sigmoid of HM-RNN, D = s 1[|s a| <= 1] for +-1 states, half for
      {0,1}; s = 1 is ``st-hardtanh``.

    Biased in every binary layer for s != 1 (and for s = 1 as ST is), unbiased in the head.
    Cost: 1 loss evaluation, 1 backward pass. Reference: Chung, Ahn & Bengio, "Hierarchical
    multiscale recurrent neural networks", arXiv 1609.01704 (slope annealing); spec §4.1.
    """

    name = "st-slope"
    reference = "Chung, Ahn & Bengio, arXiv 1609.01704 (ICLR 2017)"
    unbiased = "head only"
    verified = "s = 1 (smooth) gives bit-identical draws to `st`; s = 1 (hard) is `st-hardtanh`"
    tests = ("tests/test_st_estimators.py",)
    hyperparameters = {
        "s": Hyper(1.0, float, minimum=0.0, exclusive=True, help="slope of the proxy"),
        "form": Hyper(
            "smooth",
            str,
            choices=("smooth", "hard"),
            help="smooth: 2s F'(s a); hard: hard-sigmoid s 1[|s a| <= 1]",
        ),
    }

    def jacobians(self, problem: Problem, path: Path) -> list[Tensor]:
        s = self.params["s"]
        scale = coding_scale(problem.model.coding) * s
        if self.params["form"] == "hard":
            return [(scale / 2) * ((s * a).abs() <= 1).to(a.dtype) for a in path.a]
        noise = problem.model.noise
        # s * a is exact for s = 1, and cdf/pdf_given are the calls ``st`` makes through
        # Path.pdf, so s = 1 reproduces st bit for bit.
        return [scale * noise.pdf_given(s * a, noise.cdf(s * a)) for a in path.a]


class Darn(StraightThroughBase):
    """DARN "1/2" estimator, which for binary units is binary ReinMax (tau = 1) and ZGR.

    Single unit: g_hat = f'(b) (b - 1/2) d log P(b | a) / da, a first-order Taylor learning
    signal around 1/2 with f' at the sample. As a straight-through proxy (spec §4.2):

    * {0,1} states: D = (b - 1/2) * score = F'(a) / (2 P(b | a)); logistic: (1 - p)/2 if b = 1,
      p/2 if b = 0;
    * +-1 states: D = x * score = F'(a) / P(x | a); logistic: sigmoid(-x a), the probability of
      the state not sampled.

    E[D | a] = F'(a), the principled-ST Jacobian, and the one-unit mean is
    F'(a) (f'(0) + f'(1)) / 2 (trapezoid rule): unbiased for quadratic f, biased otherwise and
    in deep networks. The head gradient is pathwise and unbiased. For non-logistic noise the
    score form above is our generalisation [derived]; it keeps both properties.
    Cost: 1 loss evaluation, 1 backward pass.

    References: Gregor et al., "Deep AutoRegressive Networks", ICML 2014, arXiv 1310.8499 (as
    described by Gu et al., MuProp, arXiv 1511.05176); Liu et al., "Bridging discrete and
    backpropagation: straight-through and beyond" (ReinMax), arXiv 2304.08612; Shekhovtsov,
    "Cold analysis of Rao-Blackwellized straight-through Gumbel-Softmax", ICML 2023 (ZGR).

    Verification of the spec's UNVERIFIED §4.2 (outcome: the formula holds for logistic noise):

    * [code] ReinMax: the authors' package (microsoft/ReinMax, ``reinmax/reinmax.py``,
      ``ReinMaxCore.backward``) computes 2 J(pi_1) g - 1/2 J(pi_0) g with
      pi_1 = (softmax(theta / tau) + onehot) / 2, J(pi) = diag(pi) - pi pi^T. For two
      categories with logits (theta, 0) at tau = 1 this gives (1 - p)/2 if b = 1 and p/2 if
      b = 0 times f'(b) -- the D above. For tau != 1 ReinMax differs; only tau = 1 is here.
    * [code] ZGR: the ZGR author's ``ZGR_binary`` (shekhovt/ZGR, ``zgr.py``) is documented as
      "ZGR = DARN(1/2)" and uses J = (b (1 - p) + (1 - b) p) / 2 -- the same D. It is also the
      tau -> 0 limit of the binary GR-MC Jacobian E[tau^-1 sigmoid'((a + L)/tau) | b] [derived].
    * Caveat: the ZGR paper's *categorical* "DARN" term, (x - p) d log p(x), reduces for a
      binary unit to (b - p)^2 f'(b), which is not this estimator (ZGR is its average with ST).
      The DARN paper itself could not be read here; the "1/2" name follows the MuProp
      description and the ZGR author's binary code.
    """

    name = "darn"
    reference = "Gregor et al., arXiv 1310.8499 (ICML 2014); Liu et al. (ReinMax), arXiv 2304.08612"
    unbiased = "head only"
    verified = (
        'exact: the anchor row "E DARN/ReinMax" (§5.3) and the toy variance closed form (§5.1); '
        "unbiased for a quadratic loss in one layer for every noise (principled ST, biased "
        "there, as negative control)"
    )
    tests = ("tests/test_st_estimators.py",)

    def jacobians(self, problem: Problem, path: Path) -> list[Tensor]:
        c = coding_scale(problem.model.coding)
        return [(c * (b - 0.5)) * s for b, s in zip(path.bits, path.scores(problem), strict=True)]


class MeanField(Estimator[Problem, SBN]):
    """Deterministic mean-field ("tanh", AP1): the gradient of f at the mean-propagated network.

    Each binary layer is replaced by its conditional mean given the mean of the layer below,
    mu_k = 2F(a_k) - 1 (+-1; logistic: tanh(a_k / 2)) or F(a_k) ({0,1}), with
    a_k = W_{k-1} mu_{k-1} + b_{k-1} and mu_0 = x_0; the head reads mu_L. The estimate is the
    exact gradient of the mean-field objective l(W_L mu_L + b_L, y): the §1.4 recursion with
    D_k = 2F'(a_k) resp. F'(a_k), evaluated at the means. No sampling: every draw is the same
    vector (``stochastic = False``), so its variance is 0 and its error is pure bias.

    Biased in every layer, the head included (the head sees mu_L, not a sample); exact only
    when every layer below the loss is affine in its input, which never holds with a
    nonlinear F. Cost: one deterministic forward and backward pass per ``draw`` call.
    Reference: the seed study's AP1 / "tanh" method (Shekhovtsov, Yanush & Flach,
    arXiv 2006.03143, ``gradeval/model.py`` ``fw_AP1``: sigmoid(a) fed forward, {0,1}).
    """

    name = "mean-field"
    family = "deterministic"
    unbiased = "no"
    stochastic = False
    reference = "Shekhovtsov, Yanush & Flach, arXiv 2006.03143 (AP1, 'tanh')"
    verified = (
        "the seed networks' stored `ap1_grad_layer{k}` to 1e-10 ({0,1} coding); autograd of the "
        "mean-field objective on random networks of every noise and head"
    )
    tests = ("tests/test_st_estimators.py",)

    def bytes_per_draw(self, problem: Problem) -> int:
        return 8 * problem.n_params  # a draw is a copy of one precomputed vector

    def prepare(self, problem: Problem, generator: torch.Generator) -> Tensor:
        return self.gradient(problem)

    def gradient(self, problem: Problem) -> Tensor:
        """The mean-field gradient, [P]."""
        m = problem.model
        c = coding_scale(problem.model.coding)
        W, b = m.weights, m.biases
        mu, inputs, jac = problem.X, [problem.X], []
        for k in range(m.depth):
            a = mu @ W[k].T + b[k]
            p = m.noise.cdf(a)
            jac.append(c * m.noise.pdf_given(a, p))
            mu = p if c == 1 else 2 * p - 1
            inputs.append(mu)
        dz = head_grad(problem, mu @ W[-1].T + b[-1])
        grads = backprop(dz, W, jac)
        terms = [[(g, inp)] for g, inp in zip(grads, inputs, strict=False)] + [[(dz, mu)]]
        return assemble(problem, terms, per_point=False)

    def _draw(
        self, problem: Problem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        g = self.gradient(problem) if context is None else context
        return g.expand(n_draws, g.shape[-1]).clone()


# ---- Straight-through estimators published since 2022: ReinMax, GST, ZGR -----------------------
#
# All three were written for categorical variables with logits theta and a one-hot sample D; a
# binary unit is the two-category case with logits (phi, 0), phi = logit P(on) = logit F(a), and
# the one-hot sample (b, 1 - b). Each replaces "dD / dtheta" by a matrix whose product with the
# upstream gradient g = (g_on, g_off) is, for the on-logit, ``J_phi * (g_on - g_off)`` (the
# matrices are of the form diag(pi) - pi pi^T, whose rows sum to zero, so the off-logit gets the
# negative and a shift of the logits changes nothing). With x = b ({0,1} coding) g_on - g_off =
# dl/dx; with x = 2b - 1 (+-1 coding) it is 2 dl/dx, the factor ``coding_scale``. The chain to
# the pre-activation is d phi / d a = F'(a) / (p q) (1 for logistic noise, where phi = a); for
# other noises this generalisation is ours [derived] -- the papers use logits. So every estimator
# here is a straight-through proxy D_k = c J_phi dphi/da in the backward recursion of spec §1.4
# (``StraightThroughBase``), biased in the binary layers and unbiased in the head (pathwise).


def logit_parts(problem: Problem, path: Path) -> list[tuple[Tensor, Tensor, Tensor, Tensor | None]]:
    """Per binary layer (phi, p, q, dphi/da): the logit phi = log(p / q) of P(on) = p = F(a),
    q = F(-a), and d phi / d a = F'(a) / (p q), None for logistic noise (phi = a, factor 1).
    phi is +-inf where a unit is saturated (p q = 0); there dphi/da is 0 (``logit_scale``)."""
    noise = problem.model.noise
    out: list[tuple[Tensor, Tensor, Tensor, Tensor | None]] = []
    for a, p in zip(path.a, path.p, strict=True):
        if noise.name == "logistic":
            out.append((a, p, 1 - p, None))
            continue
        q = noise.cdf(-a)
        phi = torch.log(p) - torch.log(q)
        out.append((phi, p, q, logit_scale(noise.pdf_given(a, p), p, q)))
    return out


class LogitStraightThrough(StraightThroughBase):
    """A straight-through proxy given for the logit: D = c * J_phi * dphi/da (module docstring)."""

    def logit_jacobian(self, phi: Tensor, p: Tensor, q: Tensor, bits: Tensor) -> Tensor:
        """J_phi per unit, from the logit phi, p = P(on), q = P(off) and the sampled 0/1 bits."""
        raise NotImplementedError

    def jacobians(self, problem: Problem, path: Path) -> list[Tensor]:
        c = coding_scale(problem.model.coding)
        out = []
        for (phi, p, q, chain), b in zip(logit_parts(problem, path), path.bits, strict=True):
            d = self.logit_jacobian(phi, p, q, b)
            if chain is not None:
                d = d * chain
            out.append(d if c == 1 else c * d)
        return out


class ReinMax(LogitStraightThrough):
    """ReinMax (Liu et al., NeurIPS 2023), the binary case: the second-order (Heun) combination
    of straight-through Jacobians,

        grad_theta = 2 J(pi_1) g - (1/2) J(pi_0) g,   J(pi) = diag(pi) - pi pi^T,
        pi_0 = softmax(theta),  pi_1 = (softmax(theta / tau) + D) / 2,

    (paper: Algorithm 2 "ReinMax" and the estimator 2 grad_{1/2} - grad_{ST}/2 of §4; the
    authors' package microsoft/ReinMax, ``reinmax/reinmax.py`` ``ReinMaxCore.backward``: the
    same two terms, the sample from softmax(logits) untempered, tau only in pi_1, and tau >= 1
    enforced). For two categories with logits (phi, 0), p = sigmoid(phi), s = sigmoid(phi / tau)
    and pi_1 = (s + b) / 2 the probability of "on" in the shifted softmax:

        J_phi = 2 pi_1 (1 - pi_1) - p (1 - p) / 2.

    At tau = 1 this is (1 - p)/2 if b = 1 and p/2 if b = 0: ReinMax *is* ``darn`` (and ``zgr``),
    exactly, so ``darn`` is not a first-order proxy of ReinMax but binary ReinMax at tau = 1, the
    smallest temperature its authors allow (tests/test_recent_st.py compares the exact moments).
    The paper's second-order claim -- E[ReinMax] matches the trapezoid rule, exact when f is
    quadratic -- holds for a single layer at tau = 1 (checked exactly, every noise); tau > 1 loses
    it. Biased in every binary layer of a deep network, unbiased in the head (pathwise).
    Claim: "head only". Cost: 1 loss evaluation, 1 backward pass.
    Reference: Liu, Zhao, Song, Gao & Zhang (ReinMax), "Bridging discrete and backpropagation:
    straight-through and beyond", NeurIPS 2023, arXiv 2304.08612. The paper's equation numbers
    could not be read here (UNVERIFIED: equation numbers); the formula is checked against the
    authors' code named above, term by term, for two categories.
    """

    name = "reinmax"
    reference = "Liu et al. (ReinMax), NeurIPS 2023, arXiv 2304.08612; microsoft/ReinMax"
    unbiased = "head only"
    verified = (
        "its binary Jacobian against autograd of the authors' two-term algorithm "
        "(microsoft/ReinMax `ReinMaxCore.backward`) on two categories, τ = 1 and 2.5; exact: "
        'equals `darn` at τ = 1 (moments to 1e-12, three noises) and the anchor row "E '
        'DARN/ReinMax" (§5.3); the second-order claim (trapezoid rule) exactly unbiased for a '
        "quadratic loss in one layer (every noise, both codings); negative controls: without "
        "the −ST/2 term, and τ = 2; biased below the head, exact in it"
    )
    tests = ("tests/test_recent_st.py",)
    hyperparameters = {
        "tau": Hyper(
            1.0, float, minimum=1.0, help="temperature of pi_1 (the authors' code requires >= 1)"
        ),
    }

    def logit_jacobian(self, phi: Tensor, p: Tensor, q: Tensor, bits: Tensor) -> Tensor:
        tau = self.params["tau"]
        s = p if tau == 1 else torch.sigmoid(phi / tau)
        pi1 = (s + bits) / 2
        return 2 * pi1 * (1 - pi1) - p * q / 2


class GappedST(LogitStraightThrough):
    """Gapped straight-through (GST; Fan, Chi, Rudnicky & Ramadge, ICML 2022), binary case.

    GST replaces the conditional Gumbel noise of Gumbel-Rao by a deterministic, gradient-free
    perturbation m of the logits (``stop_gradient``) that is *consistent* (the perturbed argmax is
    the sample D) and *gapped* (the sampled logit exceeds every other by at least a gap kappa):
    the sampled logit is moved up to the largest logit and every other logit down to at most
    max - kappa; the estimate is the ST-Gumbel-Softmax Jacobian at the perturbed logits,
    d softmax((theta + m) / tau) / d theta. The gap is a constant (GST-1.0: kappa = 1) or, in
    GST-p, kappa = -log(1 - pi_D) / pi_D with pi_D the probability of the sampled category.
    For two categories the perturbed logit difference is phi~ = max(phi, kappa) if b = 1 and
    min(phi, -kappa) if b = 0 [derived from the authors' ``gst_mover``], so with
    y = max(x phi, kappa), x = 2b - 1, and the symmetric sigmoid',

        J_phi = sigmoid'(y / tau) / tau.

    Biased in every binary layer (also for one unit: a deterministic proxy of GR-MC), unbiased in
    the head (pathwise). Claim: "head only". Cost: 1 loss evaluation, 1 backward pass.
    Reference: Fan et al., "Training discrete deep generative models via gapped
    straight-through estimator", ICML 2022, arXiv 2206.07235. Checked against the authors' code
    chijames/GST, ``model/basic.py`` ``gst_mover`` (move of the sample to the max logit,
    ``move2`` = max(theta_i - max + gap, 0) for the others, GST-p's gap, pi_D scaled by
    1 - 1e-5 there and clamped here, temperature default 1.0); tests/test_recent_st.py compares
    with a two-category implementation of that algorithm under autograd. The paper's equation
    numbers could not be read here (UNVERIFIED: equation numbers).
    """

    name = "gst"
    reference = "Fan et al. (GST), ICML 2022, arXiv 2206.07235; chijames/GST"
    unbiased = "head only"
    verified = (
        "its binary Jacobian against autograd of the authors' `gst_mover` algorithm "
        "(chijames/GST) on two categories, fixed gap and GST-p; the perturbed logit consistent "
        "with the sample and gapped; exact: biased below the head, exact in it; not "
        "second-order (negative control of the quadratic test); coding invariance"
    )
    tests = ("tests/test_recent_st.py",)
    hyperparameters = {
        "tau": Hyper(1.0, float, minimum=0.0, exclusive=True, help="softmax temperature"),
        "gap": Hyper(1.0, float, minimum=0.0, help="the gap kappa (form=fixed)"),
        "form": Hyper(
            "fixed",
            str,
            choices=("fixed", "p"),
            help="fixed: kappa = gap (GST-1.0); p: kappa = -log(1 - pi_D) / pi_D (GST-p)",
        ),
    }

    def gap(self, p: Tensor, q: Tensor, bits: Tensor) -> Tensor | float:
        """kappa: the constant gap, or GST-p's -log(1 - pi_D) / pi_D."""
        if self.params["form"] == "fixed":
            return float(self.params["gap"])
        pi = torch.where(bits == 1, p, q)
        pi = pi.clamp(torch.finfo(pi.dtype).tiny, 1 - torch.finfo(pi.dtype).eps)
        return -torch.log1p(-pi) / pi

    def logit_jacobian(self, phi: Tensor, p: Tensor, q: Tensor, bits: Tensor) -> Tensor:
        tau = self.params["tau"]
        kappa = torch.as_tensor(self.gap(p, q, bits), dtype=phi.dtype, device=phi.device)
        y = torch.maximum((2 * bits - 1) * phi, kappa)
        s = torch.sigmoid(y / tau)
        return s * (1 - s) / tau


class ZGR(LogitStraightThrough):
    """ZGR (Shekhovtsov, ICML 2023), the binary case: the average of straight-through and the
    categorical DARN term,

        grad_theta = (1/2) [J(p) g + (D - p) (grad_theta log p_D)^T g],

    (the author's shekhovt/ZGR ``zgr.py``: ``ZGR``'s surrogate dx = (p + (y - p) log p_x) / 2
    with p and log p_x's factor detached as written there; ``ZGR_binary``: J = (b (1-p) +
    (1-b) p) / 2, "ZGR = DARN(1/2)"). For two categories, grad_phi log p_D = b - p, so

        J_phi = (p (1 - p) + (b - p)^2) / 2,

    which is (1 - p)/2 if b = 1 and p/2 if b = 0: binary ZGR equals ``darn`` and ``reinmax`` at
    tau = 1 in exact arithmetic (tests/test_recent_st.py: equal exact moments, and the formula
    against autograd of the categorical surrogate). It is computed here from the categorical
    formula, not from darn's. The paper derives ZGR as the zero-temperature ("cold") limit of
    Gumbel-Rao (GR-MC); for a single unit its mean is the trapezoid rule, so it is unbiased for
    quadratic f in one layer (checked exactly). Biased in deep networks, unbiased in the head.
    Claim: "head only". Cost: 1 loss evaluation, 1 backward pass.
    Reference: Shekhovtsov, "Cold analysis of Rao-Blackwellized straight-through Gumbel-Softmax
    gradient estimator", ICML 2023 (PMLR 202), openreview 9GjM8UzCYN. The paper's equation
    numbers could not be read here (the code cites its eq. (50) for the categorical backward;
    UNVERIFIED: the paper text).
    """

    name = "zgr"
    reference = "Shekhovtsov (ZGR), ICML 2023; shekhovt/ZGR"
    unbiased = "head only"
    verified = (
        "its binary Jacobian against autograd of the author's categorical surrogate "
        "(shekhovt/ZGR `ZGR`) on two categories; exact: equals `darn` (moments to 1e-12, three "
        "noises) and the anchor row; exactly unbiased for a quadratic loss in one layer; "
        "negative control: the categorical DARN half alone"
    )
    tests = ("tests/test_recent_st.py",)

    def logit_jacobian(self, phi: Tensor, p: Tensor, q: Tensor, bits: Tensor) -> Tensor:
        return (p * q + (bits - p) ** 2) / 2


ESTIMATORS: list[type[Estimator]] = [
    StraightThrough,
    StraightThroughIdentity,
    StraightThroughHardtanh,
    StraightThroughTanh,
    StraightThroughSlope,
    Darn,
    MeanField,
    ReinMax,
    GappedST,
    ZGR,
]
