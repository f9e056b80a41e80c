"""Straight-through estimators published since 2022 for stochastic binary weights (issue 19):
ReinMax and gapped straight-through (GST), beside ``weight-st``.

Both were written for categorical variables with logits theta and a one-hot sample; a Bernoulli
weight is the two-category case with logits (phi, 0), phi = logit P(W = +1) = log(p / q),
p = F_w(eta), q = F_w(-eta), exactly as a binary unit is in the sbn kind's ``reinmax`` and
``gst`` (``estbench.kinds.sbn.estimators.straight_through``, whose per-variable logit Jacobian
J_phi(phi, p, q, b) these estimators call, so the two kinds cannot drift apart). Each replaces
the derivative of the sample by a proxy:

    dW/deta  ~  2 J_phi(phi, p, q, b) * d phi / d eta,       b = 1[W = +1],

the factor 2 of the ±1 coding (W = 2b - 1) and d phi / d eta = F_w'(eta) / (p q) (1 for the
logistic weight noise, where phi = eta; 0 for a deterministic weight, p q = 0). With the
principled J_phi = p q this is ``weight-st``'s 2 F_w'(eta). Stochastic activations get the same
method's Jacobian, c J_phi(phi_a, F(a), F(-a), x) d phi_a / d a (c = coding scale; the sbn
kind's ``reinmax`` / ``gst`` on the units), sign activations the ``sign_proxy`` of
``weight-st``. The backward pass is ``weight-st``'s (``estimators.backward``) along the sampled
path, so the only randomness is the path and the exact moments follow by enumeration
(``paths.path_moments``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ...estimators.base import Hyper
from ..layered_estimators import logit_scale
from ..sbn.estimators.straight_through import GappedST, LogitStraightThrough, ReinMax
from ..sbn.model import coding_scale
from .estimators import (
    SIGN_PROXY,
    WEIGHTS_MODE,
    BackwardPass,
    LayerGrad,
    WeightPathEstimator,
    backward,
    sign_jacobian,
    weight_logit_scale,
)
from .model import WeightProblem, WeightSBN
from .paths import WeightPath


class _WeightLogitStraightThrough(WeightPathEstimator):
    """A straight-through proxy given for the logit of every Bernoulli weight and stochastic unit
    by the sbn kind's estimator ``core`` (its ``logit_jacobian``); module docstring."""

    family = "straight-through"
    unbiased = "head only"
    core_class: ClassVar[type[LogitStraightThrough]]

    def core(self) -> LogitStraightThrough:
        """The sbn estimator with this estimator's method parameters (all but ``weights`` and
        ``sign_proxy``)."""
        own = {"weights", "sign_proxy"}
        return self.core_class(**{k: v for k, v in self.params.items() if k not in own})

    def weight_factor(self, m: WeightSBN, k: int, bits: Tensor) -> Tensor:
        """dW/deta ~ 2 J_phi d phi / d eta for sampled 0/1 weights ``bits`` of pair k (b = 1[W =
        +1]), the shape of ``bits``."""
        p, q = m.probs(k)
        phi = m.params[k] if m.logistic_weights else torch.log(p) - torch.log(q)
        factor = 2 * self.core().logit_jacobian(phi, p, q, bits)
        chain = weight_logit_scale(m, k, p, q)
        return factor if chain is None else factor * chain

    def activation_jacobians(self, problem: WeightProblem, path: WeightPath) -> list[Tensor]:
        """c J_phi d phi / d a per stochastic layer; the ``sign_proxy`` for sign activations."""
        m = problem.model
        if m.noise is None:
            return [sign_jacobian(m, a, self.params["sign_proxy"]) for a in path.a]
        c = coding_scale(m.coding)
        core = self.core()
        out = []
        for a, on, off, bits in zip(path.a, path.on, path.off, path.bits, strict=True):
            if m.noise.name == "logistic":
                d = core.logit_jacobian(a, on, off, bits)
            else:
                phi = torch.log(on) - torch.log(off)
                d = core.logit_jacobian(phi, on, off, bits)
                d = d * logit_scale(m.noise.pdf_given(a, on), on, off)
            out.append(d if c == 1 else c * d)
        return out

    def path_terms(
        self, problem: WeightProblem, path: WeightPath, keep: bool, context: Any = None
    ) -> list[LayerGrad]:
        m = problem.model
        factors: list[Tensor | None] = []
        for k, kind in enumerate(m.kinds[:-1]):
            if kind != "bernoulli":
                factors.append(None)
                continue
            bits = path.wbits[k]
            assert bits is not None
            factor = self.weight_factor(m, k, bits)  # one value per weight draw
            # Per point (``keep``) the products are [*B, N, out, in]: a shared draw's factor
            # [*B, out, in] gets the data dimension.
            factors.append(factor.unsqueeze(-3) if keep and not path.per_point else factor)
        jac = self.activation_jacobians(problem, path)
        bp = BackwardPass(path.weights, path.inputs, jac, factors, path.z, path.per_point)
        return backward(problem, bp, keep)


class WeightReinMax(_WeightLogitStraightThrough):
    """ReinMax (Liu et al., NeurIPS 2023) for Bernoulli weights and stochastic activations, wrt
    eta: the sbn kind's binary ``reinmax`` Jacobian for every Bernoulli variable,

        J_phi = 2 pi_1 (1 - pi_1) - p (1 - p) / 2,   pi_1 = (sigmoid(phi / tau) + b) / 2,

    (the two-category form of grad = 2 J(pi_1) g - J(pi_0) g / 2, J(pi) = diag(pi) - pi pi^T,
    pi_0 = softmax(theta), pi_1 = (softmax(theta / tau) + D) / 2; see ``reinmax``), so for a weight

        g_eta = g_mu * 2 J_phi * F_w'(eta) / (p q),    g_mu = dl/dW at the sampled path,

    (module docstring). At tau = 1, J_phi = q/2 if W = +1 and p/2 if W = -1, so
    dW/deta ~ F_w'(eta) / P(W) (the probability of the other sign for sigmoid weights), the DARN
    "1/2" form W d log P(W) / d eta of a ±1 variable -- binary ReinMax at tau = 1 is DARN
    and binary ZGR (as in the sbn kind), which is why there is no separate ``weight-zgr``: it
    would be this estimator's default, draw for draw. Its mean against the exact finite
    difference F_w'(eta) (E[l | W = +1] - E[l | W = -1]) is the trapezoid rule:
    E[g_eta | others] = F_w'(eta) (h(+1) + h(-1)) with h(w) the conditional mean of dl/dW at
    W = w, exact when the expected loss, given everything else, is quadratic in the weight (and,
    for the units, in each state) -- the condition under which the sbn analogue is exact (one
    layer, quadratic loss). For weights it holds with uniform-noise activations in their linear
    range (every reachable |a| < 1, so E[x | a] is affine) and the mse head: every conditional
    expected loss is then quadratic [derived], and tau = 1 is exactly unbiased in every layer
    (tested at depth 2 with a Bernoulli first pair, both codings; ``weight-st`` is biased there
    through the mse head's x_j^2 terms). Otherwise biased below the head: logistic or gaussian
    activations, the other heads, sign activations (proxy), any tau > 1. Head pathwise, unbiased.
    Claim: "head only". Cost: 1 loss evaluation, 1 backward pass.
    Reference: Liu, Zhao, Song, Gao & Zhang (ReinMax), "Bridging discrete and backpropagation:
    straight-through and beyond", NeurIPS 2023, arXiv 2304.08612 (Algorithm 2, the estimator
    2 grad_{1/2} - grad_{ST}/2 of §4, as the sbn ``reinmax``; checked there against the authors'
    microsoft/ReinMax ``ReinMaxCore.backward``). UNVERIFIED: the paper's equation numbers (as
    for ``reinmax``). Its use for Bernoulli weights is ours [derived]: a weight is a binary
    categorical variable like a unit.
    """

    name = "weight-reinmax"
    reference = "Liu et al. (ReinMax), NeurIPS 2023, arXiv 2304.08612; microsoft/ReinMax"
    core_class = ReinMax
    verified = (
        "the weight proxy against autograd, wrt η, of the authors' two-term algorithm on the "
        "logits (φ(η), 0), τ = 1 and 2.5, every weight noise; τ = 1 is the DARN/ZGR form "
        "F_w′(η)/P(W) (closed form; equal moments to 1e-12 with the sbn `zgr` Jacobian "
        "substituted); real weights only: moments equal the sbn `reinmax`'s (τ = 1, 2); exact: "
        "τ = 1 unbiased in every layer for the mse head with uniform activations in their "
        "linear range (both codings), where `weight-st`, τ = 2, `weight-gst` and the negative "
        "control (without the −ST/2 term) are biased; elsewhere biased below the head, head "
        "exact; draws against the exact mean in both modes (z-test, false-fail rate 1e-3)"
    )
    tests = ("tests/test_weights_logit_st.py",)
    hyperparameters = {
        "weights": WEIGHTS_MODE,
        "tau": Hyper(
            1.0, float, minimum=1.0, help="temperature of pi_1 (the authors' code requires >= 1)"
        ),
        "sign_proxy": SIGN_PROXY,
    }


class WeightGappedST(_WeightLogitStraightThrough):
    """Gapped straight-through (GST; Fan, Chi, Rudnicky & Ramadge, ICML 2022) for Bernoulli
    weights and stochastic activations, wrt eta: the sbn kind's binary ``gst`` Jacobian for every
    Bernoulli variable,

        J_phi = sigmoid'(y / tau) / tau,   y = max(x phi, kappa),   x = W (±1; 2b - 1 for a unit),

    the ST-Gumbel-Softmax Jacobian at the perturbed logit difference phi~ = max(phi, kappa) (sample
    +1) or min(phi, -kappa) (sample -1): consistent with the sample and gapped by kappa (constant,
    ``form=fixed``, GST-1.0; or GST-p's -log(1 - pi_D) / pi_D, pi_D = P(the sampled value)). For
    a weight g_eta = g_mu * 2 J_phi F_w'(eta) / (p q) (module docstring). A deterministic,
    gradient-free stand-in for Gumbel-Rao's conditional noise (``weight-gumbel-rao``), so biased in
    every Bernoulli and stochastic layer (also for a single weight and a quadratic loss: it is not
    second-order, tests), unbiased in the head (pathwise). Claim: "head only". Cost: 1 loss
    evaluation, 1 backward pass.
    Reference: Fan et al., "Training discrete deep generative models via gapped straight-through
    estimator", ICML 2022, arXiv 2206.07235 (as the sbn ``gst``, checked there against the
    authors' chijames/GST ``gst_mover``). UNVERIFIED: the paper's equation numbers (as for
    ``gst``). Its use for Bernoulli weights is ours [derived].
    """

    name = "weight-gst"
    reference = "Fan et al. (GST), ICML 2022, arXiv 2206.07235; chijames/GST"
    core_class = GappedST
    verified = (
        "the weight proxy against autograd, wrt η, of the authors' `gst_mover` algorithm on the"
        " logits (φ(η), 0) (fixed gap and GST-p, every weight noise); 0 for a deterministic "
        "weight; real weights only: moments equal the sbn `gst`'s (both forms); exact: not "
        "second-order (biased where `weight-reinmax` is exact), biased below the head and exact"
        " in it; draws against the exact mean in both modes (z-test, false-fail rate 1e-3)"
    )
    tests = ("tests/test_weights_logit_st.py",)
    hyperparameters = {
        "weights": WEIGHTS_MODE,
        "tau": Hyper(1.0, float, minimum=0.0, exclusive=True, help="softmax temperature"),
        "gap": Hyper(1.0, float, minimum=0.0, help="the gap kappa (form=fixed)"),
        "form": Hyper(
            "fixed",
            str,
            choices=("fixed", "p"),
            help="fixed: kappa = gap (GST-1.0); p: kappa = -log(1 - pi_D) / pi_D (GST-p)",
        ),
        "sign_proxy": SIGN_PROXY,
    }
