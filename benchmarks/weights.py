"""Stochastic binary weights (estbench.weights): the exact gradient over width x depth (time and
peak memory; the hidden pairs Bernoulli, a real first layer and head) and 2,000 draws of every
built-in weight estimator on a 2-5-5-5-1 weight network with 100 points. Numbers:
docs/kinds/weights.md."""

from __future__ import annotations

import torch

from estbench import default_registry, get_estimator
from estbench.kinds.weights import WeightProblem, exact_gradient, random_weight_sbn

from .common import smoke

WEIGHT_ESTIMATORS = tuple(
    n
    for n, e in default_registry().items()
    if e.source == "estbench" and e.cls.problem == "weights"
)


def weight_problem(width: int, depth: int, n_points: int = 100) -> WeightProblem:
    """Logistic activations, {0, 1} states, Bernoulli hidden pairs (eta ~ N(0, 1)), 2-d inputs."""
    g = torch.Generator().manual_seed(0)
    kinds = ("real",) + ("bernoulli",) * (depth - 1) + ("real",)
    model = random_weight_sbn(2, (width,) * depth, 1, generator=g, kinds=kinds)
    X = torch.randn(n_points, 2, generator=g, dtype=torch.float64)
    Y = torch.where(torch.rand(n_points, 1, generator=g) < 0.5, 1.0, -1.0).double()
    return WeightProblem.create(model, X, Y)


class WeightExactGradient:
    """Width 2..12 x depth 2..4 (1..3 Bernoulli pairs), 100 points."""

    params = ([2, 4, 6, 8, 10, 12], [2, 3, 4])
    param_names = ["width", "depth"]
    timeout = 300

    def setup(self, width: int, depth: int) -> None:
        self.problem = weight_problem(width, depth)

    def time_exact_gradient(self, width: int, depth: int) -> None:
        p = self.problem
        exact_gradient(p.model, p.X, p.Y)

    def peakmem_exact_gradient(self, width: int, depth: int) -> None:
        p = self.problem
        exact_gradient(p.model, p.X, p.Y)


class WeightEstimatorDraws:
    """2,000 draws of one weight estimator (shared weights), 2-5-5-5-1, 100 points, float64."""

    params = list(WEIGHT_ESTIMATORS)
    param_names = ["estimator"]
    timeout = 300
    number = 1
    repeat = (1, 3, 5.0)
    warmup_time = 0.0

    def setup(self, spec: str) -> None:
        self.problem = weight_problem(5, 3)
        self.estimator = get_estimator(spec)
        self.estimator.draw(self.problem, 10, generator=torch.Generator().manual_seed(1))

    def time_draws(self, spec: str) -> None:
        n = 50 if smoke() else 2_000
        self.estimator.draw(self.problem, n, generator=torch.Generator().manual_seed(0))

    def peakmem_draws(self, spec: str) -> None:
        n = 50 if smoke() else 2_000
        self.estimator.draw(self.problem, n, generator=torch.Generator().manual_seed(0))
