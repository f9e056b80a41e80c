"""The ``bernoulli-toy`` problem kind: n independent Bernoulli units b_i ~ Bern(p_i),
p_i = sigmoid(theta_i), and the objective of the REBAR and RELAX papers' toy experiment,

    J(theta) = (scale / n) sum_i E[(b_i - t)^2],

whose exact gradient is dJ/dtheta_i = (scale / n) p_i (1 - p_i) (1 - 2t) (the two outcomes'
losses differ by (1 - t)^2 - t^2 = 1 - 2t). It has no data: a problem is the network alone (its
data batch is one empty point, so that the harness's bookkeeping of points still reads).

Everything estbench needs of a kind is here (``estbench.problem`` states the contract), and
nothing in estbench names it: the entry point in pyproject.toml is the only registration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from estbench.cases import ModelSpec, Table
from estbench.checkpoint import read_npz, write_npz
from estbench.errors import CheckpointError
from estbench.estimators.base import Estimator
from estbench.problem import Block, PathMoments, ProblemKind, Reference
from estbench.schema import Key

MARKER = "bernoulli-toy"  # the value of the key estbench_model in this kind's checkpoints


@dataclass(frozen=True)
class ToyNet:
    """The units' logits theta [n], the target t and the loss scale. Seen as a network: one
    binary layer of n units, no input, one output per unit; its parameters are one pair
    (theta, an empty bias)."""

    theta: Tensor
    target: float = 0.45
    scale: float = 1.0

    depth = 0  # the units are the output: no hidden layer, the "head" is the only pair
    input_dim = 0

    @property
    def widths(self) -> tuple[int, ...]:
        return ()

    @property
    def out_dim(self) -> int:
        return self.theta.numel()

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.theta.numel(),)

    @property
    def dtype(self) -> torch.dtype:
        return self.theta.dtype

    def describe(self) -> str:
        return f"{self.out_dim} Bernoulli units, target {self.target:g}, scale {self.scale:g}"


@dataclass(frozen=True, eq=False)
class ToyProblem:
    """What the toy's estimators receive: the network, and an empty data batch of one point."""

    model: ToyNet
    X: Tensor  # [1, 0]

    @property
    def n_points(self) -> int:
        return 1

    @property
    def n_params(self) -> int:
        return self.model.out_dim

    @property
    def device(self) -> torch.device:
        return self.X.device

    def split(self, flat: Tensor) -> list[Tensor]:
        return [flat]

    def to(
        self, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> ToyProblem:
        net = replace(self.model, theta=self.model.theta.to(dtype=dtype, device=device))
        return ToyProblem(net, self.X.to(dtype=dtype, device=device))


def make_problem(theta: Tensor, target: float, scale: float = 1.0) -> ToyProblem:
    theta = torch.as_tensor(theta, dtype=torch.float64).reshape(-1)
    if theta.numel() == 0 or not bool(torch.isfinite(theta).all()):
        raise ValueError(f"theta must be a non-empty finite vector, got {theta.tolist()}")
    return ToyProblem(ToyNet(theta, float(target), float(scale)), theta.new_zeros(1, 0))


@dataclass(frozen=True)
class ToyModelSpec(ModelSpec):
    """``[model]`` of the toy: ``widths = [n]`` units, ``target`` t, the initial logit ``theta``
    of every unit and the loss ``scale``."""

    target: float = 0.45
    theta: float = 0.0
    scale: float = 1.0


# ---- the toy's own estimators ------------------------------------------------------------------


class ToyEstimator(Estimator[ToyProblem, ToyNet]):
    """A toy estimator is a function of the sampled units b [*B, n]: ``estimate``."""

    problem = "bernoulli-toy"

    def estimate(self, problem: ToyProblem, b: Tensor) -> Tensor:
        raise NotImplementedError

    def _draw(
        self, problem: ToyProblem, n_draws: int, generator: torch.Generator, context: Any
    ) -> Tensor:
        p = torch.sigmoid(problem.model.theta)
        u = torch.rand(n_draws, p.numel(), generator=generator, dtype=p.dtype, device=p.device)
        return self.estimate(problem, (u < p).to(p.dtype))


class ToyReinforce(ToyEstimator):
    """REINFORCE on the toy: g_i = f(b) (b_i - p_i), with f(b) = (scale / n) sum_j (b_j - t)^2 and
    d log P(b_i) / d theta_i = b_i - p_i. Unbiased. Williams (1992), "Simple statistical
    gradient-following algorithms", Machine Learning 8."""

    name = "toy-reinforce"
    family = "score-function"
    unbiased = "yes"
    reference = "Williams, Machine Learning 8 (1992)"
    verified = (
        "exact (the kind's path moments): the conformance check's unbiasedness test passes, and "
        "a case run reports a relative bias below 1e-12; negative control: a sign-flipped "
        "REINFORCE fails the exact unbiasedness test"
    )
    tests = ("tests/test_kinds.py",)  # estbench's tests, where this example lives

    def estimate(self, problem: ToyProblem, b: Tensor) -> Tensor:
        m = problem.model
        p = torch.sigmoid(m.theta)
        f = (m.scale / m.out_dim) * ((b - m.target) ** 2).sum(-1, keepdim=True)
        return f * (b - p)


class ToyStraightThrough(ToyEstimator):
    """Straight-through on the toy: g_i = (scale / n) 2 (b_i - t) p_i (1 - p_i), the derivative
    of (b_i - t)^2 at the sample times d E[b_i] / d theta_i. Biased: its mean
    (scale / n) 2 (p_i - t) p_i (1 - p_i) equals the gradient only where p_i = 1/2. Bengio,
    Leonard & Courville, arXiv 1308.3432 (2013)."""

    name = "toy-st"
    family = "straight-through"
    unbiased = "no"
    reference = "Bengio, Leonard & Courville, arXiv 1308.3432 (2013)"
    verified = (
        "exact (the kind's path moments): the conformance check detects its claimed bias, and a "
        "case run reports a relative bias above 0.1"
    )
    tests = ("tests/test_kinds.py",)

    def estimate(self, problem: ToyProblem, b: Tensor) -> Tensor:
        m = problem.model
        p = torch.sigmoid(m.theta)
        return (m.scale / m.out_dim) * 2 * (b - m.target) * p * (1 - p)


# ---- the kind --------------------------------------------------------------------------------


class ToyKind(ProblemKind[ToyProblem, ToyNet]):
    """E[(b - t)^2] over independent Bernoulli units (module docstring)."""

    name = "bernoulli-toy"
    description = "the REBAR/RELAX toy E[(b - t)^2] over Bernoulli units"
    default_training = "toy-reinforce"
    parametrisations = ("theta",)
    checkpoint_marker = MARKER

    def model_keys(self) -> tuple[Key, ...]:
        return (
            Key("target", "float", 0.45, help="the target t of E[(b - t)^2]"),
            Key("theta", "float", 0.0, help="every unit's initial logit"),
            Key(
                "scale",
                "float",
                1.0,
                check=lambda v: v >= 0,
                accepts=">= 0",
                help="scale of the loss",
            ),
        )

    def parse_model(self, table: Table, common: dict[str, Any]) -> ModelSpec:
        return ToyModelSpec(
            **common,
            target=table.get("target"),
            theta=table.get("theta"),
            scale=table.get("scale"),
        )

    def initial(
        self,
        spec: ModelSpec,
        widths: tuple[int, ...],
        X: Tensor,
        labels: Tensor,
        *,
        stored: bool,
        offset: int,
    ) -> tuple[ToyNet, Tensor]:
        """Every unit at logit ``theta``; the case's data only set the number of minibatch steps
        of an epoch in training (their targets are zeros, never read)."""
        assert isinstance(spec, ToyModelSpec)
        theta = torch.full((sum(widths),), spec.theta, dtype=torch.float64)
        return ToyNet(theta, spec.target, spec.scale), torch.zeros(len(X), dtype=torch.float64)

    def load(
        self, spec: ModelSpec, path: Path, where: str
    ) -> tuple[ToyNet, tuple[Tensor, Tensor] | None]:
        return self.read(path, {})

    def read(
        self, path: Path, options: Mapping[str, str | None]
    ) -> tuple[ToyNet, tuple[Tensor, Tensor] | None]:
        arrays = read_npz(path)
        for key in ("theta", "target", "scale"):
            if key not in arrays:
                raise CheckpointError(f"{path}: key {key} is missing (a {MARKER} checkpoint)")
        theta = torch.as_tensor(arrays["theta"], dtype=torch.float64).reshape(-1)
        if not bool(torch.isfinite(theta).all()):
            raise CheckpointError(f"{path}: key theta: expected finite values")
        net = ToyNet(theta, float(arrays["target"]), float(arrays["scale"]))
        return net, (torch.zeros(1, 0, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))

    def targets(self, spec: ModelSpec, net: ToyNet, labels: Tensor, *, stored: bool) -> Tensor:
        return torch.zeros(len(labels), dtype=torch.float64)

    def save(self, path: Path, net: ToyNet, X: Tensor, Y: Tensor) -> None:
        write_npz(
            path,
            {
                "estbench_model": np.array(MARKER),
                "theta": net.theta.detach().cpu().numpy(),
                "target": np.array(net.target),
                "scale": np.array(net.scale),
            },
        )

    def load_snapshot(self, path: Path, like: ToyNet) -> ToyNet:
        net, _ = self.read(path, {})
        if net.out_dim != like.out_dim:
            raise CheckpointError(f"{path}: a snapshot of {net.out_dim} units, not {like.out_dim}")
        return net

    def network_type(self) -> type:
        return ToyNet

    def problem(self, net: ToyNet, X: Tensor, Y: Tensor) -> ToyProblem:
        return make_problem(net.theta, net.target, net.scale)

    def describe(self, net: ToyNet) -> str:
        return net.describe()

    def parameters(self, net: ToyNet) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        return (net.theta,), (net.theta.new_zeros(0),)

    def with_parameters(
        self, net: ToyNet, thetas: tuple[Tensor, ...], biases: tuple[Tensor, ...]
    ) -> ToyNet:
        return replace(net, theta=thetas[0])

    def _loss_and_gradient(self, problem: ToyProblem) -> tuple[float, Tensor]:
        m = problem.model
        p = torch.sigmoid(m.theta.to(torch.float64))
        t, c = m.target, m.scale / m.out_dim
        loss = c * float((p * (1 - t) ** 2 + (1 - p) * t**2).sum())
        return loss, c * p * (1 - p) * (1 - 2 * t)

    def reference(self, problem: ToyProblem, memory_budget: int | None = None) -> Reference:
        loss, grad = self._loss_and_gradient(problem)
        n = problem.model.out_dim
        return Reference(
            loss, {"theta": grad}, [Block("units", slice(0, n), "θ (all units)", (0,))], {}
        )

    def gradient_arrays(
        self, problem: ToyProblem, reference: Reference
    ) -> list[list[tuple[str, Tensor]]]:
        return [[("d theta", reference.gradient())]]

    def exact_gradient(self, problem: ToyProblem) -> Tensor:
        return self._loss_and_gradient(problem)[1]

    def exact_bytes(self, net: ToyNet, n_points: int, memory_budget: int) -> int:
        return 64 * net.out_dim

    def exact_seconds(self, net: ToyNet, n_points: int) -> float:
        return 1e-4

    def path_moments(
        self, estimator: Any, problem: ToyProblem, context: Any, max_paths: int
    ) -> PathMoments | None:
        """Both estimators are functions of b alone: enumerate its 2^n values."""
        n = problem.model.out_dim
        if not isinstance(estimator, ToyEstimator) or 2**n > max_paths:
            return None
        bits = (torch.arange(2**n)[:, None] >> torch.arange(n)) & 1
        b = bits.to(torch.float64)
        p = torch.sigmoid(problem.model.theta.to(torch.float64))
        weight = torch.where(b == 1, p, 1 - p).prod(-1, keepdim=True)  # P(b), [2^n, 1]
        g = estimator.estimate(problem.to(dtype=torch.float64), b)
        mean = (weight * g).sum(0)
        return PathMoments(mean, ((weight * g * g).sum(0) - mean**2).clamp_min(0), problem)

    def path_count(self, estimator: Any, net: ToyNet) -> int | None:
        return 2 ** min(net.out_dim, 64) if isinstance(estimator, ToyEstimator) else None

    def check_problems(self) -> list[ToyProblem]:
        """Two toys whose units are away from p = 1/2 (where ST would be unbiased)."""
        return [
            make_problem(torch.tensor([0.8, -1.3, 2.0]), 0.45),
            make_problem(torch.tensor([-0.5, 1.5]), 0.2, scale=2.0),
        ]

    def zero_loss_problem(self) -> ToyProblem:
        return make_problem(torch.tensor([0.3, -0.7]), 0.45, scale=0.0)

    def estimators(self) -> list[type]:
        return [ToyReinforce, ToyStraightThrough]

    def reference_network(self) -> ToyNet:
        return ToyNet(torch.zeros(5, dtype=torch.float64))
