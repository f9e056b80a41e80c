"""Variational autoencoders with Bernoulli latent layers (sigmoid belief networks): the model and
its data batch.

Data x in {0, 1}^D; latent layers z_1 .. z_L in {0, 1}^{n_k}; z_0 = x. Every factor is a product
of Bernoullis whose logits are a function of the layer it is conditioned on:

    encoder   q(z | x)  = q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1}),
              q(z_k | z_{k-1}) = prod_j Bern(z_kj; sigmoid(e_k(z_{k-1})_j)),
    decoder   p(x, z)   = p(z_L) p(z_{L-1} | z_L) ... p(x | z_1),
              p(z_L) = prod_j Bern(z_Lj; sigmoid(p_prior_j)),
              p(z_{k-1} | z_k) = prod_j Bern(z_{k-1,j}; sigmoid(d_k(z_k)_j)),

with log Bern(z; sigmoid(a)) = z a - softplus(a). The maps e_k, d_k are *linear*
(e_k(u) = q_W{k} u + q_b{k}, d_k(v) = p_W{k} v + p_b{k}) or, in the *nonlinear* model, MLPs with
deterministic tanh hidden layers of the sizes ``hidden`` (the same for every factor):
e_k(u) = q_W{k} h_m + q_b{k}, h_i = tanh(q_W{k}_h{i} h_{i-1} + q_b{k}_h{i}), h_0 = u. The
objective is the negative ELBO averaged over the data,

    J = -(1/N) sum_n E_{q(z | x_n)} [log p(x_n, z) - log q(z | x_n)].

Parameters are named as in the checkpoint format (``estbench.kinds.sbvae.checkpoint``):
``q_W{k}`` [n_k, n_{k-1}] / [n_k, h_m], ``q_b{k}`` [n_k], ``p_W{k}`` [n_{k-1}, n_k] /
[n_{k-1}, h_m], ``p_b{k}`` [n_{k-1}], hidden layers ``q_W{k}_h{i}``, ``q_b{k}_h{i}``,
``p_W{k}_h{i}``, ``p_b{k}_h{i}`` (i = 1..m), and ``p_prior`` [n_L]. Seen by the harness, every
linear map is a parameter *pair* (theta, b) = (W, b), in the order: encoder factors k = 1..L
(hidden layers first), decoder factors k = 1..L, and the prior as a pair with an empty theta; a
flat gradient is concat over pairs of (W.reshape(-1), b), row-major.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ...errors import ModelError
from ...problem import DataProblem

PRIOR = "p_prior"
SIDES = ("q", "p")  # encoder, decoder


def factor_keys(side: str, k: int, n_hidden: int) -> list[tuple[str, str]]:
    """(W key, b key) of factor k's linear maps, input side first: the hidden layers
    ``{side}_W{k}_h{i}`` (i = 1..n_hidden), then the output ``{side}_W{k}``."""
    hidden = [(f"{side}_W{k}_h{i}", f"{side}_b{k}_h{i}") for i in range(1, n_hidden + 1)]
    return [*hidden, (f"{side}_W{k}", f"{side}_b{k}")]


def pair_keys(depth: int, n_hidden: int) -> list[tuple[str | None, str]]:
    """Every parameter pair's (W key, b key) in flat order (module docstring); the prior's W key
    is None (an empty theta)."""
    out: list[tuple[str | None, str]] = []
    for side in SIDES:
        for k in range(1, depth + 1):
            out += factor_keys(side, k, n_hidden)
    out.append((None, PRIOR))
    return out


def shapes(
    data_dim: int, latent: tuple[int, ...], hidden: tuple[int, ...]
) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter key of a model (module docstring)."""
    sizes = (data_dim, *latent)
    out: dict[str, tuple[int, ...]] = {}
    for side in SIDES:
        for k in range(1, len(latent) + 1):
            n_in, n_out = (sizes[k - 1], sizes[k]) if side == "q" else (sizes[k], sizes[k - 1])
            dims = (n_in, *hidden, n_out)
            for (wk, bk), (a, b) in zip(
                factor_keys(side, k, len(hidden)), zip(dims, dims[1:], strict=False), strict=True
            ):
                out[wk], out[bk] = (b, a), (b,)
    out[PRIOR] = (latent[-1],)
    return out


def log_bernoulli(z: Tensor, logits: Tensor) -> Tensor:
    """log prod_j Bern(z_j; sigmoid(a_j)) = sum_j z_j a_j - softplus(a_j), over the last axis."""
    return (z * logits - torch.nn.functional.softplus(logits)).sum(-1)


@dataclass(frozen=True, eq=False)
class SBVAE:
    """A VAE with Bernoulli latent layers (module docstring): data width ``data_dim`` = D,
    ``latent`` widths (n_1, .., n_L), tanh ``hidden`` sizes of every factor (empty: the linear
    model), and ``params`` by checkpoint key.

    Seen as a network by the harness: ``input_dim`` = ``out_dim`` = D, ``widths`` the latent
    widths, ``layer_sizes`` the sizes of the parameter pairs and ``depth`` the index of the last
    pair (the prior), which is how the estimator contract counts pairs (``CLAIMS``)."""

    data_dim: int
    latent: tuple[int, ...]
    hidden: tuple[int, ...]
    params: Mapping[str, Tensor] = field(repr=False)

    def __post_init__(self) -> None:
        if self.data_dim < 1 or not self.latent or min(self.latent) < 1:
            raise ModelError(
                f"a VAE needs data width >= 1 and latent widths >= 1, got D = {self.data_dim}, "
                f"latent {list(self.latent)}"
            )
        if self.hidden and min(self.hidden) < 1:
            raise ModelError(f"hidden sizes must be >= 1, got {list(self.hidden)}")
        expected = shapes(self.data_dim, self.latent, self.hidden)
        if set(self.params) != set(expected):
            missing = sorted(set(expected) - set(self.params))
            extra = sorted(set(self.params) - set(expected))
            raise ModelError(
                f"parameters do not match the model: missing {missing}, unexpected {extra}"
            )
        for key, shape in expected.items():
            if tuple(self.params[key].shape) != shape:
                raise ModelError(
                    f"parameter {key} has shape {list(self.params[key].shape)}, expected "
                    f"{list(shape)}"
                )

    # ---- what the harness reads ----------------------------------------------------------------

    @property
    def depth(self) -> int:
        return len(self.pairs) - 1

    @property
    def n_latent(self) -> int:
        """L, the number of latent layers."""
        return len(self.latent)

    @property
    def input_dim(self) -> int:
        return self.data_dim

    @property
    def out_dim(self) -> int:
        return self.data_dim

    @property
    def widths(self) -> tuple[int, ...]:
        return self.latent

    @property
    def pairs(self) -> list[tuple[str | None, str]]:
        return pair_keys(self.n_latent, len(self.hidden))

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return tuple(
            (0 if w is None else self.params[w].numel()) + self.params[b].numel()
            for w, b in self.pairs
        )

    @property
    def keys(self) -> list[str]:
        """Every parameter key in flat order."""
        return [k for pair in self.pairs for k in pair if k is not None]

    @property
    def dtype(self) -> torch.dtype:
        return self.params[PRIOR].dtype

    @property
    def device(self) -> torch.device:
        return self.params[PRIOR].device

    @property
    def linear(self) -> bool:
        return not self.hidden

    def describe(self) -> str:
        arch = "linear" if self.linear else f"nonlinear (tanh hidden {list(self.hidden)})"
        return f"SBN VAE {self.data_dim}-{'-'.join(map(str, self.latent))}, {arch}"

    # ---- the factors ---------------------------------------------------------------------------

    def _mlp(self, side: str, k: int, u: Tensor) -> Tensor:
        keys = factor_keys(side, k, len(self.hidden))
        h = u
        for i, (wk, bk) in enumerate(keys):
            h = h @ self.params[wk].T + self.params[bk]
            if i < len(keys) - 1:
                h = torch.tanh(h)
        return h

    def encoder_logits(self, k: int, below: Tensor) -> Tensor:
        """Logits of q(z_k | z_{k-1}) for z_{k-1} = ``below`` [..., n_{k-1}] (k = 1..L)."""
        return self._mlp("q", k, below)

    def decoder_logits(self, k: int, above: Tensor) -> Tensor:
        """Logits of p(z_{k-1} | z_k) for z_k = ``above`` [..., n_k] (k = 1..L; z_0 = x)."""
        return self._mlp("p", k, above)

    @property
    def prior_logits(self) -> Tensor:
        return self.params[PRIOR]

    def log_joint(self, x: Tensor, z: list[Tensor]) -> Tensor:
        """log p(x, z) for x [..., D] and z = [z_1, .., z_L], broadcasting."""
        out = log_bernoulli(z[-1], self.prior_logits)
        below = [x, *z[:-1]]
        for k in range(1, self.n_latent + 1):
            out = out + log_bernoulli(below[k - 1], self.decoder_logits(k, z[k - 1]))
        return out

    def log_posterior(self, x: Tensor, z: list[Tensor]) -> Tensor:
        """log q(z | x) for x [..., D] and z = [z_1, .., z_L], broadcasting."""
        below = [x, *z[:-1]]
        out = log_bernoulli(z[0], self.encoder_logits(1, x))
        for k in range(2, self.n_latent + 1):
            out = out + log_bernoulli(z[k - 1], self.encoder_logits(k, below[k - 1]))
        return out

    # ---- data and copies -----------------------------------------------------------------------

    def check_data(self, X: object, Y: object) -> tuple[Tensor, Tensor]:
        """X [N, D] in {0, 1} (N >= 1) in the model's dtype and device; Y is not read (a VAE has
        no targets): [N, 0] zeros."""
        X = torch.as_tensor(X)
        if X.dim() != 2 or X.shape[1] != self.data_dim or X.shape[0] < 1:
            raise ModelError(f"X has shape {list(X.shape)}, expected [N >= 1, {self.data_dim}]")
        X = X.to(dtype=self.dtype, device=self.device)
        bad = (X != 0) & (X != 1)
        if bool(bad.any()):
            index = [int(i) for i in torch.nonzero(bad)[0]]
            raise ModelError(
                f"X must be binary (0 or 1), found {float(X[tuple(index)])} at index {index}"
            )
        return X, X.new_zeros(X.shape[0], 0)

    def replace(self, params: Mapping[str, Tensor]) -> SBVAE:
        return SBVAE(self.data_dim, self.latent, self.hidden, dict(params))

    def to(self, *, dtype: Any = None, device: Any = None) -> SBVAE:
        return self.replace({k: v.to(dtype=dtype, device=device) for k, v in self.params.items()})

    def flat(self, values: Mapping[str, Tensor] | None = None) -> Tensor:
        """concat over pairs of (W.reshape(-1), b) of ``values`` (default: the parameters)."""
        values = self.params if values is None else values
        return torch.cat([values[k].reshape(-1) for k in self.keys])

    def unflat(self, flat: Tensor) -> dict[str, Tensor]:
        """A flat vector [P] as one tensor per key, in the keys' shapes."""
        out, start = {}, 0
        for k in self.keys:
            p = self.params[k]
            out[k] = flat[start : start + p.numel()].view(p.shape)
            start += p.numel()
        return out


def random_sbvae(
    data_dim: int,
    latent: tuple[int, ...],
    hidden: tuple[int, ...] = (),
    *,
    generator: torch.Generator,
    scale: float = 1.0,
    data_mean: Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> SBVAE:
    """Weights ~ N(0, scale^2 / fan-in), biases and prior logits 0; with ``data_mean`` [D] the
    decoder's output bias p_b1 is its logit (clipped to [1e-3, 1 - 1e-3]), the usual start of
    the VAE literature (e.g. Mnih & Gregor, ICML 2014, and the REBAR code), so that training
    does not first spend its steps on the pixel means."""
    params: dict[str, Tensor] = {}
    for key, shape in shapes(data_dim, tuple(latent), tuple(hidden)).items():
        if len(shape) == 2:
            std = scale / math.sqrt(shape[1])
            params[key] = std * torch.randn(*shape, generator=generator, dtype=dtype)
        else:
            params[key] = torch.zeros(*shape, dtype=dtype)
    if data_mean is not None:
        m = torch.as_tensor(data_mean, dtype=dtype).clamp(1e-3, 1 - 1e-3)
        params["p_b1"] = torch.log(m) - torch.log1p(-m)
    return SBVAE(data_dim, tuple(latent), tuple(hidden), params)


class VAEProblem(DataProblem[SBVAE]):
    """A VAE with its data batch: ``model``, binary ``X`` [N, D], and ``Y`` [N, 0] (no targets;
    kept so that every kind's problem slices the same way in training)."""
