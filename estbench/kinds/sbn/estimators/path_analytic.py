"""Path-analytic family: PSA and SA (Shekhovtsov, Yanush & Flach, NeurIPS 2020).

Both sample one path x_1..x_L and then propagate, backwards, the effect of flipping single units:

* top sensitivities: delta_{L,i} = f(x_L with unit i flipped) - f(x_L), one head evaluation per
  unit of the last binary layer;
* a recursion delta_{k-1,i} = sum_j C_k[j, i] delta_{k,j}, where C_k[j, i] says how much the
  (flip) probability of unit j of layer k changes when its input i flips;
* logit gradients g_{a_kj} = D_kj delta_kj, parameter gradients g_{W_k} = g_{a_k} x_{k-1}^T;
* the head: the authors' lower-variance "output form" (``output_form_head_terms``).

Paths with more than one flip per layer are dropped; that is the (small) bias below the last
binary layer. The two estimators differ only in C and D (spec §4.4, §4.5).

Coding. The algorithm is stated in +-1 states, but nothing in it depends on the coding except the
size of a flip: when input i flips, a_kj changes by W_ji (xbar_i - x_i) = -c W_ji s_i, with
s_i = 2 b_i - 1 the sign of the sampled state and c = 2 for +-1 states, c = 1 for {0,1} states
(so +-W_ji, not 2 W_ji, in {0,1} coding). The logit gradients are therefore the same in both
codings of one network, and the parameter gradients, formed with the model's own inputs, are in
the model's own coding (pitfall P1).

Layer indices follow the model: the pairs k = 0..L-1 feed binary layer k+1, k = L is the head.
Internally the per-unit tensors are unit-major, [n, *B, N] (``units_first``): the
[n_out, n_in, *B, N] flip tensors, the main cost, are then processed along their long dimension.

Not implemented here:

* SA with t > 0 (the authors' smoothed variant): it samples the states from a smoothed CDF
  F_t(a) = [softplus(a + t) - softplus(a - t)] / (2t) rather than the model's F while its
  gradient keeps sigmoid'(a), so it is not an estimator for this model's path distribution, and
  its target was not documented in anything that could be read (spec §4.5: UNVERIFIED).
* FouST (Pervez, Cohen & Gavves, ICML 2020, PMLR 119:7632-7640), spec §4.3: only the abstracts
  of the ICML paper and of its ICLR 2020 submission ("Low bias gradient estimates for very deep
  Boolean stochastic networks", OpenReview Bygadh4tDB: "three simple bias reduction steps")
  could be found, and no code by the authors or anyone else (Papers with Code lists none).
  Algorithm 1 -- which distribution is sampled, the scaling constants, the weights -- could not
  be checked, so FouST is left out rather than implemented from a recollection.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ....estimators.base import Estimator
from ...layered_estimators import broadcasts_into
from ..model import SBN, Problem
from .ops import Contribution, Path, PathEstimator, per_draw


def flip_scale(problem: Problem) -> float:
    """c: a flip changes a unit's coded value by -c s (s = +-1 the sign of the sampled state)."""
    return 2.0 if problem.model.coding == "pm1" else 1.0


def units_first(t: Tensor) -> Tensor:
    """[*B, N, n] -> contiguous [n, *B, N]."""
    return t.movedim(-1, 0).contiguous()


def _units_first_shared(t: Tensor) -> Tensor:
    """``units_first`` for a tensor expanded along its leading (draw) dimensions: the shared
    [N, n] values made unit-major, [n, 1.., N], which broadcasts like [n, *B, N]."""
    lead = 0
    while lead < t.dim() - 2 and t.stride(lead) == 0:
        lead += 1
    if lead == 0:
        return units_first(t)
    small = units_first(t[(0,) * lead])  # [n, N]
    return small.reshape(small.shape[0], *([1] * lead), small.shape[1]).expand(
        t.shape[-1], *t.shape[:-1]
    )


def signs(bits: Tensor) -> Tensor:
    """s = 2b - 1 (+-1, the sign of the sampled state), unit-major: one transposing multiply into
    a fresh unit-major tensor (rather than a transposed copy and then a product)."""
    moved = bits.movedim(-1, 0)
    out = torch.empty(moved.shape, dtype=bits.dtype, device=bits.device)
    return torch.mul(moved, 2, out=out).sub_(1)


def contract(C: Tensor, v: Tensor, *, overwrite: bool = False) -> Tensor:
    """sum_j C[j, i, ..] v[j, ..] -> [i, ..], unit-major.

    When C does not vary over the data (size 1 there: exact enumeration, where the layers above
    the first see the same states for every point) a batched matmul over the paths does it;
    otherwise (draws: every point has its own path) an elementwise product summed over j, which
    runs along the long batch dimension. ``overwrite``: C may be overwritten.
    """
    if C.shape[-1] == 1 and v.shape[-1] > 1:
        if v.dim() == 3 and C.dim() == 4:  # one batch dimension: [c, i, j] @ [c, j, N] -> [i, c, N]
            out = torch.empty(C.shape[1], *v.shape[1:], dtype=v.dtype, device=v.device)
            torch.bmm(C.squeeze(-1).permute(2, 1, 0), v.transpose(0, 1), out=out.transpose(0, 1))
            return out
        out = v.movedim(0, -1) @ C.squeeze(-1).movedim((0, 1), (-2, -1))  # [*B, N, i]
        return out.movedim(-1, 0)
    vj = v.unsqueeze(1)
    if overwrite and broadcasts_into(vj, C):  # the product in place: no second flip-sized tensor
        return C.mul_(vj).sum(0)
    return (C * vj).sum(0)


def head_flips(problem: Problem, path: Path, sign: Tensor) -> tuple[Tensor, Tensor]:
    """Single-flip neighbours of the last binary layer, vectorised over the flipped unit.

    Given the last layer's signs (unit-major), returns delta_L [n_L, *B, N] (unit-major) with
    delta_L[i] = f(x_L with unit i flipped) - f(x_L), and z_flip [*B, n_L, N, K], the head output
    of each neighbour. The head is linear, so a neighbour's output is z - c s_i W_L[:, i]; the flip
    index sits in front of the data dimension so that the head's targets ([N] labels or [N, K]
    values) broadcast unchanged.
    """
    m = problem.model
    step = sign.movedim(0, -2).unsqueeze(-1)  # [*B, n_L, N', 1]
    z_flip = torch.addcmul(
        path.z.unsqueeze(-3), step, m.weights[-1].T.unsqueeze(-2), value=-flip_scale(problem)
    )
    f = m.head.loss(path.z, problem.Y)  # [*B, N]
    f_flip = m.head.loss(z_flip, problem.Y)  # [*B, n_L, N]
    return (f_flip - f.unsqueeze(-2)).movedim(-2, 0).contiguous(), z_flip


def output_form_head_terms(
    problem: Problem, path: Path, z_flip: Tensor, sign: Tensor
) -> list[Contribution]:
    """The head gradient of the authors' lower-variance output form (seed study §3 item 5).

    Their output layer evaluates E = f(x) + sum_i (f(x^i) - f(x)) pi_i / n_L with pi_i the
    (detached) probability that unit i of x_L is not in its sampled state and x^i the neighbour
    with unit i flipped. Its gradient in the head parameters is

        (1 - sum_i pi_i / n_L) grad f(x) + sum_i (pi_i / n_L) grad f(x^i),

    a mixture of pathwise head gradients at x and at its neighbours. Conditionally on the other
    units, E_{x_i}[f(x) + pi_i (f(x^i) - f(x))] = E_{x_i}[f(x)], so the average over i of these
    local expectations has the expectation of the plain pathwise gradient dl/dz x_L^T: both are
    unbiased; this one has lower variance (it Rao-Blackwellises one unit at a time).
    """
    m = problem.model
    n, K = m.widths[-1], m.out_dim
    x = path.xs[-1]
    step = sign.movedim(0, -1) * -flip_scale(problem)  # xbar - x, [*B, N', n_L]
    dz = m.head.grad(path.z, problem.Y)  # [*B, N, K]
    dz_flip = m.head.grad(z_flip, problem.Y)  # [*B, n_L, N, K]
    weight = path.p[-1].sub(path.bits[-1]).abs_().div_(n)  # pi_i / n_L = |F(a) - b| / n_L
    base = 1 - weight.sum(-1, keepdim=True)
    wdz = weight.movedim(-1, -2).unsqueeze(-1) * dz_flip  # [*B, n_L, N, K]
    if n <= K:  # one contribution per neighbour x^i = x + step_i e_i: (w_i dl/dz(x^i), x^i)
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        return [(base * dz, x)] + [
            (wdz[..., i, :, :], x + step[..., i : i + 1] * eye[i]) for i in range(n)
        ]
    # Fewer contributions (K + 1 instead of n_L + 1; the exact moments cost grows with their
    # square): with G = base dl/dz + sum_i w_i dl/dz(x^i) and R[k, i] = w_i step_i dl/dz_k(x^i),
    # the head gradient is G x^T + R (weights) and G (bias), written as
    # (G - 1, x) + sum_k (e_k, x + R[k, :]) -- the e_k add up to 1, which the first term removes.
    G = torch.addcmul(wdz.sum(-3), base, dz)
    R = (wdz * step.movedim(-1, -2).unsqueeze(-1)).movedim(-3, -1)  # [*B, N, K, n_L]
    eye = torch.eye(K, dtype=x.dtype, device=x.device)
    return [(G - 1, x)] + [(eye[k].expand_as(G), x + R[..., k, :]) for k in range(K)]


class PathAnalyticBase(PathEstimator):
    """Shared backward recursion of PSA and SA; subclasses give one layer's step (``layer``)."""

    family = "path-analytic"
    # The last binary layer's pair (L-1) and the head (L); below that single-flip truncation.
    unbiased = "last layer only"

    def evals_per_draw(self, model: SBN) -> float:
        # f on the sampled path, plus f on each of the n_L single-flip neighbours of x_L (only the
        # head is re-evaluated, but each is a loss evaluation on a complete path).
        return 1.0 + model.widths[-1]

    def bytes_per_draw(self, problem: Problem) -> int:
        m = problem.model
        dims = (m.input_dim, *m.widths)
        flips = sum(dims[k] * dims[k + 1] for k in range(1, len(dims) - 1))  # [N, n_k, n_{k-1}]
        n, K = m.widths[-1], m.out_dim
        extra = 8 * problem.n_points * (4 * flips + 4 * n * (K + n) + 8 * n)
        return super().bytes_per_draw(problem) + extra

    def layer(
        self, delta: Tensor, sign: Tensor, p: Tensor, pdf: Tensor, F_flip: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """One layer of the recursion, unit-major: from delta_k, the signs s_k of the sampled
        states, F(a_k), F'(a_k) ([n_out, ..]) and F_flip[j, i, ..] = F(a_kj with input i flipped)
        (None for the first layer, whose input is real), return the logit gradient g_{a_k} and
        delta_{k-1} (None without F_flip). May overwrite F_flip."""
        raise NotImplementedError

    def path_terms(
        self, problem: Problem, path: Path, context: Any = None
    ) -> list[list[Contribution]]:
        m = problem.model
        noise = m.noise
        sign = signs(path.bits[-1])
        delta, z_flip = head_flips(problem, path, sign)
        head = output_form_head_terms(problem, path, z_flip, sign)
        grads: list[Tensor] = []
        for k in range(m.depth - 1, -1, -1):
            F_flip = sign_in = None
            if k == 0:  # the first binary layer reads the real input: no input flips
                p = _units_first_shared(path.p[0])  # F and F' per point, shared by the draws
                pdf = _units_first_shared(per_draw(noise.pdf_given, path.a[0], path.p[0]))
            else:
                a, p = units_first(path.a[k]), units_first(path.p[k])
                pdf = noise.pdf_given(a, p)
                # a_kj with input i flipped, [j, i, *B, N]: a_kj - c W_k,ji s_i.
                sign_in = signs(path.bits[k - 1])
                W = m.weights[k].reshape(*m.weights[k].shape, *([1] * (a.dim() - 1)))
                t = torch.addcmul(
                    a.unsqueeze(1), sign_in.unsqueeze(0), W, value=-flip_scale(problem)
                )
                # The flip tensor is the main cost: its CDF in place where that is sigmoid.
                F_flip = t.sigmoid_() if noise.name == "logistic" else noise.cdf(t)
            g, delta_in = self.layer(delta, sign, p, pdf, F_flip)
            grads.append(g.movedim(0, -1))
            if sign_in is None or delta_in is None:
                break
            delta, sign = delta_in, sign_in
        terms: list[list[Contribution]] = [
            [(g, inp)] for g, inp in zip(grads[::-1], path.inputs, strict=False)
        ]
        terms.append(head)
        return terms


class PSA(PathAnalyticBase):
    """PSA, path sample-analytic (the authors' "SAH"): the exact gradient of a single-flip
    expansion of E[f] along the sampled path.

    Approximates the gradient of J = E[f(x_L)] in every parameter. With s_kj = +-1 the sign of
    the sampled state, pi_kj = F(-s_kj a_kj) the probability of the state not sampled and
    pi^(i)_kj the same with input i flipped (a_kj + W_k,ji (xbar_i - x_i)):

        delta_{L,i}   = f(x_L with unit i flipped) - f(x_L)
        delta_{k-1,i} = sum_j (pi^(i)_kj - pi_kj) delta_kj
                      = sum_j s_kj (F(a_kj) - F(a^(i)_kj)) delta_kj
        g_{a_kj}      = d pi_kj / d a_kj delta_kj = -s_kj F'(a_kj) delta_kj,

    g_{W_k} = g_{a_k} x_{k-1}^T, g_{b_k} = g_{a_k}. Linearising F(a^(i)) - F(a) and the top
    differences turns this into principled ST (the paper's "deep ST" remark).

    Head: the authors' lower-variance output form (``output_form_head_terms``), chosen because the
    benchmark reproduces PSA "as the authors implement it" (seed study §3 item 5); it has the
    same expectation as the plain pathwise head gradient dl/dz x_L^T, and the same gradients in
    the binary layers.

    Requires: a symmetric noise F with density F' (any of the model's noises), a linear head
    (for the n_L neighbour evaluations), either coding; f only on the cube.

    Bias: exact in expectation for the last binary layer (pair L-1; it equals the local
    expectation gradient there) and the head, hence exactly unbiased for L = 1. Additionally
    exact at pair L-2 when n_L = 1 [spec §4.4]. Biased below (only
    single-flip paths are kept); 3-5 % relative on the seed networks, up to tens of % on random
    nets with weight scale 1.3-1.5.

    Cost: 1 + n_L loss evaluations per draw (the sampled path, and the head on each single-flip
    neighbour of x_L); the backward pass costs sum_k n_k n_{k-1} evaluations of F -- not a matmul.

    Reference: A. Shekhovtsov, V. Yanush & P. Flach, "Path sample-analytic gradient estimators
    for stochastic binary networks", NeurIPS 2020, arXiv 2006.03143.

    Provenance: checked against the authors' code (shekhovt/PSA-Neurips2020,
    gradeval/model.py ``fw_SAH``; models/sah_functions.py ``linear_binary_inner_SAH``,
    ``binary_out_SAH_vec``): their value-zero q tensors carry d q'_j = d Delta_0j +
    sum_i (Delta_ij - Delta_0j) d q_i with Delta_ij = -y_j sigmoid(a_j - 2 w_ji x_i), i.e. the
    recursion above with F = sigmoid; the output layer is the form above with p_out detached.
    The paper body could not be read here (abstract only), so the correspondence to the paper's
    equations is through the authors' code. General F (sigmoid -> F, sigmoid' -> F') is
    spec-derived.
    """

    name = "psa"
    reference = "Shekhovtsov, Yanush & Flach, NeurIPS 2020, arXiv 2006.03143"
    verified = (
        "exact: the seed networks' stored `psa_expected_grad_layer{k}` (computed with the "
        'authors\' code, {0,1}) to 1e-10 and the "E PSA" row of §5.3; exact in the last binary '
        "pair and the head for all three noises; also exact at pair L−2 when n_L = 1 (spec "
        "§4.4); bias detected below; toy: g with zero variance"
    )
    tests = ("tests/test_path_analytic.py",)

    def layer(
        self, delta: Tensor, sign: Tensor, p: Tensor, pdf: Tensor, F_flip: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        v = sign * delta
        g = torch.mul(v, pdf).neg_()  # -s F'(a) delta
        if F_flip is None:
            return g, None
        # sum_j s_j (F(a_j) - F(a_ij)) delta_j = sum_j v_j F(a_j) - sum_j v_j F(a_ij): a single
        # reduction over the flip tensor, no elementwise pass.
        return g, (v * p).sum(0) - contract(F_flip, v, overwrite=True)


class SA(PathAnalyticBase):
    """SA, sample-analytic with t = 0 (the authors' ``fw_SA`` with t = 0, "SA-t=0"): like PSA but
    with a common-noise (coupled) flip model and importance weighting by the sampled state.

    With s_kj, a^(i)_kj as in PSA and P_kj = F(s_kj a_kj) the probability of the sampled state:

        delta_{L,i}   = f(x_L with unit i flipped) - f(x_L)
        delta_{k-1,i} = sum_j [s_kj (F(a_kj) - F(a^(i)_kj))]_+ / P_kj * delta_kj
        g_{a_kj}      = -s_kj F'(a_kj) / (2 P_kj) * delta_kj.

    The transfer coefficient is the probability that unit j flips when input i flips, given its
    sampled state, when the unit keeps its noise z_kj (it is the authors' y (F(a) - F(a^(i)))
    1[y (a^(i) - a) < 0] / P; for monotone F the indicator is the positive part). Head: the same
    output form as PSA (the authors' SA output layer calls the PSA one).

    Requires: as PSA. Paths of probability 0 (uniform noise) get 0 instead of 0/0.

    Because of the 1/(2P) weighting it is not deterministic even for a single unit: there it is
    g / (2 P(b)), unbiased with variance g^2 (1 / (4 p (1 - p)) - 1) (zero only at p = 1/2);
    spec §5.1's "Var = 0" holds for PSA, not for this SA.

    Bias: exact in expectation for the last binary layer and the head (so exact for L = 1);
    additionally exact at pair L-2 when n_L <= 2 (spec §4.5; its mean there is a trapezoid
    rule over a multilinear expectation). Biased below, usually much
    less than PSA (spec §4.5: 0.08-13 % against PSA's 0.4-73 % on random nets).

    Cost: as PSA, 1 + n_L loss evaluations per draw.

    Reference: Shekhovtsov, Yanush & Flach, NeurIPS 2020 (arXiv 2006.03143), the authors' code.

    Provenance: transcribed from the authors' code (shekhovt/PSA-Neurips2020,
    gradeval/model.py ``fw_SA`` at t = 0: Delta_0 = (F(a).detach() - F(a)) y / 2, Delta_i =
    y (F(a) - F(a_i)) 1[(a_i - a) y < 0], p = (Delta_0 (1 - sum q) + Delta_i q) / P with P
    detached; gradeval/test_grad1.py runs it as "SA-t=0"). Whether this is the paper's SA could
    not be checked (paper body not available). The t > 0 variant is NOT implemented: it samples
    from a smoothed CDF F_t (logistic convolved with U[-t, t]) instead of the model's F while
    keeping sigmoid' in the gradient, so it is an estimator for a different model, and what it
    estimates is not documented in what could be read (UNVERIFIED, spec §4.5).
    """

    name = "sa"
    reference = "Shekhovtsov, Yanush & Flach, NeurIPS 2020, arXiv 2006.03143 (authors' code)"
    verified = (
        'exact: the "E SA (t = 0)" row of §5.3; exact in the last binary pair and the head, '
        "also at pair L−2 when n_L ≤ 2 (spec §4.5); toy: unbiased with variance g²(1/(4p(1 − "
        'p)) − 1), not the "Var = 0" of PSA'
    )
    tests = ("tests/test_path_analytic.py",)

    def layer(
        self, delta: Tensor, sign: Tensor, p: Tensor, pdf: Tensor, F_flip: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        w = delta * _inverse_sampled_prob(sign, p)  # delta / P(sampled state)
        g = (-0.5 * sign) * pdf * w
        if F_flip is None:
            return g, None
        # [s_j (F(a_j) - F(a_ij))]_+, in place on the freshly computed F_flip.
        flip = F_flip.neg_().add_(p.unsqueeze(1)).mul_(sign.unsqueeze(1)).clamp_min_(0)
        return g, contract(flip, w, overwrite=True)


def _inverse_sampled_prob(sign: Tensor, p: Tensor) -> Tensor:
    """1 / P(sampled state) = 1 / F(s a), and 0 where that is 0 (a path of probability 0, possible
    with uniform noise in enumeration, carries no weight in any expectation)."""
    prob = torch.where(sign > 0, p, 1 - p)
    return torch.where(prob > 0, 1 / prob, torch.zeros_like(prob))


ESTIMATORS: list[type[Estimator]] = [PSA, SA]
