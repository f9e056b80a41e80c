"""Exact expected loss and gradients of an SBN with stochastic binary weights.

The objective is J = (1/N) sum_n E[l(z, y_n) | X_n] over weights and activations. Whether a draw
shares the weights across the data points or samples them per point does not change J (linearity
of expectation: each term only sees the marginal of its own point), so the exact reference
marginalises the weights **per point**. Given x_{k-1}, the units of layer k are independent (each
unit has its own weight row), and

    P(x_kj on | x_{k-1}) = sum_v P(s_j = v) P(on | v + b_j),   s_j = sum_i W_ji x_{k-1,i},

where s_j is a sum of independent terms c_i = W_ji x_{k-1,i} in {-1, 0, +1}:
P(c_i = +1) = p_ji if x_i = +1, q_ji if x_i = -1, and c_i = 0 if x_i = 0, with
p = P(W = +1) = F_w(eta) and q = P(W = -1) = F_w(-eta) (``WeightSBN.probs``).
Its distribution on the lattice {-m..m} (m = fan-in) is a Poisson-binomial-type convolution,
computed by the dynamic programme ``lattice_distribution`` over the fan-in. A Bernoulli first
layer reads real inputs, where s_j takes up to 2^d values: those are enumerated
(``first_layer_on_off``). The transition tables T_k[s, t] = prod_j P(x_kj = t_j | s) then feed
the same forward algorithm as the core solver (``estbench.kinds.sbn.exact``): P_1 = T_0(X_n),
P_k = P_{k-1} T_k, J = mean_n sum_t P_L[n, t] l_t.

Gradients come from autograd over this differentiable forward pass, with the probabilities
p = F_w(eta) and q = F_w(-eta) as separate leaves (both accurate in the tails). By the chain rule,
dp/deta = F_w'(eta) and dq/deta = -F_w'(-eta) = -F_w'(eta) (symmetric noise), so

    dJ/deta = (dJ/dp - dJ/dq) F_w'(eta),      dJ/dmu = (dJ/dp - dJ/dq) / 2     (p = (1 + mu)/2),

with F_w'(eta) = p q for the logistic weight noise (sigmoid' = sigmoid sigmoid(-.)) and
(1/2) 1[|eta| <= 1] for the uniform one (0 where the weight is deterministic; dJ/dmu is not 0
there: the finite difference (E[l | W = +1] - E[l | W = -1]) / 2 that mu cannot move along).

The transition tables are the large objects; ``Transition`` builds them in row blocks and
rebuilds them in the backward pass instead of letting autograd keep one per layer, so memory
holds the O(N 2^n) marginals, the per-unit tables and one block (as the core solver).

Cost per pair k >= 1 (as the core solver, plus the DP): the DP over all input states at once
(``state_lattices``, a prefix tree) 2^{n_k + 1} x n_{k+1} x (2 n_k + 1); the table
2^{n_k} x 2^{n_{k+1}}, built twice; the marginal products N x 2^{n_k} x 2^{n_{k+1}}. A Bernoulli
first layer: N x n_1 x 2^d (plus n_1 x 2^d x d for the pattern probabilities). Joint
enumeration would cost 2^(#weights + sum n_k) per point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import MemoryBudgetError
from ...options import default_memory_budget, format_bytes
from ..sbn.model import encode, flatten_layers, state_bits
from .model import WeightSBN, on_off


def lattice_distribution(plus: Tensor, minus: Tensor, zero: Tensor) -> Tensor:
    """Distribution of s = sum_i c_i with independent c_i in {+1, -1, 0}.

    ``plus, minus, zero`` [..., m]: P(c_i = +1), P(c_i = -1), P(c_i = 0). Returns [..., 2m + 1],
    entry v + m = P(s = v) for v = -m..m. One convolution step per term; differentiable.
    """
    *lead, m = plus.shape
    dist = plus.new_zeros(*lead, 2 * m + 1)
    dist[..., m] = 1
    for i in range(m):
        up = F.pad(dist[..., :-1], (1, 0))  # P(s_prev = v - 1) at v
        down = F.pad(dist[..., 1:], (0, 1))  # P(s_prev = v + 1) at v
        dist = plus[..., i, None] * up + minus[..., i, None] * down + zero[..., i, None] * dist
    return dist


def state_lattices(p: Tensor, q: Tensor, coding: str) -> Tensor:
    """Distribution of s_j = sum_i W_ji x_i for *every* binary input state x, [2^m, n_out,
    2m + 1] in the order of ``estbench.kinds.sbn.model.state_bits`` (input 0 the top bit).

    The DP of ``lattice_distribution`` after inputs 0..i-1 depends only on those bits, so the
    states are processed as a binary tree: level i holds the 2^i prefixes, and each splits into
    x_i off / on. Work and autograd memory ~ n_out 2^{m+1} (2m + 1) instead of m times that for
    a separate DP per state -- what keeps wide Bernoulli layers within the memory budget.
    ``p, q`` [n_out, m]: P(W = +1), P(W = -1).
    """
    n_out, m = p.shape
    dist = p.new_zeros(n_out, 1, 2 * m + 1)
    dist[..., m] = 1
    for i in range(m):
        up = F.pad(dist[..., :-1], (1, 0))  # P(s_prev = v - 1) at v: this term is +1
        down = F.pad(dist[..., 1:], (0, 1))  # P(s_prev = v + 1) at v: this term is -1
        pi, qi = p[:, i, None, None], q[:, i, None, None]
        on = pi * up + qi * down  # x_i = +1 (both codings): c = W
        off = dist if coding == "01" else qi * up + pi * down  # x_i = 0: c = 0; x_i = -1: c = -W
        dist = torch.stack((off, on), 2).reshape(n_out, -1, 2 * m + 1)
    return dist.transpose(0, 1)


def bernoulli_on_off(model: WeightSBN, p: Tensor, q: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """(P(on), P(off)) [2^m, n_out] of a Bernoulli pair for every binary input state."""
    m = p.shape[1]
    dist = state_lattices(p, q, model.coding)
    values = torch.arange(-m, m + 1, dtype=p.dtype, device=p.device)
    on, off = on_off(model.noise, values + bias[:, None])  # [n_out, 2m + 1]
    return (dist * on).sum(-1), (dist * off).sum(-1)


def first_layer_on_off(
    model: WeightSBN, X: Tensor, p: Tensor, q: Tensor, bias: Tensor
) -> tuple[Tensor, Tensor]:
    """(P(on), P(off)) [N, n_1] of a Bernoulli first pair reading real inputs X [N, d]: the
    2^d sign patterns w of a weight row are enumerated, P_j(w) = prod_i (p_ji or q_ji)."""
    bits = state_bits(X.shape[1], dtype=X.dtype, device=X.device)  # [2^d, d]
    pattern_prob = torch.where(bits[None] == 1, p[:, None, :], q[:, None, :]).prod(-1)
    a = (X @ (2 * bits - 1).T)[:, None, :] + bias[None, :, None]  # [N, n_1, 2^d]
    on, off = on_off(model.noise, a)
    return (on * pattern_prob).sum(-1), (off * pattern_prob).sum(-1)


def product_table(on: Tensor, off: Tensor) -> Tensor:
    """[R, n] per-unit probabilities -> [R, 2^n] joint of independent units (unit 0 top bit,
    the order of ``estbench.kinds.sbn.model.state_bits``)."""
    rows, n = on.shape
    table = on.new_ones(rows, 1)
    for j in range(n):
        table = torch.stack((table * off[:, j, None], table * on[:, j, None]), -1)
        table = table.reshape(rows, -1)
    return table


TABLE_BLOCK_BYTES = 64 << 20  # a row block of a transition table and its autograd stages


def block_rows(n_out: int, rows: int) -> int:
    """Rows of T_k built at once: ~6 tables of [rows, 2^n_out] (the product stages, M, T)
    within ``TABLE_BLOCK_BYTES``."""
    return max(1, min(rows, TABLE_BLOCK_BYTES // (6 * 8 * 2**n_out)))


class Transition(torch.autograd.Function):
    """P_k = P_{k-1} T_k with T_k = ``product_table(on, off)`` built in row blocks and never
    stored: the backward pass rebuilds each block (as the core solver does), so memory holds
    the marginals and the per-unit tables [2^{n_{k-1}}, n_k], not the 2^{n_{k-1}} x 2^{n_k}
    tables of every layer that autograd would keep.

    Backward with D = dJ/dP_k: dJ/dP_{k-1} = D T^T, and (on, off) get the gradient of
    sum_{s,t} M[s, t] T[s, t] with M = P_{k-1}^T D, by autograd of the block's product.
    """

    @staticmethod
    def forward(ctx, P: Tensor, on: Tensor, off: Tensor) -> Tensor:  # noqa: ANN001
        ctx.save_for_backward(P, on, off)
        out = P.new_zeros(P.shape[0], 2 ** on.shape[1])
        step = block_rows(on.shape[1], on.shape[0])
        for lo in range(0, on.shape[0], step):
            out.addmm_(P[:, lo : lo + step], product_table(on[lo : lo + step], off[lo : lo + step]))
        return out

    @staticmethod
    def backward(ctx, D: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # noqa: ANN001
        P, on, off = ctx.saved_tensors
        dP, d_on, d_off = torch.empty_like(P), torch.empty_like(on), torch.empty_like(off)
        step = block_rows(on.shape[1], on.shape[0])
        for lo in range(0, on.shape[0], step):
            rows = slice(lo, lo + step)
            with torch.enable_grad():
                on_b, off_b = (
                    on[rows].detach().requires_grad_(),
                    off[rows].detach().requires_grad_(),
                )
                T = product_table(on_b, off_b)
                M = P[:, rows].T @ D
                d_on[rows], d_off[rows] = torch.autograd.grad((M * T).sum(), (on_b, off_b))
            dP[:, rows] = D @ T.detach().T
        return dP, d_on, d_off


def exact_bytes(model: WeightSBN, n_points: int, itemsize: int = 8) -> int:
    """Working memory of ``exact_gradient`` including what autograd keeps (an upper estimate):
    marginals and messages O(N 2^n) per layer, the per-unit tables and the DP's stages per
    Bernoulli layer, and one transition-table block at a time."""
    sizes = [2**n for n in model.widths]
    total = 3 * n_points * sum(sizes) + 2 * n_points * sizes[-1] * (model.out_dim + 2)
    fan_ins = [model.input_dim, *model.widths]
    block = 0
    for k, n_out in enumerate(model.widths):
        m = fan_ins[k]
        if k == 0:
            if model.kinds[0] == "bernoulli":
                total += 4 * n_points * n_out * 2**m + n_out * 2**m * m
            continue
        block = max(block, 6 * block_rows(n_out, sizes[k - 1]) * sizes[k])
        total += 4 * sizes[k - 1] * n_out  # on, off and their gradients
        if model.kinds[k] == "bernoulli":  # the prefix tree's stages (2^{m+1} nodes), read-out
            total += 12 * sizes[k - 1] * n_out * (2 * m + 1)
    return itemsize * (total + block)


def check_budget(model: WeightSBN, n_points: int, memory_budget: int | None = None) -> int:
    """Raise MemoryBudgetError, naming the widths and bytes, before anything is allocated."""
    budget = default_memory_budget() if memory_budget is None else memory_budget
    need = exact_bytes(model, n_points)
    if need > budget:
        raise MemoryBudgetError(
            f"exact gradient of the weight SBN with widths {list(model.widths)} and {n_points} "
            f"data points needs about {format_bytes(need)} ({need} bytes), over the memory "
            f"budget of {format_bytes(budget)} ({budget} bytes). Use narrower layers or fewer "
            "points, or raise the budget (ESTBENCH_MEMORY_BUDGET)."
        )
    return need


@dataclass(frozen=True)
class WeightExactResult:
    """Exact objective and gradients. ``grads[k] = (dJ/dtheta_k, dJ/db_k)`` with theta_k = eta_k
    for Bernoulli pairs (W_k for real ones); ``mean_grads`` has dJ/dmu_k in their place."""

    loss: Tensor
    loss_per_point: Tensor
    grads: tuple[tuple[Tensor, Tensor], ...]
    mean_grads: tuple[tuple[Tensor, Tensor], ...]

    def layer_vectors(self, wrt: str = "eta") -> list[Tensor]:
        """Per-layer concat(vec dtheta_k, db_k); ``wrt="mu"`` for the weight-mean gradient."""
        if wrt not in ("eta", "mu"):
            raise ValueError(f"wrt must be 'eta' or 'mu', got {wrt!r}")
        return flatten_layers(self.grads if wrt == "eta" else self.mean_grads)

    def flat(self, wrt: str = "eta") -> Tensor:
        return torch.cat(self.layer_vectors(wrt))


def exact_gradient(
    model: WeightSBN,
    X: Tensor,
    Y: Tensor,
    *,
    memory_budget: int | None = None,
    with_grad: bool = True,
) -> WeightExactResult:
    """Exact J = mean_n E[l] and its gradient for every pair, by per-point weight marginals
    and the layer-wise forward algorithm (module docstring). Float64 is the reference."""
    X, y = model.check_data(X, Y)
    check_budget(model, X.shape[0], memory_budget)
    L = model.depth
    # Leaves: (p, q) for Bernoulli pairs, W for real ones; biases always.
    weight_leaves: list[tuple[Tensor, ...]] = []
    for k, kind in enumerate(model.kinds):
        if kind == "bernoulli":
            p, q = (t.detach().requires_grad_(with_grad) for t in model.probs(k))
            weight_leaves.append((p, q))
        else:
            weight_leaves.append((model.params[k].detach().requires_grad_(with_grad),))
    biases = [b.detach().requires_grad_(with_grad) for b in model.biases]

    def layer_on_off(k: int, inputs: Tensor, binary: bool) -> tuple[Tensor, Tensor]:
        if model.kinds[k] == "real":
            return on_off(model.noise, inputs @ weight_leaves[k][0].T + biases[k])
        p, q = weight_leaves[k]
        if binary:
            return bernoulli_on_off(model, p, q, biases[k])
        return first_layer_on_off(model, X, p, q, biases[k])

    with torch.set_grad_enabled(with_grad):
        P = product_table(*layer_on_off(0, X, binary=False))
        for k in range(1, L):
            bits = state_bits(model.widths[k - 1], dtype=X.dtype, device=X.device)
            inputs = bits if model.kinds[k] == "bernoulli" else encode(bits, model.coding)
            P = Transition.apply(P, *layer_on_off(k, inputs, binary=True))
        states = encode(state_bits(model.widths[-1], dtype=X.dtype, device=X.device), model.coding)
        Z = states @ weight_leaves[L][0].T + biases[L]  # [2^{n_L}, K]
        loss_table = model.head.loss(Z[:, None, :].expand(-1, X.shape[0], -1), y).T
        # Subtracting each point's (detached) expected loss leaves J and its gradient unchanged
        # (sum_t P_L[n, t] = 1) and keeps the backward messages free of a common offset.
        offset = (P * loss_table).sum(1).detach()
        loss_per_point = (P * (loss_table - offset[:, None])).sum(1) + offset
        loss = loss_per_point.mean()
    if not with_grad:
        return WeightExactResult(loss, loss_per_point, (), ())

    leaves = [t for pair in weight_leaves for t in pair] + biases
    # Parameters that only feed sign activations are not in the graph: their gradient is 0.
    grads = iter(torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True))
    d_weights = [tuple(next(grads) for _ in pair) for pair in weight_leaves]
    d_biases = list(grads)
    eta_pairs, mu_pairs = [], []
    for k, (leaf, dw, db) in enumerate(zip(weight_leaves, d_weights, d_biases, strict=True)):
        if model.kinds[k] == "bernoulli":
            p, q = (t.detach() for t in leaf)
            diff = dw[0] - dw[1]
            d_eta = diff * p * q if model.logistic_weights else diff * model.weight_density(k)
            eta_pairs.append((d_eta, db))
            mu_pairs.append((diff / 2, db))
        else:
            eta_pairs.append((dw[0], db))
            mu_pairs.append((dw[0], db))
    return WeightExactResult(
        loss.detach(), loss_per_point.detach(), tuple(eta_pairs), tuple(mu_pairs)
    )


def exact_loss(
    model: WeightSBN, X: Tensor, Y: Tensor, *, memory_budget: int | None = None
) -> Tensor:
    """The exact objective only (no autograd graph)."""
    return exact_gradient(model, X, Y, memory_budget=memory_budget, with_grad=False).loss
