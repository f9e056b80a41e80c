"""Accuracy metrics of an estimator from S i.i.d. draws, with their standard errors (spec §6).

``draws`` is [S, d] (one layer's coordinates, or any subset), ``g`` the exact gradient [d].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from statistics import NormalDist

import torch
from torch import Tensor

from .rng import uniforms


@dataclass(frozen=True)
class SquaredBias:
    """B = ||E g_hat - g||^2 estimated without the T/S overestimate of the naive ||mean - g||^2."""

    value: float  # B_hat = ||mean - g||^2 - T_hat / S (may be negative; clip only for display)
    se: float
    total_variance: float  # T_hat = tr Cov (unbiased)


def _centred(draws: Tensor) -> tuple[Tensor, Tensor]:
    mean = draws.mean(0)
    return mean, draws - mean


def trace_cov_squared(X: Tensor) -> float:
    """tr(Sigma_hat^2) from the centred [S, d] matrix X, via the smaller Gram matrix."""
    S = X.shape[0]
    gram = X.T @ X if X.shape[1] <= S else X @ X.T
    return float((gram**2).sum()) / (S - 1) ** 2


def squared_bias(draws: Tensor, g: Tensor) -> SquaredBias:
    """B_hat = ||mean - g||^2 - T_hat/S, the U-statistic of spec §6, with

    SE(B_hat)^2 = (4 (S-2) zeta1 + 2 zeta2) / (S (S-1)),
    zeta1 = max(beta' Sigma beta - tr(Sigma^2)/S, 0),  zeta2 = tr(Sigma^2) + 2 zeta1.
    """
    S = draws.shape[0]
    if S < 3:
        raise ValueError(f"squared bias needs at least 3 draws, got {S}")
    mean, X = _centred(draws)
    beta = mean - g
    T = float((X**2).sum()) / (S - 1)
    b_hat = float(beta @ beta) - T / S
    tr2 = trace_cov_squared(X)
    bsb = float(((X @ beta) ** 2).sum()) / (S - 1)
    zeta1 = max(bsb - tr2 / S, 0.0)
    zeta2 = tr2 + 2 * zeta1
    se = math.sqrt(max(4 * (S - 2) * zeta1 + 2 * zeta2, 0.0) / (S * (S - 1)))
    return SquaredBias(b_hat, se, T)


MIN_EVENTS = 20  # draws off a coordinate's typical value needed for its z to mean anything


def z_scores(draws: Tensor, g: Tensor) -> Tensor:
    """(mean_i - g_i) / (s_i / sqrt(S)) per coordinate.

    A coordinate that differs from its median value in fewer than ``MIN_EVENTS`` draws scores 0:
    its mean is a compound-Poisson sum of a few rare events, far from normal, and its sample
    variance is unreliable, so a z against the normal quantile would not have its stated
    false-fail rate. Seen in practice: a weight from a saturated unit that is on in one draw of
    20,000 (z = 29 for an unbiased ARMS). Zero-variance coordinates are the extreme case. Such
    coordinates stay in the aggregate test; a deterministic bias still fails it (SE 0).
    """
    S = draws.shape[0]
    sd = draws.std(0, correction=1)
    z = (draws.mean(0) - g) / (sd / math.sqrt(S))
    centre = draws.median(0).values
    scale = draws.abs().amax(0)
    events = ((draws - centre).abs() > 1e-9 * scale).sum(0)
    return torch.where((sd > 0) & (events >= MIN_EVENTS), z, 0.0)


def bonferroni_critical(d: int, alpha: float) -> float:
    """Two-sided per-coordinate threshold: max_i |z_i| exceeds it with probability <= alpha."""
    return NormalDist().inv_cdf(1 - alpha / (2 * max(d, 1)))


def aggregate_critical(alpha: float) -> float:
    """Threshold for B_hat / SE(B_hat) with false-fail rate <= alpha under the null.

    Under an unbiased estimator B_hat is a degenerate U-statistic, approximately
    (1/S) sum_i lambda_i (chi2_1 - 1) over the eigenvalues of Cov, and B_hat / SE(B_hat) is that sum
    over its standard deviation. Its upper tail is heaviest when one eigenvalue dominates:
    (chi2_1 - 1) / sqrt(2). So the threshold is (z_{1-alpha/2}^2 - 1) / sqrt(2) -- 6.95 at
    alpha = 1e-3 -- rather than a normal quantile (the spec's 3.1 would fail an unbiased
    one-coordinate estimator about 2 % of the time).
    """
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return (z * z - 1) / math.sqrt(2)


@dataclass(frozen=True)
class UnbiasednessTest:
    """Per-coordinate z with Bonferroni, plus the aggregate B_hat / SE(B_hat) (spec §5.2, §6).

    Under the null (unbiased) each part fails with probability <= alpha (asymptotically in S), so
    the test fails with probability <= 2 alpha.
    """

    z_max: float
    z_critical: float
    b_hat: float
    se_b: float
    aggregate_threshold: float
    n_draws: int

    @property
    def ratio(self) -> float:
        if self.se_b > 0:
            return self.b_hat / self.se_b
        return 0.0 if self.b_hat <= 0 else math.inf

    @property
    def passed(self) -> bool:
        return self.z_max < self.z_critical and self.ratio < self.aggregate_threshold

    def describe(self) -> str:
        return (
            f"max|z| = {self.z_max:.2f} (critical {self.z_critical:.2f}), "
            f"B/SE(B) = {self.ratio:.2f} (critical {self.aggregate_threshold:.2f}), "
            f"S = {self.n_draws}"
        )


def unbiasedness_test(
    draws: Tensor, g: Tensor, *, alpha: float = 1e-3, z: Tensor | None = None
) -> UnbiasednessTest:
    """Test E[draws] = g; false-fail rate <= 2 alpha (alpha for each of the two parts). ``z``:
    ``z_scores(draws, g)`` if already computed (they are per coordinate, so the z of a block of
    coordinates is the block's slice of the z of all of them)."""
    z = z_scores(draws, g) if z is None else z
    sb = squared_bias(draws, g)
    return UnbiasednessTest(
        float(z.abs().max()),
        bonferroni_critical(g.numel(), alpha),
        sb.value,
        sb.se,
        aggregate_critical(alpha),
        draws.shape[0],
    )


# ------------------------------------------------------------------------------------------
# Metrics of one layer (spec §6). Each returns (value, se, ci_low, ci_high); None where unknown.
# ------------------------------------------------------------------------------------------

Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class Estimate:
    value: float
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


def _norm(t: Tensor) -> float:
    return float(t.norm())


def relative_bias(draws: Tensor, g: Tensor) -> Estimate:
    """||E g_hat - g|| / ||g|| from B_hat (clipped at 0 for display), CI from B_hat +- 1.96 SE."""
    sb = squared_bias(draws, g)
    gn = _norm(g)
    lo, hi = sb.value - Z95 * sb.se, sb.value + Z95 * sb.se
    value = math.sqrt(max(sb.value, 0.0)) / gn
    se = sb.se / (2 * gn * gn * value) if value > 0 else None  # delta method
    return Estimate(value, se, math.sqrt(max(lo, 0.0)) / gn, math.sqrt(max(hi, 0.0)) / gn)


def total_variance(draws: Tensor) -> Estimate:
    """T_hat = tr Cov with SE sd_s(||g_s - mean||^2) / sqrt(S)."""
    S = draws.shape[0]
    sq = ((draws - draws.mean(0)) ** 2).sum(1) * (S / (S - 1))
    value, se = float(sq.mean()), float(sq.std()) / math.sqrt(S)
    return Estimate(value, se, value - Z95 * se, value + Z95 * se)


def mse_single(draws: Tensor, g: Tensor) -> Estimate:
    """MSE_1 = mean_s ||g_s - g||^2 (unbiased), SE sd / sqrt(S)."""
    sq = ((draws - g) ** 2).sum(1)
    value, se = float(sq.mean()), float(sq.std()) / math.sqrt(draws.shape[0])
    return Estimate(value, se, value - Z95 * se, value + Z95 * se)


# P(Poisson(1) <= k) for k = 0..16; the tail beyond 16 has probability 3e-16.
_POISSON1_CDF = torch.tensor(
    [math.exp(-1) * sum(1 / math.factorial(i) for i in range(k + 1)) for k in range(17)],
    dtype=torch.float64,
)


def poisson_weights(replicates: int, n_draws: int, generator: torch.Generator) -> Tensor:
    """Poisson(1) bootstrap weights, [replicates, n_draws] (one resampling of the draws).

    By inversion of the CDF on uniforms: the same distribution as ``torch.poisson`` (up to the
    3e-16 tail beyond 16) at a twentieth of its cost on the CPU."""
    u = uniforms((replicates, n_draws), generator)
    return torch.searchsorted(_POISSON1_CDF.to(u.device), u, right=True).to(torch.float64)


def rel_rmse_bootstrap(
    draws: Tensor,
    g: Tensor,
    Ms: Tensor,
    w: Tensor,
    *,
    offset: float | None = None,
    norm_sq: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Poisson-bootstrap sd and 95 % interval of sqrt(max(B^ + T^/M, 0)) / ||g|| for every M.

    Against a Monte Carlo reference ``g`` (``estbench.mcmetrics``): ``offset`` (tr Cov(g)) is
    subtracted from every B^ and ``norm_sq`` (the unbiased ||g||^2) replaces g'g.

    Replicate r weights draw s by w[r, s] ~ Poisson(1) (``poisson_weights``; the same weights
    serve every layer, so the layers are resampled jointly); weighted means and sums of squares
    come from two matrix products, so no resampled copy of the draws is made.
    """
    centre = draws.mean(0)
    c = draws - centre  # centring keeps the weighted second moments accurate
    sq = (c * c).sum(1)
    w = w.to(draws.dtype)
    n = w.sum(1).clamp_min(2)
    mean_c = (w @ c) / n[:, None]
    T = ((w @ sq) - n * (mean_c * mean_c).sum(1)) / (n - 1)
    B = ((mean_c + centre - g) ** 2).sum(1) - T / n
    if offset is not None:
        B = B - offset
    gg = float(g @ g) if norm_sq is None else norm_sq
    curves = ((B[:, None] + T[:, None] / Ms).clamp_min(0) / gg).sqrt()
    return curves.std(0), torch.quantile(curves, 0.025, 0), torch.quantile(curves, 0.975, 0)


def prefix_sums(draws: Tensor) -> Tensor:
    """C[s] = sum of the first s draws, [S + 1, dim]: every group mean for every M from one pass."""
    return torch.cat((torch.zeros_like(draws[:1]), draws.cumsum(0)))


def group_means(draws: Tensor, M: int, prefix: Tensor | None = None) -> Tensor:
    """Means of floor(S/M) consecutive disjoint groups of M draws, [R, dim] (the seed protocol).

    With ``prefix`` (``prefix_sums(draws)``) a group mean is (C[(r+1)M] - C[rM]) / M: over the
    36-value M grid that reads about 3 S rows instead of 36 S; the float64 differences lose
    about log10(S) digits, far below any Monte Carlo error."""
    R = draws.shape[0] // M
    if prefix is None or M == 1:
        return draws[: R * M].reshape(R, M, -1).mean(1)
    ends = prefix[::M][: R + 1]
    return (ends[1:] - ends[:-1]) / M


def rel_rmse_grouped(
    draws: Tensor, g: Tensor, M: int, *, means: Tensor | None = None
) -> Estimate | None:
    """sqrt(mean_r ||mean_r - g||^2) / ||g|| over R groups; CI = sqrt of the t-interval of the mean.
    None when fewer than 2 groups. ``means``: the group means, if already computed."""
    if draws.shape[0] // M < 2:
        return None
    means = group_means(draws, M) if means is None else means
    e = ((means - g) ** 2).sum(1) / float(g @ g)
    return _sqrt_mean_estimate(float(e.mean()), float(e.std()), e.shape[0])


def _sqrt_mean_estimate(m: float, sd: float, R: int) -> Estimate:
    """sqrt of a mean m of R values with standard deviation sd: the delta-method SE and the
    square root of the t-interval of the mean."""
    se, t = sd / math.sqrt(R), _t_quantile(R - 1)
    return Estimate(
        math.sqrt(m),
        se / (2 * math.sqrt(max(m, 1e-300))),
        math.sqrt(max(m - t * se, 0.0)),
        math.sqrt(m + t * se),
    )


QUANTILES = torch.tensor([0.15, 0.85], dtype=torch.float64)  # of the cosines of group means


@dataclass(frozen=True)
class GroupedBlocks:
    """The grouped metrics of one M for several blocks of coordinates (``grouped_blocks``), one
    entry per block: ``rmse`` as ``rel_rmse_grouped``; the mean of the cosines of the group means
    with g (``cosines``), its standard error, and their 15 % and 85 % quantiles."""

    rmse: list[Estimate]
    cos_mean: list[float]
    cos_se: list[float]
    cos_q15: list[float]
    cos_q85: list[float]


def block_indicator(slices: Sequence[slice], dim: int, like: Tensor) -> Tensor:
    """[dim, blocks] with 1 where a coordinate belongs to a block: sums over each block's
    coordinates become one matrix product (blocks may overlap, e.g. "all")."""
    ind = torch.zeros(dim, len(slices), dtype=like.dtype, device=like.device)
    for b, sl in enumerate(slices):
        ind[sl, b] = 1.0
    return ind


def grouped_blocks(means: Tensor, g: Tensor, indicator: Tensor) -> GroupedBlocks:
    """``rel_rmse_grouped`` and the cosine summaries of the group means ``means`` [R, P] (R >= 2)
    for every block of ``indicator`` (``block_indicator``) at once: per-block sums of squares and
    products are matrix products with the indicator, so the draws are read once per M rather
    than once per block (the same values as block by block, summed in another order)."""
    R = means.shape[0]
    gg = (g * g) @ indicator  # ||g_b||^2, [blocks]
    e = ((means - g) ** 2) @ indicator / gg  # [R, blocks]
    num = (means * g) @ indicator
    den = ((means * means) @ indicator).sqrt() * gg.sqrt()
    cos = torch.where(den > 0, num / den.clamp_min(1e-300), 0.0)
    m, sd = e.mean(0).tolist(), e.std(0).tolist()
    q15, q85 = torch.quantile(cos, QUANTILES.to(cos), dim=0).tolist()  # one sort per block
    return GroupedBlocks(
        [_sqrt_mean_estimate(mb, sb, R) for mb, sb in zip(m, sd, strict=True)],
        cos.mean(0).tolist(),
        (cos.std(0) / math.sqrt(R)).tolist(),
        q15,
        q85,
    )


@cache
def _t_quantile(df: int) -> float:
    # scipy.special, not scipy.stats: the same quantile without a 1-2 s import
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.975))


def cosines(draws: Tensor, g: Tensor, M: int, *, means: Tensor | None = None) -> Tensor:
    """cos(group mean, g) of every group of M draws; 0 where a group mean is exactly zero."""
    means = group_means(draws, M) if means is None else means
    num = means @ g
    den = means.norm(dim=1) * g.norm()
    return torch.where(den > 0, num / den.clamp_min(1e-300), 0.0)


def cosine_of_mean(draws: Tensor, g: Tensor) -> Estimate:
    """Bias-reduced cos(E g_hat, g) = mean' g / (||g|| sqrt(max(||mean||^2 - T/S, eps)))."""
    S = draws.shape[0]
    mean = draws.mean(0)
    T = float(((draws - mean) ** 2).sum()) / (S - 1)
    den = _norm(g) * math.sqrt(max(float(mean @ mean) - T / S, 1e-300))
    return Estimate(max(-1.0, min(1.0, float(mean @ g) / den)))


def snr_median(draws: Tensor) -> Estimate:
    """Median over coordinates of sqrt(max(mean_i^2 - s_i^2/S, 0)) / s_i (bias-reduced numerator);
    coordinates with zero variance are left out (their SNR is infinite or undefined)."""
    S = draws.shape[0]
    mean, var = draws.mean(0), draws.var(0)
    keep = var > 0
    if not keep.any():
        return Estimate(math.inf)
    ratio = ((mean[keep] ** 2 - var[keep] / S).clamp_min(0)).sqrt() / var[keep].sqrt()
    return Estimate(float(ratio.median()))


def zero_fraction(draws: Tensor) -> Estimate:
    """Share of draws whose vector is exactly zero (cosine is then defined as 0)."""
    frac = float((draws == 0).all(1).double().mean())
    return Estimate(frac, math.sqrt(frac * (1 - frac) / draws.shape[0]))
