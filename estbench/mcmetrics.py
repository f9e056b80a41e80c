"""Metrics against a Monte Carlo reference, corrected for, and widened by, the reference's error.

Setting. The measured estimator gives S i.i.d. draws g^_1..g^_S (mean mu, covariance Sigma); the
reference is g_ref = mean of R i.i.d. draws of an unbiased estimator (mean g, the exact gradient;
covariance Sigma_r), drawn from an independent stream. So g_ref = g + e with E e = 0 and
Cov e = Lambda := Sigma_r / R, independent of the measured draws. ``RefBlock`` holds, per block,
g_ref, the diagonal lambda_i = s_ri^2 / R (from all R draws) and a factor Y [K, d] with
Lambda ~= Y'Y, from K = 64 batch means of R / K draws each (Y = centred batch means /
sqrt(K (K - 1))). Quadratic forms of Lambda come from Y: v' Lambda v = ||Y v||^2,
tr(Lambda^2) = ||Y Y'||_F^2, tr(Sigma^ Lambda) = ||X Y'||_F^2 / (S - 1) (X: the centred measured
draws). With K = 64 these plug-in values are biased upward (tr(Lambda^2) by about
(tr Lambda)^2 / K): the intervals err on the wide side. t_r := tr Lambda^ = sum_i lambda_i.

Corrections (beta = mu - g, beta^ = mean - g_ref; variances to first order, normal approximation
of the quadratic forms, reference and measured draws independent):

* squared bias: E||mean - g_ref||^2 = ||beta||^2 + tr Sigma / S + tr Lambda, so
  B^ = ||mean - g_ref||^2 - T^/S - t_r (unbiased), and
  Var B^ = V_S + 4 beta' Lambda beta + 2 tr(Lambda^2) + 4 tr(Sigma Lambda) / S,
  V_S being the exact-reference U-statistic variance (``metrics.squared_bias``). With exact
  moments of the estimator (mu known): B^ = ||mu - g_ref||^2 - t_r,
  Var = 4 beta' Lambda beta + 2 tr(Lambda^2).
* MSE of one draw: M^ = mean_s ||g^_s - g_ref||^2 - t_r (unbiased),
  Var M^ = sd^2 / S + 4 (beta' Lambda beta + tr(Sigma Lambda) / S) + 2 tr(Lambda^2)
  (the draws share g_ref, so the reference's part does not shrink with S).
* the gradient's squared norm: G^ = ||g_ref||^2 - t_r, Var G^ = 4 g' Lambda g + 2 tr(Lambda^2).
* a relative squared metric q = N / G (N = B^, or B^ + T^/M for the relative RMSE): delta method,
  Var q = (Var N - 2 q Cov(N, G) + q^2 Var G) / G^2 with Cov(N, G) = -4 beta' Lambda g (both move
  with e: N by -2 beta'e, G by 2 g'e). Intervals are built on the q scale and square-rooted,
  like the exact-reference relative bias.
* the relative RMSE's bootstrap interval (which resamples the measured draws with g_ref fixed) is
  widened in quadrature, on the q scale, by the reference's part of Var q (the same formula with
  V_S and the sd^2/S terms left out).
* cosine of the mean, c = mean' g_ref / (sqrt(||mean||^2 - T^/S) sqrt(G^)): delta method with
  a = mu / ||mu||, u = g / ||g||: Var c = (a - c u)' Lambda (a - c u) / ||g||^2
  + (u - c a)' Sigma (u - c a) / (S ||mu||^2) (the second term 0 with exact moments).
* expected cosine of a group mean: the groups share g_ref, so the reference adds
  w' Lambda w, w = mean over groups of (a_r - c_r u) / ||g||, to the variance over groups.
  The second-order bias of a cosine against a noisy g_ref, about -tr Lambda / (2 ||g||^2)
  = -rho^2 / 2 (rho the reference's relative SE), is 5e-5 at rho = 1 %: left uncorrected.
* unbiasedness test: per coordinate z_i = (mean_i - g_ref,i) / sqrt(s_i^2 / S + lambda_i)
  (Bonferroni), and B^ / SE(B^) with SE from the variance above against the same threshold as with
  an exact reference (under the null B^ is again a centred quadratic form of the normal vector
  mean - g_ref, covariance Sigma/S + Lambda). The smallest squared bias it detects (about half
  the time) is c_agg SE_0(B^), SE_0 = sqrt(2 tr((Sigma/S + Lambda)^2)) the null SE; its square
  root over ||g|| is the detectable relative bias reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from . import metrics as mt
from .metrics import Z95, Estimate, SquaredBias, UnbiasednessTest

TINY = 1e-300


@dataclass(frozen=True)
class RefBlock:
    """The Monte Carlo reference of one block: ``g`` = mean of R draws [d], ``lam`` = the
    per-coordinate variance of that mean (s_i^2 / R) [d], ``Y`` [K, d] with Y'Y ~= Cov(g_ref),
    and ``events`` [d], the reference draws that are not 0 in each coordinate."""

    g: Tensor
    lam: Tensor
    Y: Tensor
    events: Tensor
    R: int

    @property
    def trace(self) -> float:
        """t_r = tr Cov(g_ref), from the diagonal (all R draws)."""
        return float(self.lam.sum())

    @property
    def norm_sq(self) -> float:
        """G^ = ||g_ref||^2 - t_r, unbiased for ||g||^2 (floored at a tiny positive value)."""
        return max(float(self.g @ self.g) - self.trace, TINY)

    @property
    def rel_se(self) -> float:
        """sqrt(t_r) / ||g||: the reference's relative standard error (of the vector)."""
        return math.sqrt(self.trace / self.norm_sq)

    def quad(self, v: Tensor, w: Tensor | None = None) -> float:
        """v' Lambda w (v' Lambda v without ``w``), from the factor Y."""
        yv = self.Y @ v
        return float(yv @ (yv if w is None else self.Y @ w))

    @property
    def trace_sq(self) -> float:
        """tr(Lambda^2) = ||Y Y'||_F^2 (via the K x K Gram matrix)."""
        gram = self.Y @ self.Y.T
        return float((gram**2).sum())

    def cross(self, X: Tensor) -> float:
        """tr(Sigma^ Lambda) = ||X Y'||_F^2 / (S - 1), X the centred measured draws [S, d]."""
        return float(((X @ self.Y.T) ** 2).sum()) / (X.shape[0] - 1)

    def norm_sq_var(self) -> float:
        """Var G^ = 4 g' Lambda g + 2 tr(Lambda^2)."""
        return 4 * self.quad(self.g) + 2 * self.trace_sq


def squared_bias(draws: Tensor, ref: RefBlock) -> SquaredBias:
    """B^ = ||mean - g_ref||^2 - T^/S - t_r with SE^2 = V_S + 4 beta'Lambda beta
    + 2 tr(Lambda^2) + 4 tr(Sigma Lambda)/S (module docstring)."""
    sb = mt.squared_bias(draws, ref.g)
    S = draws.shape[0]
    X = draws - draws.mean(0)
    beta = draws.mean(0) - ref.g
    extra = 4 * ref.quad(beta) + 2 * ref.trace_sq + 4 * ref.cross(X) / S
    return SquaredBias(sb.value - ref.trace, math.sqrt(sb.se**2 + extra), sb.total_variance)


def squared_bias_exact_mean(mu: Tensor, ref: RefBlock) -> SquaredBias:
    """B^ = ||mu - g_ref||^2 - t_r for an exactly known mean mu, SE^2 = 4 beta'Lambda beta
    + 2 tr(Lambda^2); ``total_variance`` is left 0 (the caller has the exact one)."""
    beta = mu - ref.g
    value = float(beta @ beta) - ref.trace
    return SquaredBias(value, math.sqrt(4 * ref.quad(beta) + 2 * ref.trace_sq), 0.0)


def mse_single(draws: Tensor, ref: RefBlock) -> Estimate:
    """M^ = mean_s ||g^_s - g_ref||^2 - t_r, SE^2 = sd^2/S + 4 (beta'Lambda beta
    + tr(Sigma Lambda)/S) + 2 tr(Lambda^2)."""
    S = draws.shape[0]
    sq = ((draws - ref.g) ** 2).sum(1)
    value = float(sq.mean()) - ref.trace
    beta = draws.mean(0) - ref.g
    X = draws - draws.mean(0)
    var = float(sq.var()) / S + 4 * (ref.quad(beta) + ref.cross(X) / S) + 2 * ref.trace_sq
    se = math.sqrt(var)
    return Estimate(value, se, value - Z95 * se, value + Z95 * se)


def ratio_var(n: float, var_n: float, beta: Tensor, ref: RefBlock) -> float:
    """Var(N / G^) by the delta method: (Var N - 2 q Cov(N, G) + q^2 Var G) / G^2 with
    q = N / G^ and Cov(N, G) = -4 beta' Lambda g."""
    G = ref.norm_sq
    q = n / G
    cov = -4 * ref.quad(beta, ref.g)
    return max(var_n - 2 * q * cov + q * q * ref.norm_sq_var(), 0.0) / (G * G)


def sqrt_interval(q: float, half: float) -> tuple[float, float]:
    """The square roots of the ends of q -+ half (floored at 0)."""
    return math.sqrt(max(q - half, 0.0)), math.sqrt(max(q + half, 0.0))


def relative_bias(sb: SquaredBias, beta: Tensor, ref: RefBlock) -> Estimate:
    """sqrt(max(q, 0)) with q = B^ / G^; interval: the square roots of q -+ 1.96 sd(q)."""
    G = ref.norm_sq
    q = sb.value / G
    sd = math.sqrt(ratio_var(sb.value, sb.se**2, beta, ref))
    value = math.sqrt(max(q, 0.0))
    lo, hi = sqrt_interval(q, Z95 * sd)
    se = sd / (2 * value) if value > 0 else None
    return Estimate(value, se, lo, hi)


def widen_sqrt_interval(
    value: float, lo: float, hi: float, sd_q: float, z: float = Z95
) -> tuple[float, float]:
    """An interval [lo, hi] of sqrt(q) (around ``value``) widened by an independent error of
    sd ``sd_q`` on the q scale: each half-width of q is combined in quadrature with z sd_q."""
    q = value * value
    lo_q = q - math.sqrt((q - lo * lo) ** 2 + (z * sd_q) ** 2)
    hi_q = q + math.sqrt((hi * hi - q) ** 2 + (z * sd_q) ** 2)
    return math.sqrt(max(lo_q, 0.0)), math.sqrt(max(hi_q, 0.0))


def reference_var(beta: Tensor, ref: RefBlock, X: Tensor | None, n_means: int) -> float:
    """The reference's part of the variance of a mean over ``n_means`` i.i.d. squared distances
    ||m - g_ref||^2 of means m with covariance Sigma_m (X: their centred draws, scaled so that
    X'X / (rows - 1) = Sigma_m; None for an exact mean): 4 (beta'Lambda beta
    + tr(Sigma_m Lambda) / n_means) + 2 tr(Lambda^2)."""
    cross = 0.0 if X is None else ref.cross(X) / n_means
    return 4 * (ref.quad(beta) + cross) + 2 * ref.trace_sq


def cosine_of_mean(mean: Tensor, ref: RefBlock, X: Tensor | None, T: float) -> Estimate:
    """c = mean' g_ref / (sqrt(max(||mean||^2 - T/S, eps)) sqrt(G^)) with the delta-method SE of
    the module docstring; ``X``: the centred draws (None with an exact mean, ``T`` = 0 then)."""
    S = 1 if X is None else X.shape[0]
    mu_sq = max(float(mean @ mean) - (T / S if X is not None else 0.0), TINY)
    mu_n, g_n = math.sqrt(mu_sq), math.sqrt(ref.norm_sq)
    c = max(-1.0, min(1.0, float(mean @ ref.g) / (mu_n * g_n)))
    a, u = mean / max(float(mean.norm()), TINY), ref.g / max(float(ref.g.norm()), TINY)
    var = ref.quad(a - c * u) / (g_n * g_n)
    if X is not None:
        w = u - c * a
        var += float(((X @ w) ** 2).sum()) / (S - 1) / (S * mu_sq)
    se = math.sqrt(max(var, 0.0))
    return Estimate(c, se, max(-1.0, c - Z95 * se), min(1.0, c + Z95 * se))


def cosine_reference_var(means: Tensor, cos: Tensor, ref: RefBlock) -> float:
    """The reference's part of Var(mean over groups of cos(m_r, g_ref)): w'Lambda w with
    w = mean_r (m_r / ||m_r|| - cos_r u) / ||g|| (zero means contribute 0)."""
    norms = means.norm(dim=1, keepdim=True)
    a = torch.where(norms > 0, means / norms.clamp_min(TINY), 0.0)
    u = ref.g / max(float(ref.g.norm()), TINY)
    w = (a - cos[:, None] * u).mean(0) / math.sqrt(ref.norm_sq)
    return ref.quad(w)


def z_scores(draws: Tensor | None, mean: Tensor, ref: RefBlock, S: int) -> Tensor:
    """(mean_i - g_ref,i) / sqrt(s_i^2/S + lambda_i); with ``draws`` None (an exact mean) the
    measured variance is 0. A coordinate scores 0 where either side has fewer than
    ``metrics.MIN_EVENTS`` informative draws (see ``metrics.z_scores``) or no variance."""
    if draws is None:
        var = ref.lam
        ok = torch.ones_like(ref.lam, dtype=torch.bool)
    else:
        sd = draws.std(0, correction=1)
        var = sd * sd / S + ref.lam
        centre = draws.median(0).values
        scale = draws.abs().amax(0)
        ok = (((draws - centre).abs() > 1e-9 * scale).sum(0) >= mt.MIN_EVENTS) & (sd > 0)
    ref_ok = (ref.lam == 0) | (ref.events >= mt.MIN_EVENTS)
    z = (mean - ref.g) / var.clamp_min(TINY).sqrt()
    return torch.where(ok & ref_ok & (var > 0), z, 0.0)


def unbiasedness_test(
    draws: Tensor | None, mean: Tensor, sb: SquaredBias, ref: RefBlock, *, alpha: float, S: int
) -> UnbiasednessTest:
    """The unbiasedness test against the reference (module docstring); false-fail rate
    <= 2 alpha as with an exact reference."""
    z = z_scores(draws, mean, ref, S)
    return UnbiasednessTest(
        float(z.abs().max()),
        mt.bonferroni_critical(ref.g.numel(), alpha),
        sb.value,
        sb.se,
        mt.aggregate_critical(alpha),
        S,
    )


def detectable_rel_bias(X: Tensor | None, ref: RefBlock, *, alpha: float) -> float:
    """The smallest relative bias ||beta|| / ||g|| the aggregate test rejects about half the
    time: sqrt(c_agg SE_0 / G^), SE_0^2 = 2 tr((Sigma/S + Lambda)^2)
    = 2 (tr Sigma^2 / S^2 + 2 tr(Sigma Lambda) / S + tr Lambda^2). ``X``: the centred draws
    (None for an exact mean: Sigma's part is 0)."""
    tr = ref.trace_sq
    if X is not None:
        S = X.shape[0]
        tr += mt.trace_cov_squared(X) / S**2 + 2 * ref.cross(X) / S
    se0 = math.sqrt(2 * max(tr, 0.0))
    return math.sqrt(mt.aggregate_critical(alpha) * se0 / ref.norm_sq)
