"""Exact mean and variance of the ``sbvae`` kind's path estimators, by enumerating the latent
states of every data point.

A path estimator (``VAEPathEstimator``) draws one latent path z_n ~ q(z | x_n) per point, each
point's independent of the others', and averages per-point estimates g_n(z_n), which depend on
x_n, z_n and the prepared context alone. So one draw has

    E[g]   = (1/N) sum_n sum_z q(z | x_n) g_n(z),
    Var[g] = (1/N^2) sum_n ( sum_z q(z | x_n) g_n(z)^2 - (sum_z q(z | x_n) g_n(z))^2 )

per coordinate: the variance is a sum of per-point variances (the points' paths are
independent), so the enumeration is over the 2^{n_1 + ... + n_L} joint latent states of *one*
point, for each point, never over the joint states of all points. The per-point estimates
g_n(z) are the estimator's own (``path_estimates`` on the one-point problem (x_n), the states as
draws), batched over points by ``torch.func.vmap`` and over states in chunks sized to the memory
budget; everything in the problem's dtype (float64 for the reference). The latent layers are
enumerated jointly: an estimate's square couples every layer's terms, so the layer-wise
recursion of the exact reference (``exact``) does not give the variance.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...errors import MemoryBudgetError
from ...options import default_memory_budget, format_bytes
from ...problem import PathMoments
from .estimators.base import VAEPathEstimator
from .model import SBVAE, VAEProblem

# Working memory of one chunk (CPU), as the sbn kind's moments: chunks that stay in cache.
CHUNK_BYTES = 128 << 20


def path_count(model: SBVAE) -> int:
    """Joint latent states enumerated per data point."""
    return 2 ** min(sum(model.latent), 64)


def joint_states(model: SBVAE, like: Tensor) -> list[Tensor]:
    """Every joint latent state, [C, n_k] per layer (C = 2^{sum n_k}), layer 1's bits slowest."""
    from ..sbn.model import state_bits

    joint = state_bits(sum(model.latent), dtype=like.dtype, device=like.device)
    return list(torch.split(joint, list(model.latent), dim=1))


def bytes_per_state(problem: VAEProblem) -> int:
    """Working memory of one (point, state) of the enumeration: its estimate and square, the
    gradient's copies inside vmap, and the activations of the model's maps."""
    m = problem.model
    units = m.data_dim + sum(m.latent) + 2 * m.n_latent * sum(m.hidden)
    return 8 * (6 * problem.n_params + 16 * units)


def path_moments(
    estimator: VAEPathEstimator,
    problem: VAEProblem,
    *,
    context: Any = None,
    max_paths: int = 1 << 16,
    memory_budget: int | None = None,
) -> PathMoments:
    """Exact E[g] and Var[g] of one draw of ``estimator`` given ``context`` (``prepare``'s:
    None, or tensors whose first dimension is the data points, in any nesting of lists and
    tuples), module docstring. Over ``max_paths`` states per point, or a (point, state) over the
    memory budget: ``MemoryBudgetError`` before any work."""
    from torch.func import vmap
    from torch.utils._pytree import tree_flatten, tree_unflatten

    if not isinstance(estimator, VAEPathEstimator):
        raise TypeError(f"{estimator.spec} is not a path estimator; its moments need sampling")
    m = problem.model
    count = path_count(m)
    if count > max_paths:
        raise MemoryBudgetError(
            f"exact moments of {estimator.spec} for latent widths {list(m.latent)} need all "
            f"2^{sum(m.latent)} = {count} latent states per point, over the limit of {max_paths}"
        )
    N, P, X = problem.n_points, problem.n_params, problem.X
    budget = default_memory_budget() if memory_budget is None else memory_budget
    per = bytes_per_state(problem)
    if budget < per:
        raise MemoryBudgetError(
            f"exact moments of {estimator.spec} for {m.describe()} need {format_bytes(per)} per "
            f"latent state and point, over the memory budget of {format_bytes(budget)}"
        )
    limit = min(budget, CHUNK_BYTES) if X.device.type == "cpu" else budget
    points = max(1, min(N, limit // per))
    chunk = max(1, min(count, limit // (per * points)))
    leaves, spec = tree_flatten(context) if context is not None else ([], None)
    for leaf in leaves:
        if not (isinstance(leaf, Tensor) and leaf.dim() >= 1 and leaf.shape[0] == N):
            raise TypeError(
                f"{estimator.spec}: its context must hold tensors with the {N} points leading"
            )
    Y1 = X.new_zeros(1, 0)

    def one_point(x: Tensor, z: list[Tensor], *own: Tensor) -> Tensor:
        """[c, P]: the point x's estimate at each of the states z ([c, n_k] per layer)."""
        point = VAEProblem(m, x[None], Y1)
        ctx = None if spec is None else tree_unflatten([leaf[None] for leaf in own], spec)
        return estimator.path_estimates(point, [zk[:, None, :] for zk in z], ctx)

    batched = vmap(one_point, in_dims=(0, None, *[0] * len(leaves)))
    states = joint_states(m, X)
    first = torch.zeros(N, P, dtype=X.dtype, device=X.device)
    second = torch.zeros_like(first)
    for lo_n in range(0, N, points):
        xs = X[lo_n : lo_n + points]
        own = [leaf[lo_n : lo_n + points] for leaf in leaves]
        for lo in range(0, count, chunk):
            z = [s[lo : lo + chunk] for s in states]
            weight = m.log_posterior(xs[:, None, :], [zk[None] for zk in z]).exp()  # [n, c]
            g = batched(xs, z, *own)  # [n, c, P]
            first[lo_n : lo_n + points] += torch.einsum("nc,ncp->np", weight, g)
            second[lo_n : lo_n + points] += torch.einsum("nc,ncp->np", weight, g * g)
    mean = first.mean(0)
    variance = (second - first**2).sum(0) / N**2
    return PathMoments(mean, variance.clamp_min(0), problem)
