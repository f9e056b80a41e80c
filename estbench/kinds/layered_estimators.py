"""What the layered kinds' estimators (``sbn``, ``weights``) share: the backward pass through the
linear layers (straight-through, relaxations, REBAR) and the antithetic pairs of ARM and DisARM.

Each kind keeps what only it knows: how its forward pass multiplies a layer's input (real or
sampled weights, shared or per data point), which Jacobian stands for "dx/da" of a binary unit,
how logit gradients become parameter gradients, and how the loss of a pair's branch is evaluated.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor


def broadcasts_into(t: Tensor, into: Tensor) -> bool:
    """Whether ``t`` broadcasts to ``into``'s shape (so ``into.op_(t)`` is allowed)."""
    if t.dim() > into.dim():
        return False
    return all(s in (1, d) for s, d in zip(t.shape[::-1], into.shape[::-1], strict=False))


# ---- the backward pass -------------------------------------------------------------------------


def back_linear(W: Tensor, g: Tensor) -> Tensor:
    """g W: the backward of x -> x W^T with respect to x (g [*B, N, n_out], W [n_out, n_in])."""
    return g @ W


def backprop(
    dz: Tensor,
    weights: Sequence[Tensor],
    jacobians: Sequence[Tensor],
    back: Callable[[Tensor, Tensor], Tensor] = back_linear,
) -> list[Tensor]:
    """The chain rule through the linear layers with Jacobians D_k = "dx_k/da_k" (spec §1.4):

        delta_L = dl/dz W_L,   g_{a_k} = delta_k * D_k,   delta_{k-1} = g_{a_k} W_k,

    with ``weights[k]`` = W_k the matrix that multiplied layer k's input in the forward pass (the
    head's last) and ``back(W, g)`` = g W for that multiplication (``back_linear``; the weights
    kind's per-point weights have their own). D_k is the true derivative of a relaxed unit or a
    straight-through proxy; what differs between estimators is only D_k and what they make of the
    logit gradients. Returns [g_{a_1}, ..., g_{a_L}] per point.
    """
    delta = back(weights[-1], dz)
    grads: list[Tensor] = []
    for k in range(len(jacobians) - 1, -1, -1):
        jac = jacobians[k]
        # delta is a fresh product: scaled in place when D_k does not broadcast it larger.
        g = delta.mul_(jac) if broadcasts_into(jac, delta) else delta * jac
        grads.append(g)
        if k > 0:
            delta = back(weights[k], g)
    return grads[::-1]


# ---- antithetic pairs: ARM and DisARM ----------------------------------------------------------


def logit_scale(density: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """d phi / d theta for the logit phi = log(p / q) of a Bernoulli with P(on) = p = F(theta),
    q = F(-theta), and density = F'(theta): F'(theta) / (p q) (d phi = dp / p - dq / q and
    1/p + 1/q = 1/(p q)); 0 where p q = 0 (a saturated unit or deterministic weight cannot flip)."""
    pq = p * q
    ok = pq > 0
    return torch.where(ok, density / torch.where(ok, pq, 1.0), 0.0)


class PairEstimator(ABC):
    """Antithetic pairs per group of independent Bernoullis (ARM, DisARM).

    A group -- the units of one binary layer (per data point) or the Bernoulli weights of one
    pair -- has uniforms u, P(on) = p, P(off) = q = 1 - p and logits phi = log(p / q); the base
    path's bits are b2 = 1[u < p] and the antithetic bits b1 = 1[u > q] (``pair``). Branch 1
    replaces the group's bits by b1, and both branches keep the base path's other noise (common
    random numbers, unless the kind's estimator offers otherwise), so branch 2 is the base path
    (``branch2_is_base``). Per group the logit gradient is (f(b1) - f(b2)) * ``pair_weight``, f
    the loss of each branch; given everything outside the group, f is a fixed function of the
    group's bits, so the single-group identity makes each group's estimate unbiased, and so is
    the sum.

    A kind's subclass supplies the groups, the losses of the two branches on its model and what
    it makes of the logit gradients; ``ARMPairs`` and ``DisARMPairs`` supply the weight. The
    chain to a parameter theta with p = F(theta) is the kind's too, equal in exact arithmetic
    but rounded as each kind's draws always were: the sbn kind passes F'(a) as ``density`` (none
    for logistic noise) and thresholds the pair at 1 - p; the weights kind multiplies the weight
    for phi by d phi / d theta (``logit_scale``) and thresholds at F(-a) or F_w(-eta).
    """

    family = "score-function"
    unbiased = "yes"
    # Whether branch 2 equals the base path's bits (it does for the pair below); a subclass with
    # another pair sets this False and the kind evaluates branch 2 like branch 1.
    branch2_is_base: ClassVar[bool] = True

    def pair(self, u: Tensor, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """(b1, b2) = (1[u > q], 1[u < p]), q = 1 - p as the kind's draws compute it."""
        return torch.lt(q, u, out=u.new_empty(u.shape)), torch.lt(u, p, out=u.new_empty(u.shape))

    @abstractmethod
    def pair_weight(
        self, u: Tensor, p: Tensor, q: Tensor, b1: Tensor, b2: Tensor, density: Tensor | None
    ) -> Tensor:
        """Multiplier of f(b1) - f(b2) for the gradient wrt phi (``density`` None), or wrt theta
        with p = F(theta) when ``density`` = F'(theta) is given."""

    @staticmethod
    def unit_gradient(df: Tensor, w: Tensor) -> Tensor:
        """(f1 - f2) w per unit: df [*B, N] (each point's change of loss) times a fresh w
        [*B, N, n]."""
        df = df[..., None]
        return w.mul_(df) if broadcasts_into(df, w) else w * df


class ARMPairs(PairEstimator):
    """ARM's weight: for a group with logits phi (Yin & Zhou, Theorem 1)

        g_phi = (f(b1) - f(b2)) (u - 1/2),

    and for phi = logit F(theta) the chain rule g_theta = g_phi F'(theta) / (p q)
    (``logit_scale``; for logistic noise phi = theta and the factor is 1, left out).
    Reference: Yin & Zhou, ICLR 2019, arXiv 1807.11143.
    """

    def pair_weight(
        self, u: Tensor, p: Tensor, q: Tensor, b1: Tensor, b2: Tensor, density: Tensor | None
    ) -> Tensor:
        if density is None:
            return u - 0.5
        return logit_scale(density, p, q) * (u - 0.5)


class DisARMPairs(PairEstimator):
    """DisARM's weight (= U2G): ARM with the augmentation noise integrated out,

        g_phi = (1/2) (f(b1) - f(b2)) (b1 - b2) sigmoid(|phi|),   sigmoid(|phi|) = max(p, q),

    and for phi = logit F(theta), g_theta = F'(theta) / (2 min(p, q)) (f(b1) - f(b2)) (b1 - b2)
    (the factor F'/(p q) of ARM times max(p, q) / 2; 0 where min(p, q) = 0, a group that cannot
    flip). Exactly 0 for a group whose pair equals its base (pitfall P8).
    References: Dong, Mnih & Tucker, NeurIPS 2020, arXiv 2006.10680; Yin, Ho, Yan, Qian & Zhou,
    arXiv 2006.06448 (U2G, the identical form (f1 - f2)(b1 - b2) max(p, 1-p) / 2).
    """

    def pair_weight(
        self, u: Tensor, p: Tensor, q: Tensor, b1: Tensor, b2: Tensor, density: Tensor | None
    ) -> Tensor:
        if density is None:
            return 0.5 * torch.maximum(p, q) * (b1 - b2)
        low = torch.minimum(p, q)
        ok = low > 0
        return torch.where(ok, density / (2 * torch.where(ok, low, 1.0)), 0.0) * (b1 - b2)
