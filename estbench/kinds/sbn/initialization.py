"""Initial parameters: scaled random, or the seed study's data-dependent "AP2" initialisation.

AP2 (seed-study.md §1): W and b start uniform in [-1, 1]; then, layer by layer, the mean m and
variance v of the layer's input are propagated assuming independent units, the pre-activation
moments are mu = W m + b and s^2 = W^2 v, and each unit's row of W and its bias are rescaled and
shifted so that its pre-activation has mean 0 and variance 1. The unit's output then has
P(on) = Phi~(mu / sqrt(s^2 + pi^2/3)) with Phi~(z) = sigmoid(z pi / sqrt 3), i.e. 1/2, and moments
(p, p(1-p)) in {0,1} coding or (2p-1, 4p(1-p)) in +-1 coding. The input moments are taken over
the data. The head keeps its uniform initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .model import SBN, check_coding, get_head, get_noise


def uniform_sbn(
    input_dim: int,
    widths: Sequence[int],
    out_dim: int,
    *,
    generator: torch.Generator,
    coding: str = "01",
    noise: str = "logistic",
    head: str = "logistic",
) -> SBN:
    dims = [input_dim, *widths, out_dim]
    weights = tuple(
        torch.rand(o, i, generator=generator, dtype=torch.float64) * 2 - 1
        for i, o in zip(dims[:-1], dims[1:], strict=True)
    )
    biases = tuple(
        torch.rand(o, generator=generator, dtype=torch.float64) * 2 - 1 for o in dims[1:]
    )
    return SBN(weights, biases, check_coding(coding), get_noise(noise), get_head(head))


def ap2_init(
    X: Tensor,
    widths: Sequence[int],
    out_dim: int,
    *,
    generator: torch.Generator,
    coding: str = "01",
    noise: str = "logistic",
    head: str = "logistic",
) -> SBN:
    """The seed study's data-dependent initialisation (module docstring)."""
    model = uniform_sbn(
        X.shape[1], widths, out_dim, generator=generator, coding=coding, noise=noise, head=head
    )
    m, v = X.mean(0), X.var(0, correction=0)
    weights, biases = list(model.weights), list(model.biases)
    for k in range(model.depth):
        W, b = weights[k], biases[k]
        mu, s2 = W @ m + b, (W**2) @ v
        scale = 1 / torch.sqrt(s2.clamp_min(1e-12))
        weights[k] = W * scale[:, None]
        biases[k] = b * scale - mu * scale  # the rescaled pre-activation has mean 0
        mu_new, s2_new = torch.zeros_like(mu), torch.ones_like(s2)
        p = torch.sigmoid(mu_new / torch.sqrt(s2_new + math.pi**2 / 3) * math.pi / math.sqrt(3))
        m, v = (p, p * (1 - p)) if coding == "01" else (2 * p - 1, 4 * p * (1 - p))
    return model.replace(weights=tuple(weights), biases=tuple(biases))
