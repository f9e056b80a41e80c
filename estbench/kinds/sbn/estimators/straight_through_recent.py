"""Straight-through estimators published since 2022 for binary units: ReinMax, the gapped
straight-through estimator (GST) and ZGR.

All three were written for categorical variables with logits theta and a one-hot sample D; a
binary unit is the two-category case with logits (phi, 0), phi = logit P(on) = logit F(a), and the
one-hot sample (b, 1 - b). Each replaces "dD / dtheta" by a matrix whose product with the upstream
gradient g = (g_on, g_off) is, for the on-logit, ``J_phi * (g_on - g_off)`` (the matrices are of
the form diag(pi) - pi pi^T, whose rows sum to zero, so the off-logit gets the negative and a
shift of the logits changes nothing). With x = b ({0,1} coding) g_on - g_off = dl/dx; with
x = 2b - 1 (+-1 coding) it is 2 dl/dx, the factor ``coding_scale``. The chain to the
pre-activation is d phi / d a = F'(a) / (p q) (1 for logistic noise, where phi = a); for other
noises this generalisation is ours [derived] -- the papers use logits. So every estimator here is a
straight-through proxy D_k = c J_phi dphi/da in the backward recursion of spec §1.4
(``StraightThroughBase``), biased in the binary layers and unbiased in the head (pathwise).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ....estimators.base import Estimator, Hyper
from ...layered_estimators import logit_scale
from ..model import Problem, coding_scale
from .ops import Path
from .straight_through import StraightThroughBase


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

    def logit_jacobian(self, phi: Tensor, p: Tensor, q: Tensor, bits: Tensor) -> Tensor:
        return (p * q + (bits - p) ** 2) / 2


ESTIMATORS: list[type[Estimator]] = [ReinMax, GappedST, ZGR]
