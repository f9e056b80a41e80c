"""Exact expected loss and its gradient by the forward algorithm over layer marginals.

The objective is J = (1/N) sum_n E[l(z(x_L), y_n) | x_0 = X_n], each point with its own noise.
The chain x_0 -> x_1 -> ... -> x_L is Markov, so with the transition tables

    T_k[s, t] = P(x_k = t | x_{k-1} = s) = prod_j F(+-a_kj(s))      (sign: state t's bit j)

the marginals P_1[n, t] = P(x_1 = t | X_n) and P_k = P_{k-1} T_k give
J = mean_n sum_t P_L[n, t] l_t.
The backward pass is the reverse sweep D_{k-1} = D_k T_k^T with D_L = dJ/dP_L, and the gradient of
the pre-activations of layer k at upstream state s is

    dJ/da_kj(s) = h(a) G+_j(s) - h(-a) G-_j(s),    h = F'/F,
    G+-_j(s) = sum_{t: bit j of t = 1 / 0} (P_{k-1}^T D_k)[s, t] T_k[s, t],

from which dJ/dW and dJ/db follow by the chain rule (spec §1.3). Cost: three products of size
N x 2^{n_{k-1}} x 2^{n_k} per layer, never an enumeration of the 2^{n_1 + ... + n_L} joint paths.

Tables are built from per-unit factors by outer products (the two halves of each row's units, then
one outer product of the halves) into two small reused workspace buffers: the forward pass in
column blocks, the backward pass in row blocks, each block used by its products while it is still
in cache (BLOCK_ELEMENTS), and smaller under a tight memory budget (plan_exact). Whole tables are
never held: fresh allocations of 128 MiB tables cost more in page faults than rebuilding blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import MemoryBudgetError
from ...options import default_memory_budget, format_bytes
from .model import SBN, encode, flatten_layers, state_bits


@dataclass(frozen=True)
class ExactPlan:
    """Memory plan of one exact computation: what is kept per data point, and the table blocks."""

    widths: tuple[int, ...]
    n_points: int
    data_bytes: int  # marginals, backward messages and head tables, all O(N 2^n)
    table_bytes: int  # two workspace tables of the largest layer (an upper bound)
    block_rows: int  # rows of a transition table built at once (<= 2^{n_{k-1}})

    @property
    def bytes(self) -> int:
        return self.data_bytes + self.table_bytes


def plan_exact(
    widths: tuple[int, ...],
    n_points: int,
    out_dim: int,
    *,
    itemsize: int = 8,
    memory_budget: int | None = None,
) -> ExactPlan:
    """Estimate the memory of an exact computation and choose table blocks within the budget.

    Raises MemoryBudgetError, naming the widths and the bytes needed, before anything is allocated.
    """
    budget = default_memory_budget() if memory_budget is None else memory_budget
    sizes = [2**n for n in widths]
    data = itemsize * n_points * (sum(sizes) + 3 * max(sizes) + sizes[-1] * (2 * out_dim + 2))
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    full_tables = 2 * itemsize * max((s_in * s_out for s_in, s_out in pairs), default=0)
    plan = ExactPlan(widths, n_points, data, full_tables, max(sizes[:-1], default=1))
    if plan.bytes <= budget:
        return plan
    row_bytes = 2 * itemsize * max((s_out for _, s_out in pairs), default=0)
    if pairs and budget - data >= row_bytes:
        rows = (budget - data) // row_bytes
        return ExactPlan(widths, n_points, data, rows * row_bytes, rows)
    minimum = data + row_bytes
    raise MemoryBudgetError(
        f"exact gradient for widths {list(widths)} with {n_points} data points needs "
        f"{format_bytes(plan.bytes)} ({plan.bytes} bytes; at least {format_bytes(minimum)} with "
        f"tables built in row blocks), over the memory budget of {format_bytes(budget)} "
        f"({budget} bytes). Use narrower layers or fewer points, or raise the budget "
        f"(--memory-budget, ESTBENCH_MEMORY_BUDGET)."
    )


@dataclass(frozen=True)
class ExactResult:
    """Exact objective and gradient. ``grads[k] = (dJ/dW_k, dJ/db_k)``, k = 0..L (L: head)."""

    loss: Tensor  # scalar
    loss_per_point: Tensor  # [N]
    grads: tuple[tuple[Tensor, Tensor], ...]

    def layer_vectors(self) -> list[Tensor]:
        """Per-layer flattened gradients concat(vec dW_k, db_k), k = 0..L."""
        return flatten_layers(self.grads)

    def flat(self) -> Tensor:
        return torch.cat(self.layer_vectors())


# Elements of one table block (at most; fewer under a tight memory budget). A block is built,
# multiplied and (backward) reduced while it is still in cache; 2^20 float64 (8 MiB) was the
# fastest of 2^16..2^22 at width 12 (smaller blocks make thin products, larger ones leave the
# cache), and blocks this small are reused from the heap instead of page-faulted in per call.
BLOCK_ELEMENTS = 1 << 20


def _halves(on: Tensor, off: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row product distributions of the first and the second half of the units.

    ``on``, ``off``: [R, n] probabilities of each unit being on / off. The full table is the outer
    product of the halves: T[r, i * R2 + j] = left[r, i] * right[r, j] (unit 0 the top bit).
    """
    rows, n = on.shape

    def expand(lo: int, hi: int) -> Tensor:
        t = on.new_ones(rows, 1)
        for j in range(lo, hi):
            t = torch.stack((t * off[:, j, None], t * on[:, j, None]), dim=-1).reshape(rows, -1)
        return t

    return expand(0, n // 2), expand(n // 2, n)


def _outer(left: Tensor, right: Tensor, out: Tensor | None = None) -> Tensor:
    """Rows of left (x) right, [R, C1] x [R, C2] -> [R, C1 * C2], into ``out`` when given."""
    rows = left.shape[0]
    shape = (rows, left.shape[1], right.shape[1])
    if out is None:
        return (left[:, :, None] * right[:, None, :]).reshape(rows, -1)
    return torch.mul(left[:, :, None], right[:, None, :], out=out.view(shape)).view(rows, -1)


def _logit_grad(a: Tensor, G: Tensor, noise) -> Tensor:  # noqa: ANN001
    """dJ/da from G = [G+, G-] (sums of dJ/dT * T over states with the unit on / off)."""
    n = a.shape[1]
    return noise.hazard(a) * G[:, :n] - noise.hazard(-a) * G[:, n:]


def _block_elements(plan: ExactPlan, sizes: list[int]) -> int:
    """Elements of the workspace blocks: cache-sized, never more than the plan's row blocks."""
    if len(sizes) < 2:
        return 0
    cols = max(sizes[1:])
    return max(cols, min(BLOCK_ELEMENTS, plan.block_rows * cols))


def exact_gradient(
    model: SBN,
    X: Tensor,
    Y: Tensor,
    *,
    memory_budget: int | None = None,
    with_grad: bool = True,
) -> ExactResult:
    """Exact J = mean_n E[l] and dJ/dtheta for every (W_k, b_k), by layer-wise enumeration.

    X: [N, d] inputs; Y: targets for the model's head. Computed in the model's dtype (float64 is
    the reference) on the model's device (``model.to(device="cuda")``; X and Y are moved there).
    With ``with_grad=False`` only the forward pass runs (grads are empty).

    Tables are never held whole: the forward pass builds T_k in column blocks (each output column
    is one full product over the upstream states), the backward pass in row blocks, each block
    sized to stay in cache while it is built and used.
    """
    X, y = model.check_data(X, Y)
    N, L, noise = X.shape[0], model.depth, model.noise
    plan = plan_exact(
        model.widths, N, model.out_dim, itemsize=X.element_size(), memory_budget=memory_budget
    )
    sizes = [2**n for n in model.widths]
    bits = [state_bits(n, dtype=X.dtype, device=X.device) for n in model.widths]
    states = [encode(b, model.coding) for b in bits]
    cap = _block_elements(plan, sizes)
    ws_T, ws_E = X.new_empty(cap), X.new_empty(cap)

    # ---- forward: marginals P_k [N, 2^{n_k}] ----
    W, b = model.weights, model.biases
    A0 = X @ W[0].T + b[0]
    A = [A0] + [states[k - 1] @ W[k].T + b[k] for k in range(1, L)]  # A[k]: [rows, n_{k+1}]
    # per-unit factors P(on), P(off) of every upstream state, and the two halves of each table
    halves = [_halves(noise.cdf(a), noise.cdf(-a)) for a in A]
    P = [_outer(*halves[0])]
    for k in range(1, L):
        s_in, s_out = sizes[k - 1], sizes[k]
        left, right = halves[k]
        width = right.shape[1]  # columns per index of the left half
        rows = min(s_in, max(1, cap // width))  # rows per block (all, unless the budget is tight)
        n_left = max(1, min(left.shape[1], cap // (rows * width)))  # left indices per block
        Pk = X.new_empty(N, s_out) if rows == s_in else X.new_zeros(N, s_out)
        for lo in range(0, s_in, rows):
            hi = min(lo + rows, s_in)
            for i0 in range(0, left.shape[1], n_left):
                i1 = min(i0 + n_left, left.shape[1])
                c0, c1 = i0 * width, i1 * width
                T = _outer(left[lo:hi, i0:i1], right[lo:hi], ws_T[: (hi - lo) * (c1 - c0)])
                if rows == s_in:
                    Pk[:, c0:c1] = P[k - 1] @ T
                else:
                    Pk[:, c0:c1].addmm_(P[k - 1][:, lo:hi], T)
        P.append(Pk)

    Z = states[-1] @ W[L].T + b[L]  # [S_L, K]
    Zn = Z[:, None, :].expand(sizes[-1], N, Z.shape[1])
    loss_table = model.head.loss(Zn, y).T  # [N, S_L]
    loss_per_point = (P[-1] * loss_table).sum(1)
    loss = loss_per_point.mean()
    if not with_grad:
        return ExactResult(loss, loss_per_point, ())

    # ---- backward ----
    # Subtracting each point's expected loss leaves the gradient unchanged (sum_t P_L[n, t] = 1)
    # and removes the common offset from every message, which keeps the differences G+ - G-
    # accurate.
    D = (loss_table - loss_per_point[:, None]) / N
    q = torch.einsum("ns,snk->sk", P[-1], model.head.grad(Zn, y)) / N
    grads = [(q.T @ states[-1], q.sum(0))]
    for k in range(L - 1, 0, -1):
        s_in, s_out = sizes[k - 1], sizes[k]
        left, right = halves[k]
        rows = max(1, min(s_in, cap // s_out))
        two_sided = torch.cat((bits[k], 1 - bits[k]), 1)
        dA = torch.empty_like(A[k])
        D_prev = X.new_empty(N, s_in)
        Pt = P[k - 1].T.contiguous()
        for lo in range(0, s_in, rows):
            hi = min(lo + rows, s_in)
            T = _outer(left[lo:hi], right[lo:hi], ws_T[: (hi - lo) * s_out])
            D_prev[:, lo:hi] = D @ T.T
            E = torch.mm(Pt[lo:hi], D, out=ws_E[: T.numel()].view(T.shape))
            E.mul_(T)
            dA[lo:hi] = _logit_grad(A[k][lo:hi], E @ two_sided, noise)
        grads.append((dA.T @ states[k - 1], dA.sum(0)))
        D = D_prev
    E = D * P[0]
    dA0 = _logit_grad(A0, E @ torch.cat((bits[0], 1 - bits[0]), 1), noise)
    grads.append((dA0.T @ X, dA0.sum(0)))
    return ExactResult(loss, loss_per_point, tuple(reversed(grads)))


def exact_loss(model: SBN, X: Tensor, Y: Tensor, *, memory_budget: int | None = None) -> Tensor:
    """Exact objective only (the forward half of exact_gradient)."""
    return exact_gradient(model, X, Y, memory_budget=memory_budget, with_grad=False).loss
