"""Exact expected gradient: time and peak memory over a grid of width and depth, on the seed
network (target: <= 20 ms), at width 12 depth 8 (target: <= 1.5 s) and at width 13 (peak memory,
target: <= 2 GiB). Targets and measured numbers: docs/performance.md."""

from __future__ import annotations

from estbench import exact_gradient

from .common import random_problem, seed_problem, smoke


class ExactGradient:
    """Width 2..12 x depth 1..8, 100 points, random {+-1} networks."""

    params = ([2, 4, 6, 8, 10, 12], [1, 2, 4, 8])
    param_names = ["width", "depth"]
    timeout = 180

    def setup(self, width: int, depth: int) -> None:
        self.problem = random_problem(width, depth)

    def time_exact_gradient(self, width: int, depth: int) -> None:
        p = self.problem
        exact_gradient(p.model, p.X, p.Y)

    def peakmem_exact_gradient(self, width: int, depth: int) -> None:
        p = self.problem
        exact_gradient(p.model, p.X, p.Y)


class ExactGradientSeedNet:
    """The seed study's 2-5-5-5-1 network with its 200 points."""

    def setup(self) -> None:
        self.problem = seed_problem()

    def time_exact_gradient(self) -> None:
        p = self.problem
        exact_gradient(p.model, p.X, p.Y)


class ExactGradientWide:
    """Width 13, depth 3, 100 points: the peak-memory target (default 1 GiB memory budget)."""

    timeout = 300
    number = 1
    repeat = (1, 3, 60.0)

    def setup(self) -> None:
        self.problem = random_problem(4 if smoke() else 13, 3)

    def time_exact_gradient(self) -> None:
        p = self.problem
        exact_gradient(p.model, p.X, p.Y)

    def peakmem_exact_gradient(self) -> None:
        p = self.problem
        exact_gradient(p.model, p.X, p.Y)
