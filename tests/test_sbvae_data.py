"""The data of the ``sbvae`` kind: the shipped 8x8 digits, their binarisations, and the
synthetic patterns."""

from __future__ import annotations

import pytest
import torch

from estbench.kinds.sbvae.data import (
    N_DIGITS,
    binarise,
    digit_intensities,
    digit_labels,
    digits,
    synthetic,
)


def test_the_shipped_digits_are_sklearns_test_set():
    """1,797 images of 64 intensities in 0..16, 174..183 per class (the UCI test set's class
    counts), and the first image a 0 whose top-left pixel is blank."""
    c = digit_intensities()
    assert c.shape == (N_DIGITS, 64) and c.dtype == torch.uint8
    assert int(c.min()) == 0 and int(c.max()) == 16
    counts = torch.bincount(digit_labels(), minlength=10).tolist()
    assert counts == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert int(digit_labels(1)) == 0 and int(c[0, 0]) == 0
    # the mean intensity, a fingerprint of the whole file (sum of all pixels)
    assert int(c.to(torch.int64).sum()) == 561_718


def test_fixed_binarisation_thresholds_at_half_intensity():
    c = torch.arange(17, dtype=torch.uint8)
    x = binarise(c, "fixed")
    assert x.tolist() == [0.0] * 8 + [1.0] * 9  # on iff c >= 8
    X = digits(100, "fixed", seed=0)
    assert X.shape == (100, 64) and set(X.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(X, digits(100, "fixed", seed=5))  # the seed is not read


def test_dynamic_binarisation_draws_from_the_seed():
    a, b, c = (digits(N_DIGITS, "dynamic", seed=s) for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # P(on) = c / 16: the mean over 1797 x 64 pixels within 5 standard errors
    p = digit_intensities().double() / 16
    se = float((p * (1 - p)).sum().sqrt()) / p.numel()
    assert abs(float(a.mean() - p.mean())) < 5 * se
    # negative control: the fixed binarisation's mean is far from it
    assert abs(float(digits(N_DIGITS, "fixed", 0).mean() - p.mean())) > 10 * se  # 22 se
    # pixels of intensity 0 and 16 are the same in both
    c16 = digit_intensities()
    assert bool((a[c16 == 0] == 0).all()) and bool((a[c16 == 16] == 1).all())
    with pytest.raises(ValueError, match="draws its pixels from a generator"):
        binarise(c16, "dynamic")


def test_synthetic_patterns_are_binary_seeded_and_structured():
    X = synthetic(400, 10, seed=1)
    assert X.shape == (400, 10) and set(X.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(X, synthetic(400, 10, seed=1)) and not torch.equal(X, synthetic(400, 10, 2))
    # from 2^3 top states: far fewer distinct patterns than the ~330 that 400 draws of
    # independent fair pixels give (1024 (1 - exp(-400 / 1024)))
    assert len({tuple(r) for r in X.tolist()}) < 200
