"""The exact negative ELBO of a Bernoulli-latent VAE, its gradient, and the exact log-likelihood.

Every term of log p(x, z) - log q(z | x) involves at most two adjacent layers (z_0 = x), so
E_q[.] needs only the pairwise marginals q(z_{k-1}, z_k | x) = q(z_{k-1} | x) T_k[z_{k-1}, z_k],
T_k = q(z_k | z_{k-1}), of the forward recursion q(z_k | x) = sum q(z_{k-1} | x) T_k. Writing
the per-pair integrand as

    R_1[n, s] = log p(x_n | z_1 = s) - log q(z_1 = s | x_n)                       [N, S_1]
    R_k[s, t] = log p(z_{k-1} = s | z_k = t) - log q(z_k = t | z_{k-1} = s)       [S_{k-1}, S_k]
    r_L[t]    = log p(z_L = t)                                                    [S_L]

(S_k = 2^{n_k} states), the ELBO of point n is

    ELBO_n = sum_s q_1[n, s] (R_1[n, s] + U_1[s]),
    U_L = r_L,   U_{k-1}[s] = sum_t T_k[s, t] (R_k[s, t] + U_k[t])   (k = L .. 2),

the same sum as the forward recursion's, taken from the top: the encoder above z_1 does not see
x, so the value vectors U_k are one per state, not per point. The cost is
sum_{k >= 2} S_{k-1} S_k (n_{k-1} + n_k) once, plus N S_1 (D + n_1) for the data -- less than the
forward recursion's N sum_k S_{k-1} S_k, with the same result (tests/test_sbvae_exact.py checks
both against the enumeration of all joint states).

The gradient is by reverse mode in float64, in blocks: the value vectors are computed first
without a graph; then the data term runs in blocks of points and each table in blocks of rows,
each block's graph built and differentiated on its own (``torch.autograd.grad`` with the
upstream gradient of its U rows), so memory is one block, not the whole computation
(``plan_exact`` sizes the blocks to the memory budget and refuses, before any work, what cannot
fit). The factors' logits on all states (E_k = e_k(states), A_k = d_k(states)) are computed once
per layer and their gradients accumulated over blocks, then sent through the factors once.

The exact log-likelihood log p(x) = log sum_z p(x, z) follows the generative chain the same way,
in log space: a_L = r_L, a_{k-1}[s] = logsumexp_t (log p(z_{k-1} = s | z_k = t) + a_k[t]), and
log p(x_n) = logsumexp_s (log p(x_n | z_1 = s) + a_1[s]). The gap log p(x) - ELBO is
KL(q(z | x) || p(z | x)) >= 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import MemoryBudgetError
from ...options import default_memory_budget, format_bytes
from ..sbn.model import state_bits
from .model import SBVAE

# Float64 arrays alive per element of a block, with the autograd graph of the block's backward
# pass (logits products, softplus, T, the integrand and their gradients): an upper bound.
POINT_ARRAYS = 10
TABLE_ARRAYS = 12


@dataclass(frozen=True)
class ExactPlan:
    """Memory plan of one exact computation: what is held throughout (states, the factors' logits
    on all states and their graphs, value vectors), and the rows of a point block and of each
    table block (tables k = 2..L; ``table_rows[k - 2]`` <= S_{k-1})."""

    latent: tuple[int, ...]
    n_points: int
    fixed_bytes: int
    point_rows: int
    table_rows: tuple[int, ...]
    block_bytes: int

    @property
    def bytes(self) -> int:
        return self.fixed_bytes + self.block_bytes


def plan_exact(model: SBVAE, n_points: int, memory_budget: int | None = None) -> ExactPlan:
    """Blocks within the budget; MemoryBudgetError naming the widths and bytes before any work.
    Exact integers throughout, so a latent width of 60 is refused rather than overflowing."""
    budget = default_memory_budget() if memory_budget is None else memory_budget
    item = 8
    sizes = (model.data_dim, *model.latent)
    S = [2**n for n in model.latent]
    h = sum(model.hidden)
    # states, logits of both factors on all states (with the hidden layers' activations, twice
    # for their gradients), the value vectors, and the data.
    fixed = item * (
        sum(
            s * (n + 2 * (h + sizes[k] + sizes[k + 1]) + 2)
            for k, (s, n) in enumerate(zip(S, model.latent, strict=True))
        )
        + n_points * (model.data_dim + 2 * (h + model.latent[0]))
    )
    per_point = item * POINT_ARRAYS * S[0]
    per_row = [item * TABLE_ARRAYS * s_out for s_out in S[1:]]
    full = max([per_point * n_points] + [r * s_in for r, s_in in zip(per_row, S, strict=False)])
    if fixed + full <= budget:
        rows = tuple(S[:-1])
        return ExactPlan(model.latent, n_points, fixed, n_points, rows, full)
    smallest = max([per_point, *per_row])
    if fixed + smallest <= budget:
        room = budget - fixed
        point_rows = max(1, min(n_points, room // per_point))
        rows = tuple(max(1, min(s_in, room // r)) for r, s_in in zip(per_row, S, strict=False))
        block = max([per_point * point_rows] + [r * n for r, n in zip(per_row, rows, strict=True)])
        return ExactPlan(model.latent, n_points, fixed, point_rows, rows, block)
    need = fixed + full
    raise MemoryBudgetError(
        f"exact ELBO gradient for latent widths {list(model.latent)} with {n_points} data points "
        f"needs {format_bytes(need)} ({need} bytes; at least {format_bytes(fixed + smallest)} in "
        f"blocks), over the memory budget of {format_bytes(budget)} ({budget} bytes). Use "
        "narrower latent layers or fewer points, or raise the budget (--memory-budget, "
        "ESTBENCH_MEMORY_BUDGET)."
    )


@dataclass(frozen=True)
class ExactResult:
    """The exact negative ELBO ``loss`` (mean over the data), per point ``elbo`` [N], and the
    gradient of ``loss`` per parameter key (``grads``; empty when not asked for)."""

    loss: Tensor
    elbo: Tensor
    grads: dict[str, Tensor]

    def flat(self, model: SBVAE) -> Tensor:
        """The gradient as the harness's flat vector (``SBVAE.flat``)."""
        return model.flat(self.grads)


def _softplus_sum(a: Tensor) -> Tensor:
    return torch.nn.functional.softplus(a).sum(-1)


def _table(bits_in: Tensor, E: Tensor, bits_out: Tensor, A: Tensor) -> tuple[Tensor, Tensor]:
    """log T_k and log p(z_{k-1} | z_k) on rows s (``bits_in`` [R, n_{k-1}], encoder logits
    ``E`` [R, n_k]) x all states t (``bits_out`` [S_k, n_k], decoder logits ``A``
    [S_k, n_{k-1}]): both [R, S_k]."""
    log_q = E @ bits_out.T - _softplus_sum(E)[:, None]
    log_p = bits_in @ A.T - _softplus_sum(A)[None, :]
    return log_q, log_p


def _rows(n: int, block: int) -> list[slice]:
    return [slice(lo, min(lo + block, n)) for lo in range(0, n, block)]


def exact_elbo(
    model: SBVAE, X: Tensor, *, memory_budget: int | None = None, with_grad: bool = True
) -> ExactResult:
    """Exact J = -(1/N) sum_n ELBO_n and dJ/dtheta for every parameter key (module docstring),
    in float64 on the model's device. X: [N, D] in {0, 1}."""
    model = model.to(dtype=torch.float64)
    X, _ = model.check_data(X, None)
    N, L = X.shape[0], model.n_latent
    plan = plan_exact(model, N, memory_budget)
    leaves = {k: v.detach().requires_grad_(with_grad) for k, v in model.params.items()}
    m = model.replace(leaves)
    bits = [state_bits(n, dtype=X.dtype, device=X.device) for n in model.latent]
    below = [None, None, *bits]  # below[k]: the states of z_{k-1} (k >= 2)

    def detach(t: Tensor) -> Tensor:
        return t.detach().requires_grad_(with_grad)

    with torch.set_grad_enabled(with_grad):
        # The factors' logits on all states, each with its graph to the parameters:
        # E[k] = e_k(states of z_{k-1}) (k >= 2), A[k] = d_k(states of z_k), and r_L.
        E = {k: m.encoder_logits(k, below[k]) for k in range(2, L + 1)}  # type: ignore[arg-type]
        A = {k: m.decoder_logits(k, bits[k - 1]) for k in range(1, L + 1)}
        r_L = bits[-1] @ m.prior_logits - _softplus_sum(m.prior_logits)
    E_leaf = {k: detach(v) for k, v in E.items()}
    A_leaf = {k: detach(v) for k, v in A.items()}

    # ---- value vectors U_L .. U_1, no graph ----
    U: dict[int, Tensor] = {L: r_L.detach()}
    with torch.no_grad():
        for k in range(L, 1, -1):
            Uk = X.new_empty(2 ** model.latent[k - 2])
            for r in _rows(Uk.shape[0], plan.table_rows[k - 2]):
                log_q, log_p = _table(below[k][r], E[k][r], bits[k - 1], A[k])  # type: ignore[index]
                Uk[r] = (log_q.exp() * (log_p - log_q + U[k][None, :])).sum(1)
            U[k - 1] = Uk

    # ---- the data term, in blocks of points ----
    elbo = X.new_empty(N)
    grads: dict[str, Tensor] = {k: torch.zeros_like(v) for k, v in leaves.items()}
    g_A1 = torch.zeros_like(A[1])
    g_U = torch.zeros_like(U[1])
    keys = list(leaves)
    for r in _rows(N, plan.point_rows):
        with torch.set_grad_enabled(with_grad):
            U1 = detach(U[1])
            E1 = m.encoder_logits(1, X[r])
            log_q = E1 @ bits[0].T - _softplus_sum(E1)[:, None]
            log_p = X[r] @ A_leaf[1].T - _softplus_sum(A_leaf[1])[None, :]
            e = (log_q.exp() * (log_p - log_q + U1[None, :])).sum(1)
        elbo[r] = e.detach()
        if with_grad:
            inputs = [leaves[k] for k in keys] + [A_leaf[1], U1]
            got = torch.autograd.grad(-e.sum() / N, inputs, allow_unused=True)
            _accumulate(grads, keys, got[: len(keys)])
            g_A1 += got[-2]
            g_U += got[-1]
    if not with_grad:
        return ExactResult(-elbo.mean(), elbo, {})

    # ---- the tables k = 2..L, in blocks of rows: dJ/dU_{k-1} -> dJ/dE_k, dJ/dA_k, dJ/dU_k ----
    g_E = {k: torch.zeros_like(v) for k, v in E.items()}
    g_A = {1: g_A1, **{k: torch.zeros_like(A[k]) for k in range(2, L + 1)}}
    for k in range(2, L + 1):
        Uk = detach(U[k])
        g_next = torch.zeros_like(U[k])
        for r in _rows(g_U.shape[0], plan.table_rows[k - 2]):
            with torch.enable_grad():
                log_q, log_p = _table(below[k][r], E_leaf[k][r], bits[k - 1], A_leaf[k])  # type: ignore[index]
                u = (log_q.exp() * (log_p - log_q + Uk[None, :])).sum(1)
            dE, dA, dU = torch.autograd.grad(u, (E_leaf[k], A_leaf[k], Uk), g_U[r])
            g_E[k] += dE
            g_A[k] += dA
            g_next += dU
        g_U = g_next

    # ---- through the factors on all states and the prior, once ----
    outputs = [*E.values(), *A.values(), r_L]
    upstream = [*g_E.values(), *g_A.values(), g_U]
    got = torch.autograd.grad(outputs, [leaves[k] for k in keys], upstream, allow_unused=True)
    _accumulate(grads, keys, got)
    return ExactResult(-elbo.mean(), elbo, grads)


def _accumulate(grads: dict[str, Tensor], keys: list[str], got: tuple[Tensor | None, ...]) -> None:
    for key, g in zip(keys, got, strict=True):
        if g is not None:
            grads[key] += g


def exact_log_likelihood(model: SBVAE, X: Tensor, *, memory_budget: int | None = None) -> Tensor:
    """Exact log p(x_n) = log sum_z p(x_n, z) per point, [N], float64 (module docstring)."""
    model = model.to(dtype=torch.float64)
    X, _ = model.check_data(X, None)
    N, L = X.shape[0], model.n_latent
    plan = plan_exact(model, N, memory_budget)
    bits = [state_bits(n, dtype=X.dtype, device=X.device) for n in model.latent]
    with torch.no_grad():
        a = bits[-1] @ model.prior_logits - _softplus_sum(model.prior_logits)
        for k in range(L, 1, -1):
            A = model.decoder_logits(k, bits[k - 1])
            lp_A = _softplus_sum(A)[None, :]
            below = bits[k - 2]
            nxt = X.new_empty(below.shape[0])
            for r in _rows(below.shape[0], plan.table_rows[k - 2]):
                nxt[r] = torch.logsumexp(below[r] @ A.T - lp_A + a[None, :], dim=1)
            a = nxt
        A1 = model.decoder_logits(1, bits[0])
        sp = _softplus_sum(A1)[None, :]
        out = X.new_empty(N)
        for r in _rows(N, plan.point_rows):
            out[r] = torch.logsumexp(X[r] @ A1.T - sp + a[None, :], dim=1)
    return out


def exact_loss(model: SBVAE, X: Tensor, *, memory_budget: int | None = None) -> Tensor:
    """The exact negative ELBO alone."""
    return exact_elbo(model, X, memory_budget=memory_budget, with_grad=False).loss
