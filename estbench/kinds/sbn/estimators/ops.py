"""Vectorised SBN operations shared by the estimators.

Shapes: a batch of draws (or enumerated paths) has leading dimensions ``B`` (often [S]), then the
data dimension N, then units. ``bits[k]`` [*B, N, n_{k+1}] are 0/1 states of binary layer k+1;
``xs[k]`` the coded states it passes on ({0,1} or {-1,+1}); ``a[k]`` [*B, N, n_{k+1}] the
pre-activations that produced them. Sampling convention: a unit is on iff u < F(a), u ~ U(0, 1)
(spec §1.1; estimators that couple uniforms across passes say so).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Estimator
from ....rng import uniforms
from ..model import SBN, Problem, coding_scale, encode


def first_preactivation(problem: Problem) -> Tensor:
    """a_1 = X W_0^T + b_0, [N, n_1] (shared by every draw: the input is real)."""
    m = problem.model
    return problem.X @ m.weights[0].T + m.biases[0]


def preactivation(problem: Problem, k: int, x_prev: Tensor) -> Tensor:
    """a_{k+1} = x_k W_k^T + b_k for k >= 1 (x_prev [*B, N, n_k]); the head for k = L."""
    m = problem.model
    return add_bias(x_prev @ m.weights[k].T, m.biases[k])


def add_bias(a: Tensor, b: Tensor) -> Tensor:
    """a + b for a fresh ``a`` [*B, N, n] and a bias b [n], in place.

    Same values as ``a + b``, faster: broadcasting b over [*B, N, n] runs torch's inner loop over
    the n units only (5 on the seed network); b repeated along the N points is one contiguous row
    of N n numbers per batch entry instead (timing: docs/performance.md)."""
    if a.dim() < 2 or not a.is_contiguous():
        return a.add_(b)
    n_points = a.shape[-2]
    return a.view(-1, n_points * a.shape[-1]).add_(b.repeat(n_points)).view(a.shape)


@dataclass(frozen=True)
class Path:
    """A forward pass along binary states: every layer's input, pre-activation, P(on), head output.

    ``inputs[k]`` multiplies W_k ([N, d] for k = 0, else the coded states xs[k-1]); ``a[k]`` and
    ``p[k]`` = F(a[k]) belong to binary layer k+1; ``z`` is the head output [*B, N, K].
    """

    bits: list[Tensor]
    xs: list[Tensor]
    a: list[Tensor]
    p: list[Tensor]
    inputs: list[Tensor]
    z: Tensor

    def pdf(self, problem: Problem) -> list[Tensor]:
        """F'(a_k) per layer (computed once per point where a_k is shared by all draws)."""
        noise = problem.model.noise
        return [per_draw(noise.pdf_given, a, p) for a, p in zip(self.a, self.p, strict=True)]

    def scores(self, problem: Problem) -> list[Tensor]:
        """d log P(x_k | x_{k-1}) / d a_k per layer, at the sampled upstream states (P3)."""
        noise = problem.model.noise
        return [noise.score(a, p, b) for a, p, b in zip(self.a, self.p, self.bits, strict=True)]


def per_draw(fn: Callable[[Tensor, Tensor], Tensor], a: Tensor, p: Tensor) -> Tensor:
    """fn(a, p) for elementwise ``fn``; when a and p are expanded along their leading (draw)
    dimensions (stride 0: the first layer, shared by all draws), fn runs once on the shared
    [N, n] values and its result is expanded the same way."""
    lead = 0
    while lead < a.dim() - 2 and a.stride(lead) == 0 and p.stride(lead) == 0:
        lead += 1
    if lead == 0 or a.shape != p.shape:
        return fn(a, p)
    index = (0,) * lead
    return fn(a[index], p[index]).expand(a.shape)


def _walk(problem: Problem, batch: tuple[int, ...], next_bits) -> Path:  # noqa: ANN001
    m = problem.model
    a0 = first_preactivation(problem)
    a = a0.expand(*batch, *a0.shape)
    # The first layer's F(a) is the same for every draw: computed once, [N, n_1], and expanded.
    p = m.noise.cdf(a0).expand(a.shape)
    xs: list[Tensor]
    bits, xs, As, ps = [], [], [], []
    for k in range(m.depth):
        if k > 0:
            a = preactivation(problem, k, xs[-1])
            p = m.noise.cdf(a)
        b = next_bits(k, a, p)
        bits.append(b)
        xs.append(encode(b, m.coding))
        As.append(a)
        ps.append(p)
    z = preactivation(problem, m.depth, xs[-1])
    return Path(bits, xs, As, ps, [problem.X, *xs], z)


def sample_path(problem: Problem, n_draws: int, generator: torch.Generator) -> Path:
    """One path per draw and data point: unit on iff u < F(a), u ~ U(0, 1); [S, N, n_k]."""

    def draw(k: int, a: Tensor, p: Tensor) -> Tensor:
        # In place, the comparison writes 1.0/0.0 into the fresh uniforms: no bool tensor and
        # no conversion pass (same values as (u < p).to(a.dtype)).
        return uniforms(a.shape, generator, a).lt_(p)

    return _walk(problem, (n_draws,), draw)


def uniform_path(problem: Problem, us: Sequence[Tensor]) -> Path:
    """The path along given uniforms ``us[k]`` [*B, N, n_{k+1}]: unit on iff u < F(a), as
    ``sample_path`` (which draws them); the uniforms are kept."""

    def draw(k: int, a: Tensor, p: Tensor) -> Tensor:
        return torch.lt(us[k], p, out=us[k].new_empty(us[k].shape))  # 1.0/0.0, no bool pass

    return _walk(problem, tuple(us[0].shape[:-2]), draw)


def forward(problem: Problem, bits: Sequence[Tensor]) -> Path:
    """The path along given 0/1 states ``bits[k]`` [*B, N, n_{k+1}] (B may broadcast)."""
    batch = tuple(bits[0].shape[:-2])
    return _walk(problem, batch, lambda k, a, p: bits[k])


def head_grad(problem: Problem, z: Tensor) -> Tensor:
    """dl/dz [*B, N, K]."""
    return problem.model.head.grad(z, problem.Y)


# A gradient contribution for parameter pair k: (g, inp) with g = dl/d(pre-activation) per point
# [*B, N, n_out] and inp the input that multiplied W_k ([*B, N, n_in] or [N, n_in]), so that
# dl/dW_k = g^T inp and dl/db_k = g. Several contributions per layer are summed.
Contribution = tuple[Tensor, Tensor]


def assemble(
    problem: Problem, terms: Sequence[Sequence[Contribution]], *, per_point: bool
) -> Tensor:
    """Parameter gradients from logit gradients: [*B, P] averaged over the data, or per point
    [*B, N, P] (whose mean over N is the draw's estimate). ``terms[k]`` lists layer k's parts."""
    N = problem.n_points
    out = []
    for k, parts in enumerate(terms):
        n_out, n_in = problem.model.weights[k].shape
        gW = gb = None
        for g, inp in parts:
            if per_point:
                w = (g[..., :, None] * inp[..., None, :]).reshape(*g.shape[:-1], n_out * n_in)
                b = g
            else:
                inp_b = inp.expand(*g.shape[:-1], n_in)
                w = torch.einsum("...nj,...ni->...ji", g, inp_b).reshape(*g.shape[:-2], -1) / N
                b = g.mean(-2)
            gW = w if gW is None else gW + w
            gb = b if gb is None else gb + b
        if gW is None or gb is None:
            raise ValueError(f"no gradient contribution for layer{k}")
        out += [gW, gb]
    return torch.cat(out, dim=-1)


def layer_terms(path: Path, logit_grads: Sequence[Tensor], dz: Tensor) -> list[list[Contribution]]:
    """One contribution per layer along ``path``: binary layers from their logit gradients, and
    the head's pathwise gradient dl/dz (unbiased for any estimator that samples hard states)."""
    terms = [[(g, inp)] for g, inp in zip(logit_grads, path.inputs, strict=False)]
    terms.append([(dz, path.inputs[-1])])
    return terms


def enumerate_bits(widths: Sequence[int], like: Tensor) -> list[Tensor]:
    """All joint 0/1 states of the binary layers as [C, 1, n_k] tensors (C = 2^{sum n})."""
    from ..model import state_bits

    joint = state_bits(sum(widths), dtype=like.dtype, device=like.device)
    return [b[:, None, :] for b in torch.split(joint, list(widths), dim=1)]


# ---- shared by the score-function estimators (score.py, score_noise.py) ----------------------


def point_losses(problem: Problem, z: Tensor) -> Tensor:
    """l(z, y_n) per point, [*B, N] (z [*B, N, K]; extra batch dimensions must lead)."""
    return problem.model.head.loss(z, problem.Y)


def propagate(problem: Problem, k: int, x: Tensor, us: Sequence[Tensor | None]) -> Tensor:
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


def flip_bits(bits: Tensor) -> Tensor:
    """[*B, N, n] -> [n, *B, N, n]: copy j has unit j toggled (flip index leading, so that head
    losses broadcast against the targets)."""
    n = bits.shape[-1]
    eye = torch.eye(n, dtype=bits.dtype, device=bits.device)
    eye = eye.reshape(n, *([1] * (bits.dim() - 1)), n)
    return bits + eye * (1 - 2 * bits)


def last_layer_flip_losses(problem: Problem, path: Path) -> Tensor:
    """l with unit j of the last binary layer toggled, [*B, N, n_L], by rank-1 head updates."""
    m = problem.model
    b = path.bits[-1]
    dx = (1 - 2 * b) * coding_scale(m.coding)  # change of x_Lj when it flips
    WT = m.weights[-1].T  # [n_L, K]
    dx = dx.movedim(-1, 0)  # [n_L, *B, N]
    z = path.z + dx[..., None] * WT.reshape(WT.shape[0], *([1] * (dx.dim() - 1)), WT.shape[1])
    return point_losses(problem, z).movedim(0, -1)


def last_layer_local_expectation(problem: Problem, path: Path, f: Tensor) -> Tensor:
    """F'(a_j) (f(x | x_j on) - f(x | x_j off)) for the last binary layer, [*B, N, n_L]: the exact
    per-unit local expectation gradient (LEG) given the other units of that layer."""
    b = path.bits[-1]
    diff = (2 * b - 1) * (f[..., None] - last_layer_flip_losses(problem, path))
    return path.pdf(problem)[-1] * diff


# ---- the base class of the sbn kind's path estimators ---------------------------------------


class PathEstimator(Estimator[Problem, SBN]):
    """An estimator whose only randomness is the sampled binary path x_1..x_L.

    Subclasses implement ``path_terms``: the gradient contributions (see ``ops.assemble``) along a
    path (``ops.Path``: states, pre-activations, F(a), head output). A draw samples one path per
    data point (on iff u < F(a)) and averages over the data; ``path_estimate`` gives the
    per-point estimates for given states, which exact enumeration needs. Moments are exact given
    ``context`` (the result of ``prepare``; None for most estimators).
    """

    @abstractmethod
    def path_terms(
        self, problem: Problem, path: Any, context: Any = None
    ) -> list[list[tuple[Tensor, Tensor]]]:
        """Per-layer contributions [(g [..., N, n_out], input [..., N, n_in]), ...], k = 0..L."""

    def path_estimate(
        self, problem: Problem, bits: Sequence[Tensor], context: Any = None
    ) -> Tensor:
        """Per-point estimates [..., N, P] for 0/1 states ``bits[k]`` [..., N, n_{k+1}]."""
        terms = self.path_terms(problem, forward(problem, bits), context)
        return assemble(problem, terms, per_point=True)

    def _draw(
        self, problem: Problem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        terms = self.path_terms(problem, sample_path(problem, n_draws, generator), context)
        return assemble(problem, terms, per_point=False)
