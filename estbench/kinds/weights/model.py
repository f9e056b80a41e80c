"""SBNs with stochastic binary weights: the model, its activations, and its data batch.

A network has a real input x_0 in R^d, binary layers k = 1..L and a linear head, as in
``estbench.kinds.sbn.model``; what changes is that the weight matrix of a pair may be *stochastic*:

    W_ji = sign(eta_ji + L_ji),   L_ji i.i.d. ~ F_w symmetric,   independent over (j, i),

so W_ji in {-1, +1} with P(W_ji = +1) = P(L > -eta) = F_w(eta_ji), with the latent weights eta as
parameters. Their means are mu = E W = 2 F_w(eta) - 1 and d mu / d eta = 2 F_w'(eta). The
*weight noise* F_w (``weight_noise``) is a core noise object (``estbench.kinds.sbn.model.NOISES``):

* ``"logistic"`` (default): P(W = +1) = sigmoid(eta), mu = tanh(eta / 2),
  d mu / d eta = 2 sigmoid(eta) sigmoid(-eta) = (1 - mu^2) / 2.
* ``"uniform"`` (uniform on [-1, 1], the core convention): the *hard sigmoid*
  P(W = +1) = clip((eta + 1) / 2, 0, 1) of BinaryConnect's stochastic binarisation (Courbariaux,
  Bengio & David, arXiv 1511.00363: the binary weight is +1 with probability sigma(w) for the
  "hard sigmoid" sigma(x) = clip((x + 1)/2, 0, 1) of the real-valued weight w),
  mu = clip(eta, -1, 1) and d mu / d eta = 1[|eta| <= 1] (the core ``UniformNoise.pdf``, closed
  interval like torch.clamp's derivative: at the kinks |eta| = 1 the derivative does not exist and
  the inner one-sided value is used; the kinks have measure zero). With |eta| > 1 the weight is
  deterministic, W = sign(eta), and every gradient wrt that eta is 0.
* ``"gaussian"`` (standard normal): the *probit* weight P(W = +1) = Phi(eta),
  mu = erf(eta / sqrt 2), d mu / d eta = 2 phi(eta) -- smooth like the sigmoid, with lighter tails.

    a_k = W_{k-1} x_{k-1} + b_{k-1},   x_k on with probability F(a_k)   (stochastic activations)
                                       x_k on iff a_k >= 0                (``activation="sign"``)

Every pair k = 0..L has a *kind*: ``"bernoulli"`` (parameters eta_k, weights sampled) or
``"real"`` (parameters W_k, as in the core model). The head (pair L) is always real: its weights
enter the loss linearly, so the pathwise head gradient stays unbiased and no head marginal over
weights is needed. The first pair may be Bernoulli: its pre-activation sum_i W_ji x_0i takes at
most 2^d values for real inputs, which the exact solver enumerates (d <= ``MAX_BERNOULLI_INPUT``).
Biases are always real.

Sign activations use the tie rule sign(0) = +1 (unit on iff a >= 0), as in BinaryConnect and BNN.
With ±1 weights and binary inputs a pre-activation is an integer plus the bias, so ties do occur
when biases are integers (zero); the exact solver and the sampled forward pass use the same rule.
With sign activations the expected loss is piecewise constant in every real parameter that feeds
a sign (biases, a real first layer): their exact gradient is 0 almost everywhere, and only the
Bernoulli layers and the head have a gradient.

Parameters are flattened per layer exactly as in the core: ``layer k = concat(theta_k.reshape(-1),
b_k)`` with theta_k = eta_k (Bernoulli) or W_k (real), so a [S, P] tensor of estimates has the
same layout as for the core model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ...errors import ModelError
from ...problem import DataProblem
from ..sbn.model import (
    HEADS,
    NOISES,
    Coding,
    Head,
    Noise,
    check_coding,
    check_model_data,
    get_head,
    get_noise,
)

WeightKind = Literal["real", "bernoulli"]
KINDS: tuple[WeightKind, ...] = ("real", "bernoulli")
ACTIVATIONS = (*NOISES, "sign")
# Weight noises F_w with P(W = +1) = F_w(eta): the sigmoid, the hard sigmoid (uniform noise on
# [-1, 1], the core ``UniformNoise``) and the probit (the core ``GaussianNoise``).
WEIGHT_NOISES = ("logistic", "uniform", "gaussian")
MAX_BERNOULLI_INPUT = 16  # a Bernoulli first layer enumerates 2^d weight patterns per unit


def on_off(noise: Noise | None, a: Tensor) -> tuple[Tensor, Tensor]:
    """(P(on | a), P(off | a)). Noise: (F(a), F(-a)), accurate in both tails. Sign activations
    (``noise is None``): (1[a >= 0], 1[a < 0]), the tie rule sign(0) = +1."""
    if noise is None:
        on = (a >= 0).to(a.dtype)
        return on, 1 - on
    return noise.cdf(a), noise.cdf(-a)


@dataclass(frozen=True, eq=False)
class WeightSBN:
    """An SBN whose pairs have real or Bernoulli weights; see the module docstring.

    ``params[k]`` is eta_k (kind ``"bernoulli"``) or W_k (kind ``"real"``), shape [n_out, n_in];
    ``biases[k]`` [n_out]; pair k < L feeds binary layer k+1, pair L is the (real) head.
    ``noise`` is the activation noise, or None for deterministic sign activations;
    ``weight_noise`` the noise F_w of the Bernoulli weights, P(W = +1) = F_w(eta).
    """

    params: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]
    kinds: tuple[WeightKind, ...]
    coding: Coding = "01"
    noise: Noise | None = NOISES["logistic"]
    head: Head = HEADS["logistic"]
    weight_noise: Noise = NOISES["logistic"]

    def __post_init__(self) -> None:
        check_coding(self.coding)
        if self.weight_noise.name not in WEIGHT_NOISES:
            raise ModelError(
                f"unknown weight noise {self.weight_noise.name!r}; expected one of "
                f"{', '.join(WEIGHT_NOISES)}"
            )
        n = len(self.params)
        if len(self.biases) != n or len(self.kinds) != n:
            raise ModelError(
                f"{n} weight matrices, {len(self.biases)} bias vectors and {len(self.kinds)} "
                "kinds: one of each per pair"
            )
        if n < 2:
            raise ModelError("an SBN needs at least one binary layer and a head")
        for k, (W, b, kind) in enumerate(zip(self.params, self.biases, self.kinds, strict=True)):
            if kind not in KINDS:
                raise ModelError(f"kind of pair {k} is {kind!r}; expected one of {KINDS}")
            if W.dim() != 2:
                raise ModelError(f"weights of pair {k} must be a matrix, got {list(W.shape)}")
            if b.shape != (W.shape[0],):
                raise ModelError(
                    f"b{k} has shape {list(b.shape)}, expected [{W.shape[0]}] (rows of pair {k})"
                )
            if k > 0 and W.shape[1] != self.params[k - 1].shape[0]:
                raise ModelError(
                    f"pair {k} has shape {list(W.shape)}, expected [*, "
                    f"{self.params[k - 1].shape[0]}] (its input is layer {k})"
                )
        if self.kinds[-1] != "real":
            raise ModelError("the head (last pair) must have real weights")
        if self.kinds[0] == "bernoulli" and self.input_dim > MAX_BERNOULLI_INPUT:
            raise ModelError(
                f"a Bernoulli first layer enumerates 2^d weight patterns per unit; d = "
                f"{self.input_dim} > {MAX_BERNOULLI_INPUT}. Use a real first layer."
            )
        self.head.check_out_dim(self.out_dim)

    @classmethod
    def from_arrays(
        cls,
        params: Sequence[object],
        biases: Sequence[object],
        kinds: Sequence[str],
        *,
        coding: str = "01",
        activation: str = "logistic",
        head: str = "logistic",
        weight_noise: str = "logistic",
        dtype: torch.dtype = torch.float64,
    ) -> WeightSBN:
        return cls(
            tuple(torch.as_tensor(W, dtype=dtype) for W in params),
            tuple(torch.as_tensor(b, dtype=dtype) for b in biases),
            tuple(kinds),  # type: ignore[arg-type]
            check_coding(coding),
            get_activation(activation),
            get_head(head),
            get_weight_noise(weight_noise),
        )

    # ---- shape and metadata ------------------------------------------------------------------

    @property
    def depth(self) -> int:
        return len(self.params) - 1

    @property
    def input_dim(self) -> int:
        return self.params[0].shape[1]

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(W.shape[0] for W in self.params[:-1])

    @property
    def out_dim(self) -> int:
        return self.params[-1].shape[0]

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(f"layer{k}" for k in range(len(self.params)))

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return tuple(W.numel() + b.numel() for W, b in zip(self.params, self.biases, strict=True))

    @property
    def bernoulli_layers(self) -> tuple[int, ...]:
        return tuple(k for k, kind in enumerate(self.kinds) if kind == "bernoulli")

    @property
    def activation(self) -> str:
        return "sign" if self.noise is None else self.noise.name

    @property
    def dtype(self) -> torch.dtype:
        return self.params[0].dtype

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    def describe(self) -> str:
        arch = "-".join(str(n) for n in (self.input_dim, *self.widths, self.out_dim))
        kinds = "".join("B" if kind == "bernoulli" else "R" for kind in self.kinds)
        return (
            f"weight SBN {arch}, weights {kinds} (B Bernoulli, R real), coding {self.coding}, "
            f"activation {self.activation}, head {self.head.name}"
            + ("" if self.logistic_weights else f", weight noise {self.weight_noise.name}")
        )

    # ---- weight distribution -----------------------------------------------------------------

    @property
    def logistic_weights(self) -> bool:
        """Whether P(W = +1) = sigmoid(eta) (the default weight noise)."""
        return self.weight_noise.name == "logistic"

    def probs(self, k: int) -> tuple[Tensor, Tensor]:
        """(P(W_k = +1), P(W_k = -1)) = (F_w(eta_k), F_w(-eta_k)) of a Bernoulli pair, both
        accurate in the tails (sigmoid(eta), sigmoid(-eta) for the logistic weight noise)."""
        self._check_bernoulli(k)
        return self.weight_noise.cdf(self.params[k]), self.weight_noise.cdf(-self.params[k])

    def means(self, k: int) -> Tensor:
        """mu_k = E W_k = 2 F_w(eta_k) - 1 of a Bernoulli pair: tanh(eta_k / 2) (logistic),
        clip(eta_k, -1, 1) (uniform), erf(eta_k / sqrt 2) (gaussian)."""
        self._check_bernoulli(k)
        if self.logistic_weights:
            return torch.tanh(self.params[k] / 2)
        if self.weight_noise.name == "uniform":
            return self.params[k].clamp(-1.0, 1.0)
        return torch.erf(self.params[k] / math.sqrt(2))

    def weight_density(self, k: int) -> Tensor:
        """F_w'(eta_k) = dP(W = +1)/d eta, elementwise, of a Bernoulli pair: sigmoid(eta)
        sigmoid(-eta) (logistic), (1/2) 1[|eta| <= 1] (uniform)."""
        if self.logistic_weights:
            p, q = self.probs(k)
            return p * q
        self._check_bernoulli(k)
        return self.weight_noise.pdf(self.params[k])

    def mean_jacobian(self, k: int) -> Tensor:
        """d mu / d eta = 2 F_w'(eta), elementwise, of a Bernoulli pair: 2 sigmoid(eta)
        sigmoid(-eta) (logistic), 1[|eta| <= 1] (uniform)."""
        if self.logistic_weights:
            p, q = self.probs(k)
            return 2 * p * q
        return 2 * self.weight_density(k)

    def _check_bernoulli(self, k: int) -> None:
        if self.kinds[k] != "bernoulli":
            raise ModelError(f"pair {k} has real weights")

    # ---- data and conversions ----------------------------------------------------------------

    def check_data(self, X: object, Y: object) -> tuple[Tensor, Tensor]:
        """Inputs [N, d] and the head's canonical targets, in the model's dtype and device."""
        return check_model_data(self, X, Y)

    def replace(self, **changes: object) -> WeightSBN:
        fields = {
            f: getattr(self, f)
            for f in ("params", "biases", "kinds", "coding", "noise", "head", "weight_noise")
        }
        fields.update(changes)
        return WeightSBN(**fields)

    def to(
        self, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> WeightSBN:
        """The same network in another floating dtype and/or on another device."""
        return self.replace(
            params=tuple(W.to(device=device, dtype=dtype) for W in self.params),
            biases=tuple(b.to(device=device, dtype=dtype) for b in self.biases),
        )

    def with_weights(self, weights: Sequence[Tensor | None]):  # noqa: ANN201
        """The core SBN (``estbench.kinds.sbn.model.SBN``) with the Bernoulli pairs fixed to
        given ±1 weights (``weights[k]`` for Bernoulli k, None for real pairs). Needs stochastic
        activations."""
        from ..sbn.model import SBN

        if self.noise is None:
            raise ModelError("the core SBN has stochastic activations; this model uses sign")
        Ws = tuple(
            W if kind == "real" else weights[k]
            for k, (W, kind) in enumerate(zip(self.params, self.kinds, strict=True))
        )
        return SBN(Ws, self.biases, self.coding, self.noise, self.head)  # type: ignore[arg-type]


def get_weight_noise(name: str) -> Noise:
    """The weight noise F_w of that name (``WEIGHT_NOISES``): P(W = +1) = F_w(eta)."""
    if name not in WEIGHT_NOISES:
        raise ModelError(
            f"unknown weight noise {name!r}; expected one of {', '.join(WEIGHT_NOISES)}"
        )
    return get_noise(name)


def get_activation(name: str) -> Noise | None:
    """``"sign"`` -> None (deterministic), else the noise of that name."""
    if name == "sign":
        return None
    if name not in NOISES:
        raise ModelError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")
    return get_noise(name)


def random_weight_sbn(
    input_dim: int,
    widths: Sequence[int],
    out_dim: int = 1,
    *,
    generator: torch.Generator,
    kinds: Sequence[str] | None = None,
    eta_scale: float = 1.5,
    scale: float = 1.0,
    bias_scale: float = 0.5,
    coding: str = "01",
    activation: str = "logistic",
    head: str = "logistic",
    weight_noise: str = "logistic",
    dtype: torch.dtype = torch.float64,
) -> WeightSBN:
    """A random network: eta ~ N(0, eta_scale^2) for Bernoulli pairs, W ~ N(0, scale^2 / fan_in)
    for real pairs, b ~ N(0, bias_scale^2). Default kinds: real first layer and head, Bernoulli
    hidden pairs (the usual choice). ``weight_noise`` does not change the draws (the same eta for
    the same generator); with ``"uniform"`` a weight with |eta| > 1 is deterministic, a fraction
    2 Phi(-1 / eta_scale) of them (32% for eta_scale = 1, 5% for 0.5)."""
    noise_w = get_weight_noise(weight_noise)
    dims = [input_dim, *widths, out_dim]
    L = len(widths)
    if kinds is None:
        kinds = ["real"] + ["bernoulli"] * (L - 1) + ["real"]
    if len(kinds) != L + 1:
        raise ModelError(f"{len(kinds)} kinds for {L + 1} pairs")
    params = []
    for i, o, kind in zip(dims[:-1], dims[1:], kinds, strict=True):
        W = torch.randn(o, i, generator=generator, dtype=dtype)
        params.append(W * (eta_scale if kind == "bernoulli" else scale / i**0.5))
    biases = tuple(torch.randn(o, generator=generator, dtype=dtype) * bias_scale for o in dims[1:])
    return WeightSBN(
        tuple(params),
        biases,
        tuple(kinds),  # type: ignore[arg-type]
        check_coding(coding),
        get_activation(activation),
        get_head(head),
        noise_w,
    )


class WeightProblem(DataProblem[WeightSBN]):
    """A weight SBN with its data batch: what the ``weights`` kind's estimators and exact solver
    receive (``DataProblem``: ``model``, ``X`` [N, d], canonical targets ``Y``)."""
