"""Score-function family: unbiased estimators built on d log P(path) / d theta (spec §2, §4.6)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor  # noqa: F401

from ..exact import exact_gradient
from .base import Estimator, Hyper, PathEstimator, Problem
from .ops import Contribution, Path, head_grad, layer_terms, sample_path


class Reinforce(PathEstimator):
    """REINFORCE / score function (Williams 1992), with an optional baseline c_n per data point.

    g_{a_k} = (f(x_L) - c_n) * d log P(x_k | x_{k-1}) / d a_k for every binary layer, with the
    scores at the sampled upstream states (pitfall P3); the head gets the pathwise gradient
    dl/dz x_L^T. Unbiased for any baseline independent of the current sample:

    * ``none``: c = 0;  ``constant``: c = the parameter ``c``;
    * ``oracle``: c_n = E[l | X_n], the exact expected loss of each point (a reference, not a
      practical method);
    * ``frozen``: c_n = the mean loss of ``warmup`` independent paths per point, drawn once per
      ``draw`` call and then held fixed (spec §2.1, "frozen baseline").

    Requires only f on the cube. Cost: 1 loss evaluation, no backward pass through the network.
    Reference: R. J. Williams, Machine Learning 8, 1992. Spec §2.1 [num: exactly unbiased].
    """

    name = "reinforce"
    family = "score-function"
    unbiased = "yes"
    reference = "Williams, Machine Learning 8:229-256 (1992)"
    hyperparameters = {
        "baseline": Hyper("none", str, choices=("none", "constant", "oracle", "frozen"),
                          help="baseline c subtracted from the loss"),
        "c": Hyper(0.0, float, help="the constant of baseline=constant"),
        "warmup": Hyper(100, int, minimum=1, help="paths per point for baseline=frozen"),
    }

    def prepare(self, problem: Problem, generator: torch.Generator) -> Tensor | None:
        kind = self.params["baseline"]
        if kind == "oracle":
            return exact_gradient(problem.model, problem.X, problem.Y, with_grad=False).loss_per_point
        if kind == "frozen":
            path = sample_path(problem, self.params["warmup"], generator)
            return problem.model.head.loss(path.z, problem.Y).mean(0)
        if kind == "constant":
            return torch.full((problem.n_points,), self.params["c"], dtype=problem.X.dtype,
                              device=problem.X.device)
        return None

    def path_terms(self, problem: Problem, path: Path, context: Any = None
                   ) -> list[list[Contribution]]:
        f = problem.model.head.loss(path.z, problem.Y)
        signal = (f if context is None else f - context)[..., None]
        logit_grads = [signal * s for s in path.scores(problem)]
        return layer_terms(path, logit_grads, head_grad(problem, path.z))


ESTIMATORS: list[type[Estimator]] = [Reinforce]
