"""Sampled and enumerated forward passes of a weight SBN, and exact moments of path estimators.

A *path* is one joint draw of the Bernoulli weights and the binary states. Shapes: leading batch
dimensions ``B`` (often [S], or [C_w, C_x] when enumerating), then the data dimension N, then
units. Weights of a Bernoulli pair are [*B, n_out, n_in] when **shared** by all data points (the
default, as in training: one weight draw per mini-batch) and [*B, N, n_out, n_in] **per point**
(each point its own weights). Both modes have the same expected loss and the same mean of any
per-point estimate; they differ in variance (``path_moments`` gives both exactly).

Sampling convention (as in the sbn kind's ``estimators.ops``): W_ji = +1 iff u < p_ji = F_w(eta_ji)
(``WeightSBN.probs``; sigmoid(eta) for the default logistic weight noise), i.e. W = sign(eta + L)
with L = -F_w^{-1}(u) ~ F_w, and a stochastic unit is on iff v < F(a), with u, v ~ U(0, 1) drawn
from the caller's generator; the antithetic branch of ARM-type estimators uses 1[u > 1 - p]
(``layered_estimators.PairEstimator.pair``, with 1 - p = F_w(-eta) or F(-a), accurate in the
tail). A weight with p = 1 (q = 0), e.g. |eta| >= 1 under the uniform weight noise, is +1 (-1)
in every draw (its antithetic branch too, but for u = 0 exactly; estimators give such a weight
a zero multiplier anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ...errors import MemoryBudgetError
from ...problem import PathMoments
from ..sbn.estimators.ops import uniforms
from ..sbn.model import encode, state_bits
from .model import WeightProblem, WeightSBN, on_off


def apply_weights(W: Tensor, x: Tensor, per_point: bool) -> Tensor:
    """x W^T for inputs x [*B, N, n_in] (or X [N, d]) and W [n_out, n_in] (real),
    [*B, n_out, n_in] (shared draw) or [*B, N, n_out, n_in] (per point)."""
    if W.dim() == 2:
        return x @ W.T
    if per_point:
        return (W @ x[..., None])[..., 0]
    return x @ W.transpose(-1, -2)


def back_weights(W: Tensor, g: Tensor, per_point: bool) -> Tensor:
    """g W: the backward of ``apply_weights`` with respect to its input, g [*B, N, n_out]."""
    if W.dim() == 2 or not per_point:
        return g @ W
    return (g[..., None, :] @ W)[..., 0, :]


@dataclass(frozen=True)
class WeightPath:
    """A forward pass along given weights and states.

    ``weights[k]`` is the matrix pair k used (±1 draw or real), ``wbits[k]`` its 0/1 form for
    Bernoulli pairs (None for real ones). Per binary layer k+1 (index k): ``bits``, coded ``xs``,
    pre-activation ``a``, ``on`` = P(on | a) and ``off`` = P(off | a). ``inputs[k]`` multiplies
    pair k (X for k = 0, else xs[k-1]); ``z`` is the head output [*B, N, K].
    """

    weights: list[Tensor]
    wbits: list[Tensor | None]
    per_point: bool
    bits: list[Tensor]
    xs: list[Tensor]
    a: list[Tensor]
    on: list[Tensor]
    off: list[Tensor]
    inputs: list[Tensor]
    z: Tensor

    def state_probability(self) -> Tensor:
        """P(x_1..x_L | W, X_n) along the path, [*B, N]."""
        prob = None
        for b, on, off in zip(self.bits, self.on, self.off, strict=True):
            layer = torch.where(b == 1, on, off).prod(-1)
            prob = layer if prob is None else prob * layer
        assert prob is not None
        return prob


BitsRule = Callable[[int, Tensor, Tensor, Tensor], Tensor]  # (k, a, on, off) -> 0/1 bits


def walk(
    problem: WeightProblem, wbits: Sequence[Tensor | None], per_point: bool, rule: BitsRule
) -> WeightPath:
    """The forward pass with Bernoulli weights W = 2 wbits - 1 and states chosen by ``rule``."""
    m = problem.model
    weights = [W if wb is None else 2 * wb - 1 for W, wb in zip(m.params, wbits, strict=True)]
    x: Tensor = problem.X
    bits: list[Tensor]
    xs: list[Tensor]
    As: list[Tensor]
    ons: list[Tensor]
    offs: list[Tensor]
    inputs, bits, xs, As, ons, offs = [x], [], [], [], [], []
    for k in range(m.depth):
        a = apply_weights(weights[k], x, per_point) + m.biases[k]
        on, off = on_off(m.noise, a)
        b = rule(k, a, on, off)
        a, on, off = (t.expand_as(b) for t in (a, on, off))  # enumeration broadcasts the states
        x = encode(b, m.coding)
        for store, value in zip((bits, xs, As, ons, offs), (b, x, a, on, off), strict=True):
            store.append(value)
        inputs.append(x)
    z = apply_weights(weights[-1], x, per_point) + m.biases[-1]
    return WeightPath(weights, list(wbits), per_point, bits, xs, As, ons, offs, inputs, z)


# ------------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Uniforms:
    """The U(0, 1) noise of S draws: ``weights[k]`` for Bernoulli pairs ([S, n_out, n_in] shared,
    [S, N, n_out, n_in] per point; None for real pairs) and ``states[k]`` [S, N, n_{k+1}] for
    stochastic activations (None for sign activations)."""

    weights: list[Tensor | None]
    states: list[Tensor | None]


def draw_uniforms(
    problem: WeightProblem, n_draws: int, generator: torch.Generator, per_point: bool
) -> Uniforms:
    """Weights first (pair order), then states (layer order), all from ``generator``."""
    m, N = problem.model, problem.n_points
    lead = (n_draws, N) if per_point else (n_draws,)
    weights = [
        uniforms((*lead, *W.shape), generator, problem.X) if kind == "bernoulli" else None
        for W, kind in zip(m.params, m.kinds, strict=True)
    ]
    states = [
        None if m.noise is None else uniforms((n_draws, N, n), generator, problem.X)
        for n in m.widths
    ]
    return Uniforms(weights, states)


def base_bits(u: Tensor, p: Tensor) -> Tensor:
    """The sampled bits 1[u < p]."""
    return (u < p).to(u.dtype)


def path_from_uniforms(
    problem: WeightProblem,
    noise: Uniforms,
    per_point: bool,
    *,
    branch: tuple[str, int, Tensor] | None = None,
    fixed_weights: Sequence[Tensor | None] | None = None,
) -> WeightPath:
    """The path that ``noise`` determines. ``branch = ("weights" | "states", k, bits)`` replaces
    the bits of one Bernoulli pair or one stochastic layer by ``bits`` (every other uniform is
    shared: common random numbers). ``fixed_weights`` (0/1 per Bernoulli pair)
    replaces the weight draws, e.g. by the deterministic sign(eta)."""
    m = problem.model
    wbits: list[Tensor | None] = []
    for k, u in enumerate(noise.weights):
        if u is None:
            wbits.append(None)
            continue
        if fixed_weights is not None:
            wbits.append(fixed_weights[k])
            continue
        if branch is not None and branch[:2] == ("weights", k):
            wbits.append(branch[2])
        else:
            wbits.append(base_bits(u, m.probs(k)[0]))

    def states(k: int, a: Tensor, on: Tensor, off: Tensor) -> Tensor:
        v = noise.states[k]
        if v is None:  # sign activation: deterministic
            return on
        if branch is not None and branch[:2] == ("states", k):
            return branch[2]
        return base_bits(v, on)

    return walk(problem, wbits, per_point, states)


def sample_path(
    problem: WeightProblem, n_draws: int, generator: torch.Generator, per_point: bool
) -> WeightPath:
    """S joint draws of weights and states."""
    return path_from_uniforms(
        problem, draw_uniforms(problem, n_draws, generator, per_point), per_point
    )


# ------------------------------------------------------------------------------------------------
# Enumeration and exact moments of path estimators
# ------------------------------------------------------------------------------------------------

DEFAULT_MAX_CONFIGS = 1 << 20  # joint (weights x states) configurations per data point


def weight_configurations(model: WeightSBN) -> tuple[list[Tensor | None], Tensor]:
    """Every joint ±1 draw of the Bernoulli weights: 0/1 bits [C_w, n_out, n_in] per Bernoulli
    pair (None for real ones) and their probabilities [C_w]."""
    shapes = [model.params[k].shape for k in model.bernoulli_layers]
    total = sum(s.numel() for s in shapes)
    joint = state_bits(total, dtype=model.dtype, device=model.device)
    parts = iter(torch.split(joint, [s.numel() for s in shapes], dim=1))
    wbits: list[Tensor | None] = []
    prob = torch.ones(joint.shape[0], dtype=model.dtype, device=model.device)
    for k, kind in enumerate(model.kinds):
        if kind == "real":
            wbits.append(None)
            continue
        bits = next(parts).reshape(-1, *model.params[k].shape)
        p, q = model.probs(k)
        prob = prob * torch.where(bits == 1, p, q).flatten(1).prod(1)
        wbits.append(bits)
    return wbits, prob


def enumerate_paths(
    problem: WeightProblem,
    *,
    fixed_weights: Sequence[Tensor | None] | None = None,
    max_configs: int = DEFAULT_MAX_CONFIGS,
) -> tuple[WeightPath, Tensor]:
    """Every (weights, states) configuration as one shared-weight path with batch [C_w, C_x],
    and the joint probability P(W) P(x | W, X_n) [C_w, C_x, N]. ``fixed_weights`` (0/1 per
    Bernoulli pair) enumerates the states only, with those weights (C_w = 1)."""
    m = problem.model
    n_weights = sum(m.params[k].numel() for k in m.bernoulli_layers)
    n_weights = 0 if fixed_weights is not None else n_weights
    count = 2 ** (n_weights + sum(m.widths))
    if count > max_configs:
        raise MemoryBudgetError(
            f"enumerating {count} joint configurations (2^{n_weights} weights x "
            f"2^{sum(m.widths)} states) exceeds max_configs = {max_configs}"
        )
    if fixed_weights is None:
        wbits, p_w = weight_configurations(m)
    else:
        wbits = [None if w is None else w[None] for w in fixed_weights]
        p_w = problem.X.new_ones(1)
    wbits = [None if w is None else w[:, None] for w in wbits]  # [C_w, 1, out, in]
    joint = state_bits(sum(m.widths), dtype=problem.dtype, device=problem.device)
    given = [b[None, :, None, :] for b in torch.split(joint, list(m.widths), dim=1)]

    def states(k: int, a: Tensor, on: Tensor, off: Tensor) -> Tensor:
        return given[k].expand(torch.broadcast_shapes(a.shape, given[k].shape))

    path = walk(problem, wbits, False, states)
    return path, p_w[:, None, None] * path.state_probability()


def path_moments(
    estimator: Any,
    problem: WeightProblem,
    *,
    context: Any = None,
    max_configs: int = DEFAULT_MAX_CONFIGS,
) -> PathMoments:
    """Exact E[g] and Var[g] of one draw of a path estimator, by enumerating weights and states.

    g = (1/N) sum_n g_n(W^n, x^n). Shared weights (W^n = W): E[g] = sum_W P(W) E[g | W] and
    Var = E_W[(1/N^2) sum_n Var(g_n | W)] + Var_W(E[g | W]). Per-point weights: the points are
    independent, Var = (1/N^2) sum_n Var(g_n). The mean is the same in both modes.
    """
    path, prob = enumerate_paths(
        problem, fixed_weights=estimator.fixed_weights(problem), max_configs=max_configs
    )
    g = estimator.path_estimate(problem, path, context)  # [C_w, C_x, N, P]
    w = prob[..., None]
    m_n = (w * g).sum(1)  # [C_w, N, P]: P(W) E[g_n | W]
    s_n = (w * g * g).sum(1)
    N = problem.n_points
    mean = m_n.sum(0).mean(0)
    if estimator.per_point:
        var_n = s_n.sum(0) - m_n.sum(0) ** 2  # [N, P]
        return PathMoments(mean, var_n.sum(0) / N**2, problem)
    p_w = prob[:, :, 0].sum(1)  # P(W) (the state probabilities sum to 1 for every point)
    safe = torch.where(p_w > 0, p_w, 1.0)[:, None, None]
    cond_mean = m_n / safe  # E[g_n | W]
    within = ((s_n - m_n * cond_mean).sum(1)) / N**2  # sum_W P(W) Var(g | W)
    between = (p_w[:, None] * cond_mean.mean(1) ** 2).sum(0) - mean**2
    return PathMoments(mean, within.sum(0) + between, problem)
