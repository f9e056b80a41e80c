"""What the layered kinds (``sbn``, ``weights``) share: networks of binary layers read by a head.

Their ``[model]`` tables have the keys of ``LayeredModelSpec`` (states coding, activation noise,
head and its outputs, initialisation); their data are class labels (targets made for the head) or
targets stored in a data file; and a point needs at least its data, its parameters and one
layer's marginals over 2^width states per data point (``size_floor``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cases import ModelSpec, Table
from ..problem import N, P, ProblemKind
from ..schema import Key

if TYPE_CHECKING:
    from torch import Tensor

# The exact gradient: one element of a layer-to-layer transition table per data point, forward
# and backward (from the width-12 x depth-8 benchmark: 1.2 s for 100 points x 7 x 2^24).
SECONDS_PER_TABLE_ELEMENT = 1e-10


@dataclass(frozen=True)
class LayeredModelSpec(ModelSpec):
    """``[model]`` of a layered network: ``coding`` of the states ("01" or "pm1"), activation
    ``noise``, ``head`` with ``outputs`` (default: from the data), ``init`` and its ``scale``."""

    coding: str = "01"
    noise: str = "logistic"
    head: str = "logistic"
    outputs: int | None = None
    init: str = "ap2"
    scale: float = 1.0


def layered_model_keys(*, inits: tuple[str, ...], init: str) -> tuple[Key, ...]:
    """The declared ``LayeredModelSpec`` keys of a ``[model]`` table (``inits``: the
    initialisations the kind offers, ``init`` the default)."""
    from .sbn.model import CODINGS, HEADS, NOISES

    return (
        Key("coding", "str", "01", choices=CODINGS, help="the states: 01 or pm1 (-1/+1)"),
        Key("noise", "str", "logistic", choices=tuple(NOISES), help="the activation noise"),
        Key("head", "str", "logistic", choices=tuple(HEADS), help="the output head and its loss"),
        Key(
            "outputs",
            "int",
            check=lambda v: v > 0,
            accepts="a positive integer",
            default_text="from the data",
            help="the head's outputs",
        ),
        Key("init", "str", init, choices=inits, help="the initialisation"),
        Key(
            "scale",
            "float",
            1.0,
            check=lambda v: v > 0,
            accepts="a number > 0",
            help="scale of the initialisation",
        ),
    )


def layered_keys(table: Table) -> dict[str, Any]:
    """The ``LayeredModelSpec`` keys of a ``[model]`` table (declared by
    ``layered_model_keys``)."""
    return {
        name: table.get(name) for name in ("coding", "noise", "head", "outputs", "init", "scale")
    }


def head_outputs(spec: LayeredModelSpec, labels: Tensor, *, stored: bool) -> int:
    """The head's output count: ``outputs``, else one per stored target column, else what the
    head needs for the data's classes (1 for the logistic head)."""
    if spec.outputs:
        return spec.outputs
    if stored:
        return labels.shape[1] if labels.dim() == 2 else 1
    return 1 if spec.head == "logistic" else max(int(labels.max()) + 1, 2)


def head_targets(spec: LayeredModelSpec, labels: Tensor, out_dim: int, *, stored: bool) -> Tensor:
    """Targets of the head: as stored in a data file, or made from class labels."""
    from ..data import targets_for_head

    return labels if stored else targets_for_head(labels, spec.head, out_dim)


def size_floor(width: int, depth: int, n_points: int, input_dim: int, out_dim: int) -> int:
    """A lower bound in bytes on a point beyond its inputs: its targets, its parameters and one
    layer's marginals over 2^width states per data point (``width``: the widest layer) -- exact
    integers, so a size of 10^30 cannot overflow (past 2^64 states the bound is over any budget
    anyway)."""
    params = depth * width * width + width * (input_dim + out_dim)
    return 8 * (n_points * (out_dim + 2 ** min(width, 64)) + params)


class LayeredKind(ProblemKind[P, N]):
    """What the layered kinds' ``ProblemKind`` methods share: targets for the head, the memory
    floor of a point, the time of the layer-wise forward algorithm, and describing a network.
    Their networks have ``out_dim``, ``widths``, ``input_dim`` and ``describe()``."""

    def targets(self, spec: ModelSpec, net: N, labels: Tensor, *, stored: bool) -> Tensor:
        assert isinstance(spec, LayeredModelSpec)
        return head_targets(spec, labels, net.out_dim, stored=stored)  # type: ignore[attr-defined]

    def describe(self, net: N) -> str:
        return str(net.describe())  # type: ignore[attr-defined]

    def size_floor(
        self, spec: ModelSpec, width: int, depth: int, n_points: int, input_dim: int, classes: int
    ) -> int:
        assert isinstance(spec, LayeredModelSpec)
        return size_floor(width, depth, n_points, input_dim, spec.outputs or classes)

    def exact_seconds(self, net: N, n_points: int) -> float:
        """Both solvers run the layer-wise forward algorithm over 2^n states per layer."""
        sizes = [2**n for n in net.widths]  # type: ignore[attr-defined]
        tables = sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))
        input_dim: int = net.input_dim  # type: ignore[attr-defined]
        return SECONDS_PER_TABLE_ELEMENT * n_points * (tables + sizes[0] * input_dim)
