"""Straight-through family: the sampled forward pass with a proxy Jacobian D_k in the backward
recursion of spec §1.4 (delta_L = W_L^T dl/dz, g_{a_k} = delta_k * D_k, delta_{k-1} = W_k^T g_{a_k})."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .base import Estimator, PathEstimator, Problem
from .ops import Contribution, Path, backprop, head_grad, layer_terms


def coding_scale(problem: Problem) -> float:
    """d E[x] / d F(a): 2 for +-1 states (E x = 2F - 1), 1 for {0,1} states (E b = F)."""
    return 2.0 if problem.model.coding == "pm1" else 1.0


class StraightThroughBase(PathEstimator):
    """Sampled forward pass, then the recursion of spec §1.4 with ``jacobian(problem, a, bits)``."""

    family = "straight-through"
    unbiased = "no"

    def unbiased_layers(self, model):  # noqa: ANN001, ANN201
        return frozenset({model.depth})  # the head's pathwise gradient

    def jacobians(self, problem: Problem, path: Path) -> list[Tensor]:
        """The proxy D_k = "dx_k / da_k" of every binary layer along ``path``."""
        raise NotImplementedError

    def path_terms(self, problem: Problem, path: Path, context: Any = None
                   ) -> list[list[Contribution]]:
        dz = head_grad(problem, path.z)
        return layer_terms(path, backprop(problem, self.jacobians(problem, path), dz), dz)


class StraightThrough(StraightThroughBase):
    """Principled straight-through (ST): D = d E[x | a] / d a = 2F'(a) for +-1 states and F'(a)
    for {0,1} states -- the derivative of the conditional mean, so the estimator is invariant to
    the coding.

    Biased in general; unbiased in a one-layer network when f is multilinear (e.g. affine) in x.
    The head gradient is pathwise, hence unbiased. Cost: 1 loss evaluation, 1 backward pass.
    Reference: Shekhovtsov & Yanush, "Reintroducing straight-through estimators as principled
    methods for stochastic binary networks", arXiv 2006.06880 (GCPR 2021); spec §4.1.
    Verified: the seed networks' stored exact expectations of ST (sigmoid'(a) backward, {0,1}).
    """

    name = "st"
    reference = "Shekhovtsov & Yanush, arXiv 2006.06880 (GCPR 2021)"
    unbiased = "head only"

    def jacobians(self, problem: Problem, path: Path) -> list[Tensor]:
        scale = coding_scale(problem)
        return [scale * d for d in path.pdf(problem)]


ESTIMATORS: list[type[Estimator]] = [StraightThrough]
