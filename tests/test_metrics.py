"""Metric estimators against known answers: synthetic draws with known mean and covariance."""

from __future__ import annotations

import math

import pytest
import torch

from estbench.metrics import (
    MIN_EVENTS,
    aggregate_critical,
    bonferroni_critical,
    group_means,
    poisson_weights,
    prefix_sums,
    squared_bias,
    unbiasedness_test,
    z_scores,
)


def gaussian_draws(
    S: int, mean: torch.Tensor, scales: torch.Tensor, g: torch.Generator
) -> torch.Tensor:
    return mean + scales * torch.randn(S, mean.numel(), generator=g, dtype=torch.float64)


def test_squared_bias_is_unbiased_and_its_se_covers():
    """Over 400 replicates: mean of B_hat within 4 SE of ||beta||^2, and the formula SE within
    15 % of the empirical SD (spec §6's check: 0.0222 vs 0.0226)."""
    g = torch.Generator().manual_seed(0)
    mean = torch.tensor([0.3, -0.1, 0.05, 0.0], dtype=torch.float64)
    target = torch.zeros(4, dtype=torch.float64)
    scales = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    values, ses = [], []
    for _ in range(400):
        sb = squared_bias(gaussian_draws(500, mean, scales, g), target)
        values.append(sb.value)
        ses.append(sb.se)
    v = torch.tensor(values)
    true_b = float(mean @ mean)
    assert abs(float(v.mean()) - true_b) < 4 * float(v.std()) / math.sqrt(400)
    assert float(torch.tensor(ses).mean()) == pytest.approx(float(v.std()), rel=0.15)
    covered = sum(abs(b - true_b) <= 1.96 * se for b, se in zip(values, ses, strict=True)) / 400
    assert 0.90 <= covered <= 0.99


def test_total_variance_is_the_trace_of_the_covariance():
    g = torch.Generator().manual_seed(1)
    scales = torch.tensor([1.0, 3.0], dtype=torch.float64)
    sb = squared_bias(
        gaussian_draws(200000, torch.zeros(2, dtype=torch.float64), scales, g),
        torch.zeros(2, dtype=torch.float64),
    )
    assert sb.total_variance == pytest.approx(10.0, rel=0.01)


def test_zero_variance_coordinates_are_left_to_the_aggregate_test():
    d = torch.tensor([[1.0, 2.0, 0.0], [1.0, 2.0, 1.0], [1.0, 2.0, 2.0]], dtype=torch.float64)
    g = torch.tensor([1.0, 2.5, 1.0], dtype=torch.float64)
    z = z_scores(d, g)
    assert z.tolist() == [0.0, 0.0, 0.0]
    deterministic = d[:, :2]  # coordinate 1 is deterministically biased by 0.5
    test = unbiasedness_test(deterministic, g[:2])
    assert test.ratio == math.inf and not test.passed
    assert unbiasedness_test(deterministic, torch.tensor([1.0, 2.0], dtype=torch.float64)).passed


def test_rare_event_coordinates_are_left_to_the_aggregate_test():
    """A coordinate off its typical value in fewer than MIN_EVENTS draws gets z = 0: one event in
    20,000 draws (as an unbiased ARMS showed on a saturated unit) must not read as z = 29; with
    enough events the z-test applies again and catches the same bias."""
    S = 20000
    d = torch.zeros(S, 2, dtype=torch.float64)
    d[0, 0] = 1.4e-5  # one event; its expectation 2.2e-8 means about 30 events of this size
    gen = torch.Generator().manual_seed(0)
    d[:, 1] = (torch.rand(S, generator=gen, dtype=torch.float64) < 0.01).double()
    g = torch.tensor([2.2e-8, 0.01 * 1.5], dtype=torch.float64)  # coordinate 1 biased by 1/3
    raw = (d.mean(0) - g) / (d.std(0) / math.sqrt(S))
    z = z_scores(d, g)
    assert raw[0] < -25 and z[0] == 0.0
    assert z[1] == raw[1] and z[1] < -5  # about 200 events: tested, and the bias is caught
    d[: MIN_EVENTS - 1, 1] = 1.0
    d[MIN_EVENTS - 1 :, 1] = 0.0
    assert z_scores(d, g)[1] == 0.0
    d[MIN_EVENTS - 1, 1] = 1.0
    assert z_scores(d, g)[1] != 0.0


def test_thresholds():
    # Phi^{-1}(1 - 1e-3 / 100) = 4.265 (spec §5.2 quotes ~4.4, which is the value for d = 100).
    assert bonferroni_critical(50, 1e-3) == pytest.approx(4.2649, abs=1e-3)
    assert bonferroni_critical(100, 1e-3) == pytest.approx(4.4172, abs=1e-3)
    assert aggregate_critical(1e-3) == pytest.approx((3.2905**2 - 1) / math.sqrt(2), abs=1e-3)


@pytest.mark.parametrize("d", [1, 5])
def test_unbiasedness_test_false_fail_rate(d):
    """Under the null with alpha = 0.02 the test fails at most 2 alpha = 4 % of the time; over 1000
    replicates the observed rate stays below 7 % (binomial tail < 1e-4 at a true rate of 4 %)."""
    g = torch.Generator().manual_seed(2 + d)
    scales = torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    zero = torch.zeros(d, dtype=torch.float64)
    draws = zero + scales * torch.randn(1000, 300, d, generator=g, dtype=torch.float64)
    fails = sum(not unbiasedness_test(draws[r], zero, alpha=0.02).passed for r in range(1000))
    assert fails / 1000 < 0.07


def test_unbiasedness_test_detects_bias():
    """Power: a bias of 0.2 sd in one of 10 coordinates at S = 20000 is found."""
    g = torch.Generator().manual_seed(9)
    mean = torch.zeros(10, dtype=torch.float64)
    mean[3] = 0.2
    draws = gaussian_draws(20000, mean, torch.ones(10, dtype=torch.float64), g)
    test = unbiasedness_test(draws, torch.zeros(10, dtype=torch.float64))
    assert not test.passed and test.z_max > 20


def test_poisson_weights_have_the_poisson_1_distribution():
    """Inversion of the CDF: frequencies of 0..4 within 5 standard errors of e^-1 / k! over 4M
    weights (false-fail rate < 1e-5), mean and variance 1."""
    w = poisson_weights(200, 20000, torch.Generator().manual_seed(0))
    n = w.numel()
    for k in range(5):
        p = math.exp(-1) / math.factorial(k)
        assert abs(float((w == k).double().mean()) - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert float(w.mean()) == pytest.approx(1.0, abs=5 / math.sqrt(n))
    assert float(w.var()) == pytest.approx(1.0, abs=0.01)


def test_group_means_from_prefix_sums_equal_the_direct_means():
    d = torch.randn(20000, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 3
    C = prefix_sums(d)
    for M in (1, 2, 7, 1000, 9000):
        direct = group_means(d, M)
        assert direct.shape == (20000 // M, 7)
        assert torch.allclose(group_means(d, M, C), direct, rtol=0, atol=1e-11)


def test_grouped_blocks_equal_the_block_by_block_metrics():
    from estbench.metrics import (
        block_indicator,
        cosines,
        grouped_blocks,
        rel_rmse_grouped,
    )

    g = torch.Generator().manual_seed(4)
    d = torch.randn(600, 9, generator=g, dtype=torch.float64) + 0.3
    grad = torch.randn(9, generator=g, dtype=torch.float64)
    slices = [slice(0, 4), slice(4, 9), slice(0, 9)]
    ind = block_indicator(slices, 9, d)
    for M in (1, 7, 300):
        means = group_means(d, M)
        stats = grouped_blocks(means, grad, ind)
        for b, sl in enumerate(slices):
            ref = rel_rmse_grouped(d[:, sl], grad[sl], M)
            assert ref is not None
            got = stats.rmse[b]
            for x, y in ((got.value, ref.value), (got.se, ref.se), (got.ci_low, ref.ci_low)):
                assert x == pytest.approx(y, rel=1e-12, abs=1e-15)
            cos = cosines(d[:, sl], grad[sl], M)
            assert stats.cos_mean[b] == pytest.approx(float(cos.mean()), rel=1e-12)
            q15, q85 = torch.quantile(cos, torch.tensor([0.15, 0.85], dtype=cos.dtype)).tolist()
            assert stats.cos_q15[b] == pytest.approx(q15, rel=1e-12)
            assert stats.cos_q85[b] == pytest.approx(q85, rel=1e-12)
