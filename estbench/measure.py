"""Measure one estimator at one case point: draws, exact moments where possible, and the tidy
metric rows of ``results.METRICS`` for every block of the gradient that the problem's kind
reports (``ProblemKind.reference``: layer0..layerL and ``all`` binary layers, and e.g. the weight
and bias blocks of a Bernoulli pair); by default the pairs and ``all`` (``pair_blocks``).

Each row's ``method`` says where its number comes from: ``exact`` (path enumeration, no sampling
error) or ``mc`` (from the draws, with a standard error and a 95 % interval where one exists).

The draws are computed in ``MeasureOptions.dtype`` (float64, or float32 as an option) on the
problem's device; exact moments and every metric are computed in float64 on that device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from . import metrics as mt
from .device import synchronize
from .errors import EstbenchError
from .estimators.base import Estimator, ProblemLike
from .problem import Block, kind_of, pair_blocks

EXACT_UNBIASED_TOL = 1e-9
QUANTILES = torch.tensor([0.15, 0.85], dtype=torch.float64)  # of the cosines of group means


@dataclass(frozen=True)
class MeasureOptions:
    draws: int
    M: tuple[int, ...]
    metrics: tuple[str, ...] | None = None
    exact_moments: bool = True
    max_paths: int = 1 << 16
    bootstrap: int = 200
    dtype: torch.dtype = torch.float64  # of the draws only; moments and metrics are float64


@dataclass(frozen=True)
class Measurement:
    rows: list[dict[str, Any]]
    seconds_per_draw: float
    exact: bool
    verdicts: dict[str, bool]  # layer -> unbiasedness test passed
    claimed: list[str]  # layers the estimator claims unbiased


def measure(
    est: Estimator,
    problem: ProblemLike,
    g_flat: Tensor,
    opts: MeasureOptions,
    *,
    generator: torch.Generator,
    blocks: Sequence[Block] | None = None,
) -> Measurement:
    """Draw ``opts.draws`` estimates and compute every metric for every layer.

    ``problem`` and ``g_flat`` are the float64 reference on the device of the run; ``generator``
    lives on that device. The draws are made in ``opts.dtype`` and converted to float64.
    ``blocks``: the blocks to report (the kind's, from ``ProblemKind.reference``; default
    ``pair_blocks``); ``g_flat`` is the exact gradient in the estimator's
    parametrisation (its ``wrt``, e.g. eta or mu for Bernoulli weights).
    """
    problem = problem.to(dtype=torch.float64)
    g_flat = g_flat.to(dtype=torch.float64)
    draw_problem = problem.to(dtype=opts.dtype)
    context = est.prepare(draw_problem, generator)
    # A few throwaway draws from their own generator (the measured stream is untouched) so that
    # one-time costs -- lazy imports, first allocations -- do not land in the time per draw of
    # whichever estimator runs first (seen: 44 us instead of 1.5 us per draw).
    warm = torch.Generator(device=generator.device).manual_seed(0)
    n_warm = min(opts.draws, 8)
    check_draws(
        est, est.draw(draw_problem, n_warm, generator=warm, context=context), n_warm, g_flat, opts
    )
    synchronize(problem.device)
    t0 = time.perf_counter()
    draws = est.draw(draw_problem, opts.draws, generator=generator, context=context)
    synchronize(problem.device)
    seconds = (time.perf_counter() - t0) / opts.draws
    check_draws(est, draws, opts.draws, g_flat, opts)
    draws = draws.to(torch.float64)
    moments = _exact_moments(est, problem, context, opts)
    evals = est.evals_per_draw(problem.model)
    claimed_idx = est.unbiased_layers(problem.model)
    blocks = pair_blocks(problem.model.layer_sizes) if blocks is None else blocks
    claimed = [b.name for b in blocks if claimed_idx.issuperset(b.pairs)]
    wanted = set(opts.metrics) if opts.metrics else None
    Ms = torch.tensor(opts.M, dtype=draws.dtype, device=draws.device)
    rows: list[dict[str, Any]] = []
    verdicts: dict[str, bool] = {}

    def add(
        layer: str,
        metric: str,
        value: float,
        *,
        M: int | None = None,
        se: float | None = None,
        lo: float | None = None,
        hi: float | None = None,
        method: str = "mc",
    ) -> None:
        if wanted is None or metric in wanted:
            rows.append(
                {
                    "layer": layer,
                    "metric": metric,
                    "M": M,
                    "value": float(value),
                    "se": se,
                    "ci_low": lo,
                    "ci_high": hi,
                    "method": method,
                }
            )

    boot: Tensor | None = None
    for block in blocks:
        layer, sl = block.name, block.slice
        d, g = draws[:, sl], g_flat[sl]
        gn = float(g.norm())
        if gn == 0:
            raise ZeroDivisionError(
                f"the exact gradient of {layer} is zero; relative metrics are undefined"
            )
        # The unbiasedness test's 1e-3 is split over the layers, so a correct estimator is
        # flagged at a point with probability <= 2e-3.
        test = mt.unbiasedness_test(d, g, alpha=1e-3 / len(blocks))
        if moments is not None:
            mu, var = moments.mean[sl], moments.variance[sl]
            B, T = float(((mu - g) ** 2).sum()), float(var.sum())
            add(layer, "rel_bias", math.sqrt(B) / gn, method="exact")
            add(layer, "bias_sq", B, method="exact")
            add(layer, "variance", T, method="exact")
            add(layer, "mse", B + T, method="exact")
            for M in opts.M:
                add(layer, "rel_rmse", math.sqrt(B + T / M) / gn, M=M, method="exact")
            cos_mu = float(mu @ g) / (float(mu.norm()) * gn) if float(mu.norm()) > 0 else 0.0
            add(layer, "cos_of_mean", cos_mu, method="exact")
            keep = var > 0
            if keep.any():
                add(
                    layer,
                    "snr",
                    float((mu[keep].abs() / var[keep].sqrt()).median()),
                    method="exact",
                )
            verdict = math.sqrt(B) / gn <= EXACT_UNBIASED_TOL
            add(layer, "unbiased_test", float(verdict), method="exact")
        else:
            sb = mt.squared_bias(d, g)
            B, T = sb.value, sb.total_variance
            rb = mt.relative_bias(d, g)
            add(layer, "rel_bias", rb.value, se=rb.se, lo=rb.ci_low, hi=rb.ci_high)
            add(layer, "bias_sq", B, se=sb.se, lo=B - mt.Z95 * sb.se, hi=B + mt.Z95 * sb.se)
            tv = mt.total_variance(d)
            add(layer, "variance", tv.value, se=tv.se, lo=tv.ci_low, hi=tv.ci_high)
            ms = mt.mse_single(d, g)
            add(layer, "mse", ms.value, se=ms.se, lo=ms.ci_low, hi=ms.ci_high)
            point = ((max(B, 0.0) + T / Ms).clamp_min(0) / gn**2).sqrt()
            sd: Tensor | None
            lo: Tensor | None
            hi: Tensor | None
            if opts.bootstrap > 1:
                if boot is None:  # drawn once per estimator, shared by the layers
                    boot = mt.poisson_weights(opts.bootstrap, d.shape[0], generator)
                sd, lo, hi = mt.rel_rmse_bootstrap(d, g, Ms, boot)
            else:
                sd = lo = hi = None
            for i, M in enumerate(opts.M):
                add(
                    layer,
                    "rel_rmse",
                    float(point[i]),
                    M=M,
                    se=None if sd is None else float(sd[i]),
                    lo=None if lo is None else float(lo[i]),
                    hi=None if hi is None else float(hi[i]),
                )
            add(layer, "cos_of_mean", mt.cosine_of_mean(d, g).value)
            add(layer, "snr", mt.snr_median(d).value)
            verdict = test.passed
            add(layer, "unbiased_test", float(verdict))
        verdicts[layer] = verdict
        method = "exact" if moments is not None else "mc"
        prefix = mt.prefix_sums(d)
        for M in opts.M:
            add(
                layer,
                "rel_rmse_cost",
                math.sqrt(max(B, 0.0) + T * evals / M) / gn,
                M=M,
                method=method,
            )
            means = mt.group_means(d, M, prefix) if d.shape[0] // M >= 2 else None
            grouped = mt.rel_rmse_grouped(d, g, M, means=means)
            if grouped is not None:
                add(
                    layer,
                    "rel_rmse_grouped",
                    grouped.value,
                    M=M,
                    se=grouped.se,
                    lo=grouped.ci_low,
                    hi=grouped.ci_high,
                )
                cos = mt.cosines(d, g, M, means=means)
                R = cos.numel()
                add(layer, "cos_mean", float(cos.mean()), M=M, se=float(cos.std()) / math.sqrt(R))
                q15, q85 = torch.quantile(cos, QUANTILES.to(cos)).tolist()  # one sort
                add(layer, "cos_q15", q15, M=M)
                add(layer, "cos_q85", q85, M=M)
        zf = mt.zero_fraction(d)
        add(layer, "zero_frac", zf.value, se=zf.se)
        add(layer, "z_max", test.z_max)
        add(layer, "bias_z", test.ratio)
        add(layer, "evals_per_draw", evals, method="exact")
    return Measurement(rows, seconds, moments is not None, verdicts, claimed)


class DrawError(EstbenchError):
    """An estimator's draws that the harness cannot use (shape, dtype, device, NaN/inf)."""


def check_draws(est: Estimator, draws: Any, n: int, g_flat: Tensor, opts: MeasureOptions) -> None:
    """Validate a block of draws where it enters the harness: a tensor of shape [n, P] (P the
    problem's parameter count), the run's draw dtype, on the problem's device, all finite. A
    plugin's [P, S] block would otherwise be read as garbage rows, or fail far from its cause."""
    name = getattr(est, "spec", type(est).__name__)
    expected = (n, g_flat.numel())
    if not isinstance(draws, Tensor):
        raise DrawError(
            f"estimator {name!r}: draw returned {type(draws).__name__}; expected a torch.Tensor "
            f"of shape [{n}, {expected[1]}] ([draws, parameters])"
        )
    if tuple(draws.shape) != expected:
        raise DrawError(
            f"estimator {name!r}: draw returned shape {list(draws.shape)}; expected "
            f"{list(expected)} ([draws, parameters])"
        )
    if draws.dtype != opts.dtype:
        raise DrawError(
            f"estimator {name!r}: draw returned dtype {str(draws.dtype).removeprefix('torch.')}; "
            f"expected {str(opts.dtype).removeprefix('torch.')} (the run's draw dtype)"
        )
    if draws.device.type != g_flat.device.type:
        raise DrawError(
            f"estimator {name!r}: draw returned a tensor on {draws.device}; expected it on "
            f"{g_flat.device} (the problem's device)"
        )
    finite = torch.isfinite(draws).all(1)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        first = int((~finite).nonzero()[0, 0])
        raise DrawError(
            f"estimator {name!r}: {bad} of {n} draws contain NaN or inf (the first: draw "
            f"{first}); expected finite values"
        )


def _exact_moments(est: Estimator, problem: Any, context: Any, opts: MeasureOptions) -> Any:
    """Exact moments of a path estimator by enumeration (the problem kind's ``path_moments``)
    when it fits ``opts.max_paths``, else None."""
    if not opts.exact_moments:
        return None
    kind = kind_of(problem.model)
    return kind.path_moments(est, problem, _as_float64(context), opts.max_paths)


def _as_float64(context: Any) -> Any:
    """An estimator's prepared context for the float64 reference computation (a float32 context
    converts exactly; containers are converted element by element)."""
    if isinstance(context, torch.Tensor) and context.is_floating_point():
        return context.to(torch.float64)
    if isinstance(context, (tuple, list)):
        return type(context)(_as_float64(c) for c in context)
    if isinstance(context, dict):
        return {k: _as_float64(v) for k, v in context.items()}
    return context
