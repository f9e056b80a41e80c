"""Data of the ``sbvae`` kind: the 8x8 handwritten digits, binarised, and synthetic binary
patterns for tests.

**Digits.** ``digits.npz`` (package data, 45 kB) holds the 1,797 images of the test set of UCI
"Optical Recognition of Handwritten Digits" (Alpaydin & Kaynak, 1998) as scikit-learn bundles
them (``sklearn.datasets.load_digits``): ``intensities`` [1797, 64] uint8 in 0..16 (the count of
on pixels in each 4x4 block of a 32x32 bitmap; row-major 8x8) and ``labels`` [1797]. Provenance
and licence: README.md beside this module; ``scripts/make_digits.py`` regenerates the file from
scikit-learn, which estbench never imports. A case takes the first ``n`` images in the file's
order (the classes cycle through it, so any prefix is close to balanced).

Binarisation, of intensity c in 0..16:

* ``"fixed"``: x = 1 iff c >= 8, i.e. at least half of the block's 16 pixels are on (the
  threshold at half intensity; 32.3% of the pixels are on);
* ``"dynamic"``: x ~ Bernoulli(c / 16), independently per pixel, drawn once per case point from
  a ``torch.Generator`` seeded from the case's seed (30.5% on in expectation). The draw is the
  point's fixed data set: the exact reference is the ELBO of those x, and training does not
  redraw them.

**Synthetic.** Random binary patterns from a random sigmoid belief network (``synthetic``): a
top layer of independent fair bits and x ~ Bernoulli(sigmoid(W z + b)) with large weights, so
that the patterns have structure for a VAE to find.
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

PACKAGE = "estbench.kinds.sbvae"
DIGITS_FILE = "digits.npz"
N_DIGITS = 1797
DIGITS_DIM = 64
THRESHOLD = 8  # fixed binarisation: on iff intensity >= 8 of 16
BINARISATIONS = ("fixed", "dynamic")


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    resource = importlib.resources.files(PACKAGE) / DIGITS_FILE
    with resource.open("rb") as f, np.load(f, allow_pickle=False) as z:
        return z["intensities"], z["labels"]


def digit_intensities(n: int | None = None) -> Tensor:
    """The first ``n`` (default all 1,797) images' intensities, [n, 64] uint8 in 0..16."""
    pixels, _ = _digits()
    if n is not None and not 1 <= n <= N_DIGITS:
        raise ValueError(f"expected 1 <= n <= {N_DIGITS} digits, got {n}")
    return torch.from_numpy(pixels[:n].copy())


def digit_labels(n: int | None = None) -> Tensor:
    """The class (0..9) of the first ``n`` images, [n] int64."""
    _, labels = _digits()
    return torch.from_numpy(labels[:n].astype(np.int64))


def binarise(intensities: Tensor, mode: str, generator: torch.Generator | None = None) -> Tensor:
    """Binary float64 images from intensities 0..16 (module docstring); ``"dynamic"`` needs the
    ``generator``."""
    c = intensities.to(torch.float64)
    if mode == "fixed":
        return (c >= THRESHOLD).to(torch.float64)
    if mode == "dynamic":
        if generator is None:
            raise ValueError("dynamic binarisation draws its pixels from a generator; pass one")
        u = torch.rand(c.shape, generator=generator, dtype=torch.float64)
        return (u < c / 16).to(torch.float64)
    raise ValueError(f"binarisation must be one of {', '.join(BINARISATIONS)}, got {mode!r}")


def digits(n: int, binarisation: str, seed: int) -> Tensor:
    """The first ``n`` digits, binarised; [n, 64] float64 in {0, 1}. ``seed`` seeds the dynamic
    draw (the fixed binarisation ignores it)."""
    generator = torch.Generator().manual_seed(seed) if binarisation == "dynamic" else None
    return binarise(digit_intensities(n), binarisation, generator)


def synthetic(n: int, dim: int, seed: int, *, top: int = 3, scale: float = 6.0) -> Tensor:
    """``n`` binary patterns of ``dim`` pixels from a random one-layer SBN: z ~ Bern(1/2)^top,
    x ~ Bern(sigmoid(W z + b)), W ~ N(0, scale^2), b = -W 1 / 2 (so each pixel is balanced over
    z); [n, dim] float64 in {0, 1}."""
    g = torch.Generator().manual_seed(seed)
    W = scale * torch.randn(dim, top, generator=g, dtype=torch.float64)
    b = -W.sum(1) / 2
    z = (torch.rand(n, top, generator=g, dtype=torch.float64) < 0.5).to(torch.float64)
    p = torch.sigmoid(z @ W.T + b)
    return (torch.rand(n, dim, generator=g, dtype=torch.float64) < p).to(torch.float64)
