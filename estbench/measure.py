"""Measure one estimator at one case point: draws, exact moments where possible, and the tidy
metric rows of ``results.METRICS`` for every block of the gradient that the problem's kind
reports (``ProblemKind.reference``: layer0..layerL and ``all`` binary layers, and e.g. the weight
and bias blocks of a Bernoulli pair); by default the pairs and ``all`` (``pair_blocks``).

Each row's ``method`` says where its number comes from: ``exact`` (path enumeration, no sampling
error) or ``mc`` (from the draws, with a standard error and a 95 % interval where one exists);
``mc-reference`` marks a row computed against a Monte Carlo reference (``estbench.mcref``),
corrected for that reference's error and with an interval that includes it
(``estbench.mcmetrics``; the rows that do not involve the reference keep ``exact`` or ``mc``).

The draws are computed in ``MeasureOptions.dtype`` (float64, or float32 as an option) on the
problem's device; exact moments and every metric are computed in float64 on that device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from . import mcmetrics as mcm
from . import metrics as mt
from .device import synchronize
from .errors import EstbenchError
from .estimators.base import Estimator, ProblemLike
from .problem import Block, kind_of, pair_blocks

EXACT_UNBIASED_TOL = 1e-9
MC_REFERENCE = "mc-reference"  # the method of rows computed against a Monte Carlo reference


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
class Row:
    """One tidy row of results.csv before the run adds its case, estimator and point columns:
    a metric of one block, at one M where it has one, from ``method`` "exact" (path
    enumeration) or "mc" (the draws, with a standard error and 95 % interval where one exists)."""

    layer: str
    metric: str
    value: float
    M: int | None = None
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    method: str = "mc"
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "metric": self.metric,
            "M": self.M,
            "value": self.value,
            "se": self.se,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "method": self.method,
            "error": self.error,
        }


@dataclass(frozen=True)
class Measurement:
    rows: list[Row]
    seconds_per_draw: float
    exact: bool
    verdicts: dict[str, bool]  # layer -> unbiasedness test passed
    claimed: list[str]  # layers the estimator claims unbiased
    # layer -> the smallest relative bias the test detects (against a Monte Carlo reference)
    detectable: dict[str, float] = field(default_factory=dict)


class _Rows:
    """Collects the rows of one block, keeping the metrics asked for (all when ``wanted`` is
    None), in the order they are added (the order of results.csv)."""

    def __init__(self, layer: str, wanted: set[str] | None) -> None:
        self.layer, self.wanted = layer, wanted
        self.rows: list[Row] = []

    def add(
        self,
        metric: str,
        value: float,
        *,
        M: int | None = None,
        se: float | None = None,
        lo: float | None = None,
        hi: float | None = None,
        method: str = "mc",
    ) -> None:
        if self.wanted is None or metric in self.wanted:
            self.rows.append(Row(self.layer, metric, float(value), M, se, lo, hi, method))


def measure(
    est: Estimator,
    problem: ProblemLike,
    g_flat: Tensor,
    opts: MeasureOptions,
    *,
    generator: torch.Generator,
    blocks: Sequence[Block] | None = None,
    mc: Any = None,
) -> Measurement:
    """Draw ``opts.draws`` estimates and compute every metric for every block.

    ``problem`` and ``g_flat`` are the float64 reference on the device of the run; ``generator``
    lives on that device. The draws are made in ``opts.dtype`` and converted to float64.
    ``blocks``: the blocks to report (the kind's, from ``ProblemKind.reference``; default
    ``pair_blocks``); ``g_flat`` is the exact gradient in the estimator's
    parametrisation (its ``wrt``, e.g. eta or mu for Bernoulli weights). Per block: the exact
    rows where the kind enumerates the estimator's moments (``_exact_rows``), else the Monte
    Carlo rows (``_mc_rows``); then the rows of groups of M draws (``_grouped_rows``) and of the
    draws' shape (``_draw_rows``). ``mc``: a Monte Carlo reference (``mcref.McReference``, whose
    mean is ``g_flat``): the rows that involve g are corrected for its error
    (``_mcref_rows``).
    """
    problem = problem.to(dtype=torch.float64)
    g_flat = g_flat.to(dtype=torch.float64)
    draws, seconds, context = _timed_draws(est, problem, g_flat, opts, generator)
    moments = _exact_moments(est, problem, context, opts)
    evals = est.evals_per_draw(problem.model)
    claimed_idx = est.unbiased_layers(problem.model)
    blocks = pair_blocks(problem.model.layer_sizes) if blocks is None else blocks
    claimed = [b.name for b in blocks if claimed_idx.issuperset(b.pairs)]
    wanted = set(opts.metrics) if opts.metrics else None
    rows: list[Row] = []
    verdicts: dict[str, bool] = {}
    detectable: dict[str, float] = {}
    boot: list[Tensor] = []  # Poisson bootstrap weights, drawn once per estimator (first MC block)
    # Per-coordinate z of the unbiasedness test, once for all coordinates (a median over the draws
    # per coordinate: the blocks, "all" included, would each redo it).
    z_all = mt.z_scores(draws, g_flat) if mc is None else None
    grouped = _grouped_all(draws, g_flat, blocks, opts) if mc is None else None
    for index, block in enumerate(blocks):
        layer, sl = block.name, block.slice
        d, g = draws[:, sl], g_flat[sl]
        gn = float(g.norm())
        alpha = 1e-3 / len(blocks)
        if mc is not None:
            ref = mc.block(block)
            out = _Rows(layer, wanted)
            mu = None if moments is None else moments.mean[sl]
            var = None if moments is None else moments.variance[sl]
            B, T, test, detectable[layer] = _mcref_rows(
                out, d, mu, var, ref, opts, boot, generator, alpha
            )
            verdicts[layer] = bool(test.passed)
            _grouped_rows(out, d, g, B, T, evals, opts, MC_REFERENCE, ref)
            _draw_rows(out, d, test, evals, MC_REFERENCE)
            rows += out.rows
            continue
        if gn == 0:
            raise ZeroDivisionError(
                f"the exact gradient of {layer} is zero; relative metrics are undefined"
            )
        # The unbiasedness test's 1e-3 is split over the layers, so a correct estimator is
        # flagged at a point with probability <= 2e-3.
        assert z_all is not None
        test = mt.unbiasedness_test(d, g, alpha=1e-3 / len(blocks), z=z_all[sl])
        out = _Rows(layer, wanted)
        if moments is not None:
            B, T, verdict = _exact_rows(out, moments.mean[sl], moments.variance[sl], g, opts)
        else:
            B, T, verdict = _mc_rows(out, d, g, test, opts, boot, generator)
        verdicts[layer] = verdict
        method = "exact" if moments is not None else "mc"
        _grouped_rows(out, d, g, B, T, evals, opts, method, grouped=grouped, index=index)
        _draw_rows(out, d, test, evals)
        rows += out.rows
    return Measurement(rows, seconds, moments is not None, verdicts, claimed, detectable)


def _timed_draws(
    est: Estimator,
    problem: ProblemLike,
    g_flat: Tensor,
    opts: MeasureOptions,
    generator: torch.Generator,
) -> tuple[Tensor, float, Any]:
    """The checked draws (float64), the seconds per draw, and the estimator's context."""
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
    return draws.to(torch.float64), seconds, context


def _exact_rows(
    out: _Rows, mu: Tensor, var: Tensor, g: Tensor, opts: MeasureOptions
) -> tuple[float, float, bool]:
    """Rows from the exact mean ``mu`` and variance ``var`` of one draw (no sampling error);
    returns the squared bias, the total variance and the unbiasedness verdict."""
    gn = float(g.norm())
    B, T = float(((mu - g) ** 2).sum()), float(var.sum())
    out.add("rel_bias", math.sqrt(B) / gn, method="exact")
    out.add("bias_sq", B, method="exact")
    out.add("variance", T, method="exact")
    out.add("mse", B + T, method="exact")
    for M in opts.M:
        out.add("rel_rmse", math.sqrt(B + T / M) / gn, M=M, method="exact")
    cos_mu = float(mu @ g) / (float(mu.norm()) * gn) if float(mu.norm()) > 0 else 0.0
    out.add("cos_of_mean", cos_mu, method="exact")
    keep = var > 0
    if keep.any():
        out.add("snr", float((mu[keep].abs() / var[keep].sqrt()).median()), method="exact")
    verdict = math.sqrt(B) / gn <= EXACT_UNBIASED_TOL
    out.add("unbiased_test", float(verdict), method="exact")
    return B, T, verdict


def _mc_rows(
    out: _Rows,
    d: Tensor,
    g: Tensor,
    test: Any,
    opts: MeasureOptions,
    boot: list[Tensor],
    generator: torch.Generator,
) -> tuple[float, float, bool]:
    """Rows estimated from the draws ``d`` with standard errors and intervals; returns the
    squared bias, the total variance and the unbiasedness test's verdict. ``boot`` holds the
    bootstrap weights once drawn (shared by the blocks of an estimator)."""
    gn = float(g.norm())
    sb = mt.squared_bias(d, g)
    B, T = sb.value, sb.total_variance
    rb = mt.relative_bias(d, g)
    out.add("rel_bias", rb.value, se=rb.se, lo=rb.ci_low, hi=rb.ci_high)
    out.add("bias_sq", B, se=sb.se, lo=B - mt.Z95 * sb.se, hi=B + mt.Z95 * sb.se)
    tv = mt.total_variance(d)
    out.add("variance", tv.value, se=tv.se, lo=tv.ci_low, hi=tv.ci_high)
    ms = mt.mse_single(d, g)
    out.add("mse", ms.value, se=ms.se, lo=ms.ci_low, hi=ms.ci_high)
    Ms = torch.tensor(opts.M, dtype=d.dtype, device=d.device)
    point = ((max(B, 0.0) + T / Ms).clamp_min(0) / gn**2).sqrt()
    sd: Tensor | None
    lo: Tensor | None
    hi: Tensor | None
    if opts.bootstrap > 1:
        if not boot:  # drawn once per estimator, shared by the layers
            boot.append(mt.poisson_weights(opts.bootstrap, d.shape[0], generator))
        sd, lo, hi = mt.rel_rmse_bootstrap(d, g, Ms, boot[0])
    else:
        sd = lo = hi = None
    for i, M in enumerate(opts.M):
        out.add(
            "rel_rmse",
            float(point[i]),
            M=M,
            se=None if sd is None else float(sd[i]),
            lo=None if lo is None else float(lo[i]),
            hi=None if hi is None else float(hi[i]),
        )
    out.add("cos_of_mean", mt.cosine_of_mean(d, g).value)
    out.add("snr", mt.snr_median(d).value)
    out.add("unbiased_test", float(test.passed))
    return B, T, bool(test.passed)


def _grouped_rows(
    out: _Rows,
    d: Tensor,
    g: Tensor,
    B: float,
    T: float,
    evals: float,
    opts: MeasureOptions,
    method: str,
    ref: mcm.RefBlock | None = None,
    grouped: dict[int, mt.GroupedBlocks | None] | None = None,
    index: int = 0,
) -> None:
    """Per M: the relative RMSE at equal cost (from B and T, so ``method`` is theirs), and from
    groups of M draws (where there are two groups at least) the grouped relative RMSE and the
    cosine of a group mean with the gradient (mean and 15/85 % quantiles): entry ``index`` of
    ``grouped`` (``_grouped_all``). ``ref``: a Monte Carlo reference (``_mcref_grouped_rows``)."""
    if ref is not None:
        _mcref_grouped_rows(out, d, B, T, evals, opts, ref)
        return
    gn = float(g.norm())
    for M in opts.M:
        out.add(
            "rel_rmse_cost",
            math.sqrt(max(B, 0.0) + T * evals / M) / gn,
            M=M,
            method=method,
        )
        stats = None if grouped is None else grouped.get(M)
        if stats is None:
            continue
        r = stats.rmse[index]
        out.add("rel_rmse_grouped", r.value, M=M, se=r.se, lo=r.ci_low, hi=r.ci_high)
        out.add("cos_mean", stats.cos_mean[index], M=M, se=stats.cos_se[index])
        out.add("cos_q15", stats.cos_q15[index], M=M)
        out.add("cos_q85", stats.cos_q85[index], M=M)


def _grouped_all(
    draws: Tensor, g: Tensor, blocks: Sequence[Block], opts: MeasureOptions
) -> dict[int, mt.GroupedBlocks | None]:
    """Per M, the grouped metrics of every block (None where there are fewer than two groups of
    M draws): every group mean from one prefix sum, every block from one pass per M."""
    ind = mt.block_indicator([b.slice for b in blocks], draws.shape[1], draws)
    prefix = mt.prefix_sums(draws)
    S = draws.shape[0]
    return {
        M: mt.grouped_blocks(mt.group_means(draws, M, prefix), g, ind) if S // M >= 2 else None
        for M in opts.M
    }


def _draw_rows(out: _Rows, d: Tensor, test: Any, evals: float, method: str = "mc") -> None:
    """The draws' exact zeros, the unbiasedness test's largest |z| and B^/SE(B^) (``method``:
    theirs), and the cost."""
    zf = mt.zero_fraction(d)
    out.add("zero_frac", zf.value, se=zf.se)
    out.add("z_max", test.z_max, method=method)
    out.add("bias_z", test.ratio, method=method)
    out.add("evals_per_draw", evals, method="exact")


def _mcref_rows(
    out: _Rows,
    d: Tensor,
    mu: Tensor | None,
    var: Tensor | None,
    ref: mcm.RefBlock,
    opts: MeasureOptions,
    boot: list[Tensor],
    generator: torch.Generator,
    alpha: float,
) -> tuple[float, float, mt.UnbiasednessTest, float]:
    """The rows of one block against a Monte Carlo reference ``ref`` (formulas:
    ``estbench.mcmetrics``): from the exact moments ``mu``, ``var`` where the kind enumerates
    them (the variance and SNR stay exact; everything compared with g carries the reference's
    error), else from the draws ``d``. Returns the corrected squared bias, the total variance,
    the unbiasedness test and the smallest relative bias that test detects."""
    S = d.shape[0]
    if mu is not None and var is not None:
        mean, X, T = mu, None, float(var.sum())
        sb = mcm.squared_bias_exact_mean(mu, ref)
    else:
        mean = d.mean(0)
        X = d - mean
        sb = mcm.squared_bias(d, ref)
        T = sb.total_variance
    beta = mean - ref.g
    B, G = sb.value, ref.norm_sq
    test = mcm.unbiasedness_test(None if X is None else d, mean, sb, ref, alpha=alpha, S=S)
    rb = mcm.relative_bias(sb, beta, ref)
    out.add("rel_bias", rb.value, se=rb.se, lo=rb.ci_low, hi=rb.ci_high, method=MC_REFERENCE)
    lo, hi = B - mt.Z95 * sb.se, B + mt.Z95 * sb.se
    out.add("bias_sq", B, se=sb.se, lo=lo, hi=hi, method=MC_REFERENCE)
    if X is None:
        out.add("variance", T, method="exact")
        ms = mt.Estimate(B + T, sb.se, B + T - mt.Z95 * sb.se, B + T + mt.Z95 * sb.se)
    else:
        tv = mt.total_variance(d)
        out.add("variance", tv.value, se=tv.se, lo=tv.ci_low, hi=tv.ci_high)
        ms = mcm.mse_single(d, ref)
    out.add("mse", ms.value, se=ms.se, lo=ms.ci_low, hi=ms.ci_high, method=MC_REFERENCE)
    ref_var = mcm.reference_var(beta, ref, X, S)  # the reference's part of Var(B^)
    Ms = torch.tensor(opts.M, dtype=torch.float64, device=d.device)
    boot_sd = boot_lo = boot_hi = None
    if X is not None and opts.bootstrap > 1:
        if not boot:  # drawn once per estimator, shared by the layers
            boot.append(mt.poisson_weights(opts.bootstrap, S, generator))
        boot_sd, boot_lo, boot_hi = mt.rel_rmse_bootstrap(
            d, ref.g, Ms, boot[0], offset=ref.trace, norm_sq=G
        )
    for i, M in enumerate(opts.M):
        n = max(B, 0.0) + T / M
        value = math.sqrt(n / G)
        sd_q = math.sqrt(mcm.ratio_var(n, ref_var, beta, ref))
        if X is None:  # exact moments: the reference's error alone
            lo, hi = mcm.sqrt_interval(n / G, mt.Z95 * sd_q)
            se = sd_q / (2 * value) if value > 0 else None
        elif boot_sd is not None and boot_lo is not None and boot_hi is not None:
            lo, hi = mcm.widen_sqrt_interval(value, float(boot_lo[i]), float(boot_hi[i]), sd_q)
            extra = sd_q / (2 * value) if value > 0 else math.inf
            se = math.sqrt(float(boot_sd[i]) ** 2 + extra**2) if value > 0 else None
        else:
            out.add("rel_rmse", value, M=M, method=MC_REFERENCE)
            continue
        out.add("rel_rmse", value, M=M, se=se, lo=lo, hi=hi, method=MC_REFERENCE)
    cm = mcm.cosine_of_mean(mean, ref, X, 0.0 if X is None else T)
    out.add("cos_of_mean", cm.value, se=cm.se, lo=cm.ci_low, hi=cm.ci_high, method=MC_REFERENCE)
    if X is None and var is not None:
        keep = var > 0
        if keep.any():
            out.add("snr", float((mean[keep].abs() / var[keep].sqrt()).median()), method="exact")
    else:
        out.add("snr", mt.snr_median(d).value)
    out.add("unbiased_test", float(test.passed), method=MC_REFERENCE)
    return B, T, test, mcm.detectable_rel_bias(X, ref, alpha=alpha)


def _mcref_grouped_rows(
    out: _Rows, d: Tensor, B: float, T: float, evals: float, opts: MeasureOptions, ref: Any
) -> None:
    """``_grouped_rows`` against a Monte Carlo reference: the relative RMSE at equal cost
    (B and T over the unbiased ||g||^2, no interval, as with an exact reference); the grouped
    relative RMSE from e_r = (||m_r - g_ref||^2 - t_r) / G^, its t-interval widened in
    quadrature by the reference's part (``mcmetrics.reference_var`` over the groups, through
    ``ratio_var``); the expected cosine with the reference's part of its variance added
    (``mcmetrics.cosine_reference_var``); the quantiles as they are."""
    G = ref.norm_sq
    prefix = mt.prefix_sums(d)
    beta = d.mean(0) - ref.g
    for M in opts.M:
        out.add(
            "rel_rmse_cost",
            math.sqrt((max(B, 0.0) + T * evals / M) / G),
            M=M,
            method=MC_REFERENCE,
        )
        if d.shape[0] // M < 2:
            continue
        means = mt.group_means(d, M, prefix)
        R = means.shape[0]
        sq = ((means - ref.g) ** 2).sum(1) - ref.trace
        e = sq / G
        m, se_m = float(e.mean()), float(e.std()) / math.sqrt(R)
        Xm = means - means.mean(0)
        ref_var = mcm.reference_var(beta, ref, Xm, R)
        sd_q = math.sqrt(mcm.ratio_var(float(sq.mean()), ref_var, beta, ref))
        half = math.sqrt((mt._t_quantile(R - 1) * se_m) ** 2 + (mt.Z95 * sd_q) ** 2)
        lo, hi = mcm.sqrt_interval(m, half)
        value = math.sqrt(max(m, 0.0))
        se = math.sqrt(se_m**2 + sd_q**2) / (2 * value) if value > 0 else None
        out.add("rel_rmse_grouped", value, M=M, se=se, lo=lo, hi=hi, method=MC_REFERENCE)
        cos = mt.cosines(d, ref.g, M, means=means)
        se_c = math.sqrt(float(cos.var()) / R + mcm.cosine_reference_var(means, cos, ref))
        out.add("cos_mean", float(cos.mean()), M=M, se=se_c, method=MC_REFERENCE)
        q15, q85 = torch.quantile(cos, mt.QUANTILES.to(cos)).tolist()
        out.add("cos_q15", q15, M=M, method=MC_REFERENCE)
        out.add("cos_q85", q85, M=M, method=MC_REFERENCE)


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
