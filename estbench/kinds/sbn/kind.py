"""The ``sbn`` kind: layered SBNs with real weights W_k, b_k and stochastic binary activations,
x_k = 1[F(a_k) > u] with a_k = W_{k-1} x_{k-1} + b_{k-1}, read by a head (spec §1.1).

Its exact reference is the layer-wise forward algorithm (``exact``), its path estimators'
moments come from enumerating every path (``moments``), its checkpoints are the seed authors'
npz layout (``checkpoint``), its estimators are in ``estimators/``. Gradients are in
the one parametrisation ``theta`` = (W_k, b_k), flattened per layer as
concat(W_k.reshape(-1), b_k).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...cases import ModelSpec, Table
from ...problem import Reference, pair_blocks
from ...schema import Key
from ..layered import (
    LayeredKind,
    LayeredModelSpec,
    head_outputs,
    head_targets,
    layered_keys,
    layered_model_keys,
)

if TYPE_CHECKING:
    from torch import Tensor

    from .model import SBN, Problem


@dataclass(frozen=True)
class SbnModelSpec(LayeredModelSpec):
    """``[model]`` of an SBN: ``LayeredModelSpec``'s keys, initialised by ``init`` = "ap2" (the
    seed study's data-dependent initialisation), "uniform" or "random" (N(0, scale^2/fan-in))."""


class SbnKind(LayeredKind["Problem", "SBN"]):
    """SBN classifiers with real weights (module docstring)."""

    name = "sbn"
    description = "an SBN with real weights"
    default_training = "reinforce"
    parametrisations = ("theta",)
    checkpoint_marker = None  # the seed authors' files carry no marker

    # ---- case files --------------------------------------------------------------------------

    def model_keys(self) -> tuple[Key, ...]:
        return layered_model_keys(inits=("ap2", "random", "uniform"), init="ap2")

    def parse_model(self, table: Table, common: dict[str, Any]) -> ModelSpec:
        return SbnModelSpec(**common, **layered_keys(table))

    # ---- problems ----------------------------------------------------------------------------

    def initial(
        self,
        spec: ModelSpec,
        widths: tuple[int, ...],
        X: Tensor,
        labels: Tensor,
        *,
        stored: bool,
        offset: int,
    ) -> tuple[SBN, Tensor]:
        import torch

        from .initialization import ap2_init, uniform_sbn
        from .model import random_sbn

        assert isinstance(spec, SbnModelSpec)
        out_dim = head_outputs(spec, labels, stored=stored)
        Y = head_targets(spec, labels, out_dim, stored=stored)
        g = torch.Generator().manual_seed(spec.seed + offset)
        coding, noise, head = spec.coding, spec.noise, spec.head
        if spec.init == "ap2":
            net = ap2_init(X, widths, out_dim, generator=g, coding=coding, noise=noise, head=head)
        elif spec.init == "uniform":
            net = uniform_sbn(
                X.shape[1], widths, out_dim, generator=g, coding=coding, noise=noise, head=head
            )
        else:
            net = random_sbn(
                X.shape[1],
                widths,
                out_dim,
                scale=spec.scale,
                generator=g,
                coding=coding,
                noise=noise,
                head=head,
            )
        return net, Y

    def load(
        self, spec: ModelSpec, path: Path, where: str
    ) -> tuple[SBN, tuple[Tensor, Tensor] | None]:
        """An SBN checkpoint stores no coding, noise or head: the case's are used."""
        from .checkpoint import load_checkpoint

        assert isinstance(spec, SbnModelSpec)
        ckpt = load_checkpoint(path)
        model = ckpt.model(coding=spec.coding, noise=spec.noise, head=spec.head)
        return model, (ckpt.data() if ckpt.X is not None else None)

    def read(
        self, path: Path, options: Mapping[str, str | None]
    ) -> tuple[SBN, tuple[Tensor, Tensor] | None]:
        """The file stores weights only: coding, noise and head are the options' (defaults
        {0,1}, logistic, logistic)."""
        from .checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        model = ckpt.model(
            coding=options.get("coding") or "01",
            noise=options.get("noise") or "logistic",
            head=options.get("head") or "logistic",
        )
        return model, (ckpt.data() if ckpt.X is not None else None)

    def save(self, path: Path, net: SBN, X: Tensor, Y: Tensor) -> None:
        from .checkpoint import save_checkpoint

        save_checkpoint(path, net, X, Y)

    def load_snapshot(self, path: Path, like: SBN) -> SBN:
        from ...checkpoint import other_snapshot
        from .checkpoint import load_checkpoint

        net = load_checkpoint(path).model(
            coding=like.coding, noise=like.noise.name, head=like.head.name
        )
        if net.layer_sizes != like.layer_sizes or net.input_dim != like.input_dim:
            raise other_snapshot(path, net, like)
        return net

    def problem(self, net: SBN, X: Tensor, Y: Tensor) -> Problem:
        from .model import Problem

        return Problem.create(net, X, Y)

    def network_type(self) -> type:
        from .model import SBN

        return SBN

    # ---- training ----------------------------------------------------------------------------

    def parameters(self, net: SBN) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        return net.weights, net.biases

    def with_parameters(
        self, net: SBN, thetas: tuple[Tensor, ...], biases: tuple[Tensor, ...]
    ) -> SBN:
        return net.replace(weights=thetas, biases=biases)

    # ---- exact reference ---------------------------------------------------------------------

    def reference(self, problem: Problem, memory_budget: int | None = None) -> Reference:
        from .exact import exact_gradient

        ex = exact_gradient(problem.model, problem.X, problem.Y, memory_budget=memory_budget)
        return Reference(
            float(ex.loss), {"theta": ex.flat()}, pair_blocks(problem.model.layer_sizes), {}
        )

    def gradient_arrays(
        self, problem: Problem, reference: Reference
    ) -> list[list[tuple[str, Tensor]]]:
        from .model import unflatten_layer

        out = []
        for v, W in zip(problem.split(reference.gradient()), problem.model.weights, strict=True):
            gW, gb = unflatten_layer(v, *W.shape)
            out.append([("dW", gW), ("db", gb)])
        return out

    def exact_gradient(self, problem: Problem) -> Tensor:
        from .exact import exact_gradient

        return exact_gradient(problem.model, problem.X, problem.Y).flat()

    def exact_bytes(self, net: SBN, n_points: int, memory_budget: int) -> int:
        from .exact import plan_exact

        return plan_exact(net.widths, n_points, net.out_dim, memory_budget=memory_budget).bytes

    def path_moments(self, estimator: Any, problem: Problem, context: Any, max_paths: int) -> Any:
        from .estimators.ops import PathEstimator
        from .moments import path_count, path_moments

        if not isinstance(estimator, PathEstimator) or path_count(problem) > max_paths:
            return None
        return path_moments(estimator, problem, context=context, max_paths=max_paths)

    def path_count(self, estimator: Any, net: SBN) -> int | None:
        from .estimators.ops import PathEstimator

        return 2 ** min(sum(net.widths), 64) if isinstance(estimator, PathEstimator) else None

    # ---- conformance -------------------------------------------------------------------------

    def check_problems(self) -> list[Problem]:
        """Two depth-3 networks (logistic noise; the softmax head is neither affine nor
        quadratic, so ST-type bias shows; n_L = 3 so PSA/SA bias shows in layer 0)."""
        import torch

        from .model import random_sbn

        out = []
        for seed, widths, coding, head, K in (
            (101, (3, 3, 3), "pm1", "softmax", 3),
            (202, (2, 3, 3), "01", "mse", 2),
        ):
            g = torch.Generator().manual_seed(seed)
            model = random_sbn(2, widths, K, generator=g, scale=1.3, coding=coding, head=head)
            X = torch.randn(3, 2, generator=g, dtype=torch.float64)
            Y = (
                torch.tensor([0.0, 2.0, 1.0])
                if head == "softmax"
                else torch.randn(3, K, generator=g, dtype=torch.float64)
            )
            out.append(self.problem(model, X, Y))
        return out

    def zero_loss_problem(self) -> Problem:
        """Squared error with zero read-out weights and the bias at the target: l = 0."""
        import torch

        from .model import SBN, get_head, get_noise, random_sbn

        f64 = torch.float64
        g = torch.Generator().manual_seed(7)
        base = random_sbn(2, (3, 2), 2, generator=g, coding="pm1", head="mse")
        target = torch.tensor([0.5, -1.0], dtype=f64)
        model = SBN(
            (*base.weights[:-1], torch.zeros(2, 2, dtype=f64)),
            (*base.biases[:-1], target),
            coding="pm1",
            noise=get_noise("logistic"),
            head=get_head("mse"),
        )
        X = torch.randn(3, 2, generator=g, dtype=f64)
        return self.problem(model, X, target.expand(3, 2))

    def estimators(self) -> list[type]:
        from .estimators import (
            learned,
            loo_cv,
            path_analytic,
            relaxed,
            score,
            score_noise,
            straight_through,
        )

        return [
            *score.ESTIMATORS,
            *score_noise.ESTIMATORS,
            *relaxed.ESTIMATORS,
            *straight_through.ESTIMATORS,
            *path_analytic.ESTIMATORS,
            *learned.ESTIMATORS,
            *loo_cv.ESTIMATORS,
        ]

    def reference_network(self) -> SBN:
        """The seed study's 2-5-5-5-1 architecture."""
        import torch

        from .model import random_sbn

        return random_sbn(2, (5, 5, 5), 1, generator=torch.Generator().manual_seed(0))
