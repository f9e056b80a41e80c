"""Uniform random numbers for every draw estbench makes: one function, one stream definition.

``uniforms(shape, generator, ...)`` is the only source of estimator noise (and of the bootstrap's
resampling weights). Its stream is defined by the ``torch.Generator`` passed in, and nothing else:

* on a CUDA generator, ``torch.rand`` on that device (Philox, fast where it runs);
* on a CPU generator, 128 bits are taken from the generator (two int64 ``random_`` draws) to seed
  a NumPy ``SFC64`` bit generator (through ``SeedSequence``, which spreads nearby seeds apart),
  and that fills the tensor. Why: torch's CPU ``rand`` is a serial MT19937 that takes two 32-bit
  words per float64, 3.5 ns per number here; SFC64 takes 1.7 ns (68,000 float64 in 117 against
  238 µs, docs/performance.md), and uniforms were the largest single cost of the draws (1.4 s of
  the seed study's 4.5 s). SFC64 passes BigCrush and PractRand (O'Neill's tests, NumPy's docs);
  ``Generator.random`` gives the same 53-bit (float64) or 24-bit (float32) uniforms on [0, 1) as
  ``torch.rand``.

Same generator state, same shape -> the same numbers, bit for bit (on the CPU the generator
advances by two int64 draws whatever the shape), so the stream is reproducible from a seed.
It differs from ``torch.rand``'s, which is why results written before this stream (point format
1) are refused for a resume rather than mixed with new ones (``runner.POINT_FORMAT``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

_NUMPY_DTYPES: dict[torch.dtype, Any] = {torch.float64: np.float64, torch.float32: np.float32}


def uniforms(
    shape: Sequence[int],
    generator: torch.Generator,
    like: Tensor | None = None,
    *,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """U[0, 1) numbers of ``shape`` from ``generator`` (drawn on the generator's device), in
    ``like``'s dtype and on its device (without ``like``: ``dtype``, on the generator's device).
    The stream is the module docstring's."""
    shape = tuple(int(s) for s in shape)
    if like is not None:
        dtype = like.dtype
    target = generator.device if like is None else like.device
    np_dtype = _NUMPY_DTYPES.get(dtype)
    if generator.device.type != "cpu" or np_dtype is None:
        u = torch.rand(shape, generator=generator, dtype=dtype, device=generator.device)
        return u.to(target)
    seed = torch.empty(2, dtype=torch.int64).random_(generator=generator).tolist()
    bits = np.random.Generator(np.random.SFC64(np.random.SeedSequence(seed)))
    return torch.from_numpy(bits.random(shape, dtype=np_dtype)).to(target)
