"""The draws' random stream (estbench.rng): reproducible from the generator alone, uniform, and
the only source of estimator noise."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from scipy import stats

import estbench
from estbench.rng import uniforms


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_same_generator_state_gives_the_same_numbers_and_the_generator_advances():
    g1, g2 = _gen(5), _gen(5)
    a, b = uniforms((3, 4), g1), uniforms((3, 4), g2)
    assert torch.equal(a, b)
    assert a.dtype == torch.float64 and a.shape == (3, 4)
    c = uniforms((3, 4), g1)  # the next call: new numbers
    assert not torch.equal(a, c)
    # The CPU stream advances the generator by the same amount whatever the shape, so what
    # follows a call does not depend on its size.
    g3, g4 = _gen(9), _gen(9)
    uniforms((1,), g3)
    uniforms((1000, 7), g4)
    assert torch.equal(uniforms((5,), g3), uniforms((5,), g4))


def test_other_seeds_give_other_numbers():
    assert not torch.equal(uniforms((100,), _gen(0)), uniforms((100,), _gen(1)))


def test_uniform_on_the_unit_interval_by_a_ks_test():
    u = uniforms((200_000,), _gen(3))
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    # False-fail rate 1e-6 for a correct generator (fixed seed: the outcome is deterministic).
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-6
    # 53-bit resolution in float64 (not a float32 stream widened): most numbers need > 24 bits.
    frac = (u * 2**24) - torch.floor(u * 2**24)
    assert float((frac > 0).double().mean()) > 0.99


def test_dtype_and_device_follow_like():
    like32 = torch.zeros(1, dtype=torch.float32)
    u = uniforms((4, 2), _gen(0), like32)
    assert u.dtype == torch.float32
    meta = torch.empty(1, dtype=torch.float64, device="meta")
    assert uniforms((2,), _gen(0), meta).device.type == "meta"
    # float32 numbers are uniform too (mean of 1e5 within 6 standard errors of 1/2).
    v = uniforms((100_000,), _gen(1), like32).double()
    assert abs(float(v.mean()) - 0.5) < 6 * math.sqrt(1 / 12 / 1e5)


def test_the_library_draws_estimator_noise_only_through_rng():
    """A direct torch.rand in an estimator would bypass the stream (and its speed); data and
    initialisation code may use torch's own generators."""
    root = Path(estbench.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if "estimators" not in rel or rel == "rng.py":
            continue
        text = path.read_text()
        for needle in ("torch.rand(", "torch.rand_like(", ".uniform_(", ".bernoulli("):
            if needle in text:
                offenders.append(f"{rel}: {needle}")
    assert offenders == []
