"""Exact expected gradient: time and peak memory over width and depth, and on the seed network."""

from __future__ import annotations

import torch

from estbench import exact_gradient, random_sbn


def _problem(width: int, depth: int, n_points: int = 100):
    g = torch.Generator().manual_seed(0)
    model = random_sbn(2, [width] * depth, 1, generator=g, scale=1.5, coding="pm1")
    X = torch.randn(n_points, 2, generator=g, dtype=torch.float64)
    Y = torch.where(torch.rand(n_points, generator=g) < 0.5, 1.0, -1.0).double()
    return model, X, Y


class ExactGradient:
    params = ([2, 4, 6, 8, 10, 12], [1, 2, 4, 8])
    param_names = ["width", "depth"]
    timeout = 120

    def setup(self, width: int, depth: int) -> None:
        self.problem = _problem(width, depth)

    def time_exact_gradient(self, width: int, depth: int) -> None:
        exact_gradient(*self.problem)

    def peakmem_exact_gradient(self, width: int, depth: int) -> None:
        exact_gradient(*self.problem)
