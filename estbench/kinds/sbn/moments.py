"""Exact mean and variance of path estimators, by enumerating every binary path.

For an estimator whose only randomness is the sampled path (``PathEstimator``), a draw is the mean
over the data of per-point estimates g_n(x^n), each point with its own independent path, so

    E[g]   = (1/N) sum_n sum_x P(x | X_n) g_n(x),
    Var[g] = (1/N^2) sum_n ( sum_x P(x | X_n) g_n(x)^2 - (sum_x P(x | X_n) g_n(x))^2 )

per coordinate -- no sampling error at all (spec §1.3, §5.2). The cost is 2^{n_1+...+n_L} paths per
point, so this is for small networks; the path count and memory are checked before any work.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from ...errors import MemoryBudgetError
from ...options import default_memory_budget, format_bytes
from ...problem import PathMoments
from .estimators.ops import PathEstimator, enumerate_bits, forward
from .model import Problem

DEFAULT_MAX_PATHS = 1 << 18
# Working memory of one chunk of paths on the CPU: the per-path tensors of a chunk then stay in
# cache (the budget alone made 1,157-path chunks of 9 MB tensors on the seed network, 1.6x
# slower; docs/performance.md, "Toward the floor"). On a GPU chunks are as large as the budget
# allows.
CHUNK_BYTES = 128 << 20


def path_count(problem: Problem) -> int:
    return 2 ** sum(problem.model.widths)


def path_moments(
    estimator: PathEstimator,
    problem: Problem,
    *,
    context: Any = None,
    max_paths: int = DEFAULT_MAX_PATHS,
    memory_budget: int | None = None,
) -> PathMoments:
    """Exact E[g] and Var[g] of one draw of ``estimator`` (given ``context``, see ``prepare``)."""
    if not isinstance(estimator, PathEstimator):
        raise TypeError(f"{estimator.spec} is not a path estimator; its moments need sampling")
    widths = problem.model.widths
    count = path_count(problem)
    if count > max_paths:
        raise MemoryBudgetError(
            f"exact moments of {estimator.spec} for widths {list(widths)} need all "
            f"2^{sum(widths)} = {count} paths, over the limit of {max_paths}"
        )
    N, P = problem.n_points, problem.n_params
    budget = default_memory_budget() if memory_budget is None else memory_budget
    per_path = 8 * N * (4 * P + 16 * (sum(widths) + problem.model.out_dim))
    if budget < per_path:
        raise MemoryBudgetError(
            f"exact moments of {estimator.spec} for widths {list(widths)} with {N} points need "
            f"{format_bytes(per_path)} per path, over the memory budget of {format_bytes(budget)}"
        )
    limit = min(budget, CHUNK_BYTES) if problem.X.device.type == "cpu" else budget
    chunk = max(limit // per_path, 1)
    bits = enumerate_bits(widths, problem.X)
    first = torch.zeros(N, P, dtype=problem.X.dtype, device=problem.X.device)
    second = torch.zeros_like(first)
    for lo in range(0, count, chunk):
        path = forward(problem, [b[lo : lo + chunk] for b in bits])
        weight = torch.ones((), dtype=problem.X.dtype, device=problem.X.device)
        for b, p in zip(path.bits, path.p, strict=True):
            weight = weight * torch.where(b == 1, p, 1 - p).prod(-1)  # P(path | X_n), [c, N]
        f, s = _weighted_moments(problem, estimator.path_terms(problem, path, context), weight)
        first += f
        second += s
    mean = first.mean(0)
    variance = (second - first**2).sum(0) / N**2
    return PathMoments(mean, variance.clamp_min(0), problem)


def _total(terms: Iterable[Tensor]) -> Tensor:
    """The sum of a non-empty sequence of tensors, in order (``sum`` starts from the int 0)."""
    return functools.reduce(operator.add, terms)


def _weighted_moments(
    problem: Problem, terms: list[list[tuple[Tensor, Tensor]]], weight: Tensor
) -> tuple[Tensor, Tensor]:
    """Per point: sum_x w g_n(x) and sum_x w g_n(x)^2, [N, P], without materialising g.

    A layer's estimate is sum_t g_t (x) inp_t (outer product) and g_t; the square of a sum of
    outer products is the sum over pairs (t, t') of (g_t g_t') (x) (inp_t inp_t').
    """
    N = problem.n_points
    shape = weight.shape
    firsts: list[Tensor] = []
    seconds: list[Tensor] = []
    for parts in terms:
        gs = [g.expand(*shape, g.shape[-1]) for g, _ in parts]
        inps = [inp for _, inp in parts]
        wg = [weight[..., None] * g for g in gs]
        pairs = [(t, u, 1 if u == t else 2) for t in range(len(gs)) for u in range(t, len(gs))]
        first = [(w, inp, 1) for w, inp in zip(wg, inps, strict=True)]
        second = [(wg[t] * gs[u], inps[t] * inps[u], f) for t, u, f in pairs]
        for out, items in ((firsts, first), (seconds, second)):
            summed = [(a, a.sum(0), inp, f) for a, inp, f in items]  # sum_x a: the bias part
            W = _total(f * _contract(a, s, inp, shape) for a, s, inp, f in summed)
            out += [W.reshape(N, -1), _total(f * s for _, s, _, f in summed)]
    return torch.cat(firsts, -1), torch.cat(seconds, -1)


def _contract(a: Tensor, total: Tensor, inp: Tensor, shape: torch.Size) -> Tensor:
    """sum_x a[x, n, j] inp[x, n, i] -> [N, j, i], ``inp`` broadcast to ``shape`` + [i] and
    ``total`` = sum_x a[x, n, j].

    Cheaper forms where the input is shared (each the same sum in another order,
    docs/performance.md, "Toward the floor"): an input that depends on the point only ([N, i]: the
    data, into the first layer) factors out of the sum, total (x) inp; one that depends on the path
    only ([c, 1, i]: the states of a binary layer, the same at every point) is one matrix product
    inp^T a over the paths. A per-point, per-path input of a one-unit output (the head) is a
    weighted sum.
    """
    c, n = shape
    j, i = a.shape[-1], inp.shape[-1]
    if inp.dim() == 2 or inp.shape[0] == 1:
        return total[:, :, None] * inp.reshape(-1, 1, i)
    if inp.shape[1] == 1 and inp.shape[0] == c:
        return (inp[:, 0, :].T @ a.reshape(c, n * j)).T.reshape(n, j, i)
    if j == 1:
        return (a * inp).sum(0).unsqueeze(1)
    return torch.einsum("xnj,xni->nji", a, inp.expand(*shape, i))
