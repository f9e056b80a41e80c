"""The layered stochastic binary network (SBN): noise, state coding, head and parameters.

A network has a real input x_0 in R^d, binary layers k = 1..L and a linear head:

    a_k = W_{k-1} x_{k-1} + b_{k-1},    x_k = sign(a_k - z_k),    z_k i.i.d. with CDF F,

so that P(unit j of layer k is on) = F(a_kj) and the units of a layer are independent given the
layer below. The head reads z = W_L x_L + b_L and scores it with a per-point loss.

Indices follow the checkpoint files: the parameter pair (W_k, b_k) with k = 0..L-1 feeds binary
layer k+1, and (W_L, b_L) is the head. "layer k" in every report means that pair, flattened as
``concat(W_k.reshape(-1), b_k)`` (row-major, out x in), in the order layer0, ..., layerL.

The state coding is part of the model: with ``pm1`` an "on" unit is +1 and an "off" unit -1; with
``01`` they are 1 and 0 (the seed networks). A pm1 network (W, c) computes the same function as the
01 network (2W, c - W 1) downstream of a binary layer, so the two codings parametrise the same
family differently and have different parameter gradients (spec §1.1, pitfall P1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import torch
from torch import Tensor

from ...errors import ModelError
from ...problem import DataProblem

Coding = Literal["pm1", "01"]
CODINGS: tuple[Coding, ...] = ("pm1", "01")


# --------------------------------------------------------------------------------------------
# Noise: the CDF F of z, so that P(on | a) = F(a). All three are symmetric, F(-a) = 1 - F(a).
# --------------------------------------------------------------------------------------------


class Noise(Protocol):
    name: str

    def cdf(self, a: Tensor) -> Tensor:
        """F(a) = P(z < a)."""
        ...

    def pdf(self, a: Tensor) -> Tensor:
        """F'(a)."""
        ...

    def hazard(self, a: Tensor) -> Tensor:
        """F'(a) / F(a) = d log F(a) / da, computed stably; 0 where F(a) = 0."""
        ...

    def icdf(self, u: Tensor) -> Tensor:
        """F^{-1}(u), for sampling z by inversion."""
        ...

    def pdf_given(self, a: Tensor, p: Tensor) -> Tensor:
        """F'(a) when p = F(a) is already known (cheaper for logistic noise)."""
        ...

    def score(self, a: Tensor, p: Tensor, bits: Tensor) -> Tensor:
        """d log P(b | a) / da = h(a) if b = 1, -h(-a) if b = 0, given p = F(a)."""
        ...


class _NoiseBase:
    def pdf_given(self, a: Tensor, p: Tensor) -> Tensor:
        return self.pdf(a)  # type: ignore[attr-defined]

    def score(self, a: Tensor, p: Tensor, bits: Tensor) -> Tensor:
        return torch.where(bits == 1, self.hazard(a), -self.hazard(-a))  # type: ignore[attr-defined]


class LogisticNoise(_NoiseBase):
    """Standard logistic noise: F = sigmoid, F' = sigmoid(a) sigmoid(-a)."""

    name = "logistic"

    def pdf_given(self, a: Tensor, p: Tensor) -> Tensor:
        return (1 - p).mul_(p)  # = p (1 - p) bit for bit, without a second temporary

    def score(self, a: Tensor, p: Tensor, bits: Tensor) -> Tensor:
        return bits - p

    def cdf(self, a: Tensor) -> Tensor:
        return torch.sigmoid(a)

    def pdf(self, a: Tensor) -> Tensor:
        return torch.sigmoid(a) * torch.sigmoid(-a)

    def hazard(self, a: Tensor) -> Tensor:
        return torch.sigmoid(-a)

    def icdf(self, u: Tensor) -> Tensor:
        return torch.logit(u)


class GaussianNoise(_NoiseBase):
    """Standard normal noise: F = Phi, F' = phi."""

    name = "gaussian"
    _log_sqrt_2pi = 0.5 * math.log(2 * math.pi)

    def cdf(self, a: Tensor) -> Tensor:
        return torch.special.ndtr(a)

    def pdf(self, a: Tensor) -> Tensor:
        return torch.exp(-0.5 * a * a - self._log_sqrt_2pi)

    def hazard(self, a: Tensor) -> Tensor:
        # The inverse Mills ratio; log_ndtr keeps it finite far in the lower tail.
        return torch.exp(-0.5 * a * a - self._log_sqrt_2pi - torch.special.log_ndtr(a))

    def icdf(self, u: Tensor) -> Tensor:
        return torch.special.ndtri(u)


class UniformNoise(_NoiseBase):
    """Uniform noise on [-1, 1]: F(a) = clip((a + 1) / 2, 0, 1), F' = 1/2 on [-1, 1].

    Its principled straight-through proxy is the hardtanh derivative (spec §4.1).
    """

    name = "uniform"

    def cdf(self, a: Tensor) -> Tensor:
        return ((a + 1) / 2).clamp(0.0, 1.0)

    def pdf(self, a: Tensor) -> Tensor:
        # Closed interval, as torch.clamp's derivative; the boundary has measure zero.
        return 0.5 * (a.abs() <= 1).to(a.dtype)

    def hazard(self, a: Tensor) -> Tensor:
        on = a > -1
        return torch.where(on, self.pdf(a) / torch.where(on, self.cdf(a), 1.0), 0.0)

    def icdf(self, u: Tensor) -> Tensor:
        return 2 * u - 1


NOISES: dict[str, Noise] = {n.name: n for n in (LogisticNoise(), GaussianNoise(), UniformNoise())}


# --------------------------------------------------------------------------------------------
# Heads: a linear read-out z = W_L x_L + b_L scored by a per-point loss l(z, y).
# z has shape [..., N, K]; targets have shape [N] (labels) or [N, K] (real targets).
# --------------------------------------------------------------------------------------------


class Head(Protocol):
    name: str

    def check_out_dim(self, out_dim: int) -> None:
        """Raise ModelError unless the head can read ``out_dim`` outputs."""
        ...

    def targets(self, Y: Tensor, out_dim: int) -> Tensor:
        """Validate targets for ``out_dim`` outputs and return them in canonical form."""
        ...

    def loss(self, z: Tensor, y: Tensor) -> Tensor:
        """Per-point loss, shape z.shape[:-1]."""
        ...

    def grad(self, z: Tensor, y: Tensor) -> Tensor:
        """dl/dz, shape z.shape."""
        ...


def _as_column_labels(Y: Tensor, what: str) -> Tensor:
    if Y.dim() == 2 and Y.shape[1] == 1:
        Y = Y[:, 0]
    if Y.dim() != 1:
        raise ModelError(
            f"targets for the {what} head must have shape [N] or [N, 1], got {list(Y.shape)}"
        )
    return Y


class LogisticHead:
    """Logistic NLL with labels y in {-1, +1}: l(z, y) = log(1 + exp(-y z)) (the seed study's)."""

    name = "logistic"

    def check_out_dim(self, out_dim: int) -> None:
        if out_dim != 1:
            raise ModelError(f"the logistic head needs 1 output, the network has {out_dim}")

    def targets(self, Y: Tensor, out_dim: int) -> Tensor:
        self.check_out_dim(out_dim)
        Y = _as_column_labels(Y, self.name)
        bad = (Y != 1) & (Y != -1)
        if bad.any():
            raise ModelError(
                f"the logistic head needs labels in {{-1, +1}}, found {Y[bad][0].item()!r} "
                f"at index {int(bad.nonzero()[0, 0])}"
            )
        return Y

    def loss(self, z: Tensor, y: Tensor) -> Tensor:
        return torch.nn.functional.softplus(-y * z[..., 0])

    def grad(self, z: Tensor, y: Tensor) -> Tensor:
        return (-y * torch.sigmoid(y * -z[..., 0]))[..., None]


class SoftmaxHead:
    """Softmax cross-entropy with class labels y in {0, ..., K-1}: l = logsumexp(z) - z_y."""

    name = "softmax"

    def check_out_dim(self, out_dim: int) -> None:
        if out_dim < 2:
            raise ModelError(
                f"the softmax head needs at least 2 outputs, the network has {out_dim}"
            )

    def targets(self, Y: Tensor, out_dim: int) -> Tensor:
        self.check_out_dim(out_dim)
        Y = _as_column_labels(Y, self.name)
        labels = Y.round()
        bad = (labels != Y) | (labels < 0) | (labels >= out_dim)
        if bad.any():
            raise ModelError(
                f"the softmax head needs integer labels in 0..{out_dim - 1}, found "
                f"{Y[bad][0].item()!r} at index {int(bad.nonzero()[0, 0])}"
            )
        return labels.long()

    def _picked(self, z: Tensor, y: Tensor) -> Tensor:
        shape = _broadcast_shapes(z.shape[:-1], y.shape)
        return z.expand(*shape, z.shape[-1]).gather(-1, y.expand(shape).unsqueeze(-1))[..., 0]

    def loss(self, z: Tensor, y: Tensor) -> Tensor:
        return torch.logsumexp(z, -1) - self._picked(z, y)

    def grad(self, z: Tensor, y: Tensor) -> Tensor:
        onehot = torch.nn.functional.one_hot(y, z.shape[-1]).to(z.dtype)
        return torch.softmax(z, -1) - onehot


def _broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """torch.broadcast_shapes without its first-call import of torch.fx's symbolic shapes
    (about 0.5 s, paid by every process that evaluates a softmax head)."""
    ndim = max(len(s) for s in shapes)
    out = []
    for dims in zip(*((1,) * (ndim - len(s)) + tuple(s) for s in shapes), strict=True):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise RuntimeError(f"shapes {[list(s) for s in shapes]} cannot be broadcast together")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


class MSEHead:
    """Squared error with real targets: l(z, y) = ||z - y||^2 (no factor 1/2)."""

    name = "mse"

    def check_out_dim(self, out_dim: int) -> None:
        if out_dim < 1:
            raise ModelError("the mse head needs at least 1 output")

    def targets(self, Y: Tensor, out_dim: int) -> Tensor:
        if Y.dim() == 1:
            Y = Y[:, None]
        if Y.dim() != 2 or Y.shape[1] != out_dim:
            raise ModelError(
                f"targets for the mse head must have shape [N, {out_dim}], got {list(Y.shape)}"
            )
        if not torch.isfinite(Y).all():
            raise ModelError("targets for the mse head must be finite")
        return Y

    def loss(self, z: Tensor, y: Tensor) -> Tensor:
        return ((z - y) ** 2).sum(-1)

    def grad(self, z: Tensor, y: Tensor) -> Tensor:
        return 2 * (z - y)


HEADS: dict[str, Head] = {h.name: h for h in (LogisticHead(), SoftmaxHead(), MSEHead())}


_T = TypeVar("_T")


def _lookup(table: Mapping[str, _T], kind: str, name: str) -> _T:
    try:
        return table[name]
    except KeyError:
        raise ModelError(f"unknown {kind} {name!r}; expected one of {', '.join(table)}") from None


def get_noise(name: str) -> Noise:
    return _lookup(NOISES, "noise", name)


def get_head(name: str) -> Head:
    return _lookup(HEADS, "head", name)


def check_coding(coding: str) -> Coding:
    if coding not in CODINGS:
        raise ModelError(f"unknown coding {coding!r}; expected one of {', '.join(CODINGS)}")
    return coding


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def state_bits(
    n: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> Tensor:
    """All 2^n binary states as a [2^n, n] 0/1 matrix; state index t has unit 0 as its top bit.

    This is the row-major order of a [2] * n tensor, the order in which the exact solver builds
    transition tables as outer products of per-unit factors.
    """
    t = torch.arange(2**n, device=device)
    shifts = torch.arange(n - 1, -1, -1, device=device)
    return ((t[:, None] >> shifts) & 1).to(dtype)


def encode(bits: Tensor, coding: Coding) -> Tensor:
    """Map 0/1 bits to the values a layer passes on: {0, 1} or {-1, +1}."""
    return bits if coding == "01" else 2 * bits - 1


def coding_scale(coding: str) -> float:
    """What an "on" unit passes on minus what an "off" one does, = d E[x] / d P(on): 2 for +-1
    states (E x = 2F - 1), 1 for {0,1} states (E b = F)."""
    return 2.0 if coding == "pm1" else 1.0


@dataclass(frozen=True, eq=False)
class SBN:
    """A layered SBN. ``weights[k], biases[k]`` for k < L feed binary layer k+1; the last pair is
    the head. Shapes: W_0 [n_1, d], W_k [n_{k+1}, n_k], W_L [K, n_L], b_k [rows of W_k]."""

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]
    coding: Coding = "01"
    noise: Noise = NOISES["logistic"]
    head: Head = HEADS["logistic"]

    def __post_init__(self) -> None:
        check_coding(self.coding)
        if len(self.weights) != len(self.biases):
            raise ModelError(
                f"{len(self.weights)} weight matrices but {len(self.biases)} bias vectors"
            )
        if len(self.weights) < 2:
            raise ModelError("an SBN needs at least one binary layer and a head (W0, b0, W1, b1)")
        for k, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if W.dim() != 2:
                raise ModelError(f"W{k} must be a matrix, got shape {list(W.shape)}")
            if b.shape != (W.shape[0],):
                raise ModelError(
                    f"b{k} has shape {list(b.shape)}, expected [{W.shape[0]}] (rows of W{k})"
                )
            if k > 0 and W.shape[1] != self.weights[k - 1].shape[0]:
                raise ModelError(
                    f"W{k} has shape {list(W.shape)}, expected [*, {self.weights[k - 1].shape[0]}] "
                    f"(its input is layer {k} of width {self.weights[k - 1].shape[0]})"
                )
        self.head.check_out_dim(self.weights[-1].shape[0])

    @classmethod
    def from_arrays(
        cls,
        weights: Sequence[object],
        biases: Sequence[object],
        *,
        coding: str = "01",
        noise: str = "logistic",
        head: str = "logistic",
        dtype: torch.dtype = torch.float64,
    ) -> SBN:
        return cls(
            tuple(torch.as_tensor(W, dtype=dtype) for W in weights),
            tuple(torch.as_tensor(b, dtype=dtype) for b in biases),
            check_coding(coding),
            get_noise(noise),
            get_head(head),
        )

    @property
    def depth(self) -> int:
        """L, the number of binary layers."""
        return len(self.weights) - 1

    @property
    def input_dim(self) -> int:
        return self.weights[0].shape[1]

    @property
    def widths(self) -> tuple[int, ...]:
        """(n_1, ..., n_L)."""
        return tuple(W.shape[0] for W in self.weights[:-1])

    @property
    def out_dim(self) -> int:
        return self.weights[-1].shape[0]

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(f"layer{k}" for k in range(len(self.weights)))

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Length of each flattened layer vector concat(vec W_k, b_k)."""
        return tuple(W.numel() + b.numel() for W, b in zip(self.weights, self.biases, strict=True))

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    def check_data(self, X: object, Y: object) -> tuple[Tensor, Tensor]:
        """Inputs [N, d] and the head's canonical targets, in the model's dtype and device."""
        return check_model_data(self, X, Y)

    def replace(self, **changes: object) -> SBN:
        fields = {f: getattr(self, f) for f in ("weights", "biases", "coding", "noise", "head")}
        fields.update(changes)
        return SBN(**fields)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> SBN:
        return self.replace(
            weights=tuple(W.to(device=device, dtype=dtype) for W in self.weights),
            biases=tuple(b.to(device=device, dtype=dtype) for b in self.biases),
        )

    def describe(self) -> str:
        arch = "-".join(str(n) for n in (self.input_dim, *self.widths, self.out_dim))
        return f"SBN {arch}, coding {self.coding}, noise {self.noise.name}, head {self.head.name}"


# --------------------------------------------------------------------------------------------
# Per-layer flattening and coding conversion
# --------------------------------------------------------------------------------------------


class Problem(DataProblem[SBN]):
    """An SBN with its data batch: what the ``sbn`` kind's estimators and exact solver receive
    (``DataProblem``: ``model``, ``X`` [N, d], canonical targets ``Y``)."""


def check_model_data(model: Any, X: object, Y: object) -> tuple[Tensor, Tensor]:
    """Inputs [N, d] and the head's canonical targets in the model's dtype and device, for any
    model with ``input_dim``, ``out_dim``, ``head``, ``dtype`` and ``device`` (SBN, WeightSBN)."""
    X = torch.as_tensor(X, dtype=model.dtype, device=model.device)
    if X.dim() != 2 or X.shape[1] != model.input_dim:
        raise ModelError(f"X must have shape [N, {model.input_dim}], got {list(X.shape)}")
    y = model.head.targets(
        torch.as_tensor(Y, dtype=model.dtype, device=model.device), model.out_dim
    )
    if y.shape[0] != X.shape[0]:
        raise ModelError(f"X has {X.shape[0]} points but the targets have {y.shape[0]}")
    return X, y


def flatten_layer(W: Tensor, b: Tensor) -> Tensor:
    """concat(W.reshape(-1) row-major, b) over the trailing dimensions; leading ones are kept."""
    lead = W.shape[:-2]
    return torch.cat((W.reshape(*lead, -1), b), dim=-1)


def flatten_layers(pairs: Sequence[tuple[Tensor, Tensor]]) -> list[Tensor]:
    """[(W_k, b_k)] -> [layer vector k], the per-layer flattening every report uses."""
    return [flatten_layer(W, b) for W, b in pairs]


def unflatten_layer(v: Tensor, out_dim: int, in_dim: int) -> tuple[Tensor, Tensor]:
    lead = v.shape[:-1]
    W = v[..., : out_dim * in_dim].reshape(*lead, out_dim, in_dim)
    return W, v[..., out_dim * in_dim :]


def convert_coding(model: SBN, coding: str) -> SBN:
    """The same network (same distribution of outputs) in the other state coding.

    Every pair fed by a binary layer changes: pm1 (W, c) equals 01 (2W, c - W 1). The first pair
    reads the real input and is unchanged.
    """
    coding = check_coding(coding)
    if coding == model.coding:
        return model
    weights, biases = [model.weights[0]], [model.biases[0]]
    for W, c in zip(model.weights[1:], model.biases[1:], strict=True):
        if coding == "01":  # from pm1
            weights.append(2 * W)
            biases.append(c - W.sum(1))
        else:  # from 01: W01 = 2 W, c01 = c - W 1
            weights.append(W / 2)
            biases.append(c + W.sum(1) / 2)
    return model.replace(weights=tuple(weights), biases=tuple(biases), coding=coding)


def random_sbn(
    input_dim: int,
    widths: Sequence[int],
    out_dim: int = 1,
    *,
    generator: torch.Generator,
    scale: float = 1.0,
    bias_scale: float = 0.5,
    coding: str = "01",
    noise: str = "logistic",
    head: str = "logistic",
    dtype: torch.dtype = torch.float64,
) -> SBN:
    """A network with W_k ~ N(0, scale^2 / fan_in) and b_k ~ N(0, bias_scale^2).

    With scale around 1-1.5 the units are neither saturated nor all near 1/2 (spec §5.3).
    """
    dims = [input_dim, *widths, out_dim]
    weights = tuple(
        torch.randn(o, i, generator=generator, dtype=dtype) * (scale / i**0.5)
        for i, o in zip(dims[:-1], dims[1:], strict=True)
    )
    biases = tuple(torch.randn(o, generator=generator, dtype=dtype) * bias_scale for o in dims[1:])
    return SBN(weights, biases, check_coding(coding), get_noise(noise), get_head(head))
