"""Checkpoints of stochastic-binary-weight models: the ``.npz`` format of ``estbench.checkpoint``
with a marker and the model's own settings.

Keys:

* ``estbench_model = "weight-sbn"``: the marker (0-d string). ``estbench.load_checkpoint``
  refuses a file with it, and ``load_weight_checkpoint`` a file without it, naming the file.
* ``eta{k}`` (a Bernoulli pair: the latent weights, P(W = +1) = F_w(eta)) or ``W{k}`` (a real
  pair), and ``b{k}``, for k = 0..L (pair L is the head, always real): the key names carry the
  kinds, so latent weights are never read as real ones.
* ``coding``, ``activation`` (a noise name or ``"sign"``), ``head``: 0-d strings. Unlike an SBN
  checkpoint, a weight checkpoint states them (a network trained with sign activations is a
  different network with logistic ones); a case that loads one must state the same.
* ``weight_noise``: 0-d string, the weight noise F_w (``"logistic"``: P(W = +1) = sigmoid(eta);
  ``"gaussian"``: Phi(eta); ``"uniform"``: the hard sigmoid clip((eta + 1)/2, 0, 1)). Always
  written; a file without it (written before the key existed) is read as ``"logistic"``, the
  only weight model then.
* optional ``X`` [N, d], ``Y`` [N] or [N, k]: the data, as in the core format.

Arrays are stored as they are (float64 in estbench), so a save/load round trip is bit-identical.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...checkpoint import (
    MODEL_KEY,
    check_data,
    check_pair,
    checkpoint_kind_of,
    data_arrays,
    read_npz,
    stored_data,
    string_value,
    write_npz,
)
from ...errors import CheckpointError, ModelError
from ...shipped import resolve_checkpoint
from ..sbn.model import CODINGS, HEADS
from .model import ACTIVATIONS, WEIGHT_NOISES, WeightSBN

WEIGHT_SBN = "weight-sbn"  # the checkpoint marker (key estbench_model) of this kind

_PARAM = re.compile(r"(W|eta|b)(\d+)")
SETTINGS = {"coding": CODINGS, "activation": ACTIVATIONS, "head": tuple(HEADS)}
OPTIONAL_SETTINGS = {"weight_noise": (WEIGHT_NOISES, "logistic")}  # (allowed, value if absent)


@dataclass(frozen=True)
class WeightCheckpoint:
    """A stored weight model: ``params[k]`` is eta_k or W_k as ``kinds[k]`` says."""

    params: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    kinds: tuple[str, ...]
    coding: str
    activation: str
    head: str
    weight_noise: str = "logistic"
    X: np.ndarray | None = None
    Y: np.ndarray | None = None
    path: Path | None = None

    def model(self, dtype: torch.dtype = torch.float64) -> WeightSBN:
        try:
            return WeightSBN.from_arrays(
                self.params,
                self.biases,
                self.kinds,
                coding=self.coding,
                activation=self.activation,
                head=self.head,
                weight_noise=self.weight_noise,
                dtype=dtype,
            )
        except ModelError as e:
            raise CheckpointError(f"{self.path}: {e}") from None

    def data(self, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
        return stored_data(self.path, self.X, self.Y, dtype)


def save_weight_checkpoint(
    path: str | Path,
    model: WeightSBN,
    X: Tensor | np.ndarray | None = None,
    Y: Tensor | np.ndarray | None = None,
) -> None:
    """Write ``model`` (and data) in the weight-checkpoint layout; atomic (temp file, rename)."""
    arrays: dict[str, np.ndarray] = {
        MODEL_KEY: np.array(WEIGHT_SBN),
        "coding": np.array(model.coding),
        "activation": np.array(model.activation),
        "head": np.array(model.head.name),
        "weight_noise": np.array(model.weight_noise.name),
    }
    for k, (theta, b, kind) in enumerate(zip(model.params, model.biases, model.kinds, strict=True)):
        arrays[f"{'eta' if kind == 'bernoulli' else 'W'}{k}"] = theta.detach().cpu().numpy()
        arrays[f"b{k}"] = b.detach().cpu().numpy()
    write_npz(Path(path), arrays | data_arrays(X, Y))


def load_weight_checkpoint(path: str | Path) -> WeightCheckpoint:
    """Read and validate a weight checkpoint; every problem is a CheckpointError naming the file
    and the key. ``path`` may be a ``seed:`` name (the shipped networks are SBN checkpoints, so
    the weight loader refuses them, naming the file)."""
    arrays = read_npz(path)
    path = resolve_checkpoint(path)
    if checkpoint_kind_of(path, arrays) != "weights":
        raise CheckpointError(
            f"{path}: not a stochastic-binary-weight checkpoint (no key {MODEL_KEY} = "
            f"{WEIGHT_SBN!r}; keys {sorted(arrays)}); an SBN checkpoint with real weights is read "
            "by estbench.load_checkpoint (in a case: model.kind = 'sbn')"
        )
    settings = {}
    for key, allowed in SETTINGS.items():
        if key not in arrays:
            raise CheckpointError(f"{path}: missing key {key} (expected one of {list(allowed)})")
        value = string_value(path, arrays, key)
        if value not in allowed:
            raise CheckpointError(
                f"{path}: key {key} is {value!r}; expected one of {list(allowed)}"
            )
        settings[key] = value
    for key, (allowed, absent) in OPTIONAL_SETTINGS.items():
        value = string_value(path, arrays, key) if key in arrays else absent
        if value not in allowed:
            raise CheckpointError(
                f"{path}: key {key} is {value!r}; expected one of {list(allowed)}"
            )
        settings[key] = value

    params: dict[tuple[str, int], np.ndarray] = {}
    for key in arrays:
        m = _PARAM.fullmatch(key)
        if m:
            params[(m.group(1), int(m.group(2)))] = arrays[key]
        elif key not in (MODEL_KEY, "X", "Y", *SETTINGS, *OPTIONAL_SETTINGS):
            raise CheckpointError(
                f"{path}: unexpected key {key!r}; a weight checkpoint has {MODEL_KEY}, coding, "
                "activation, head, eta{k} or W{k} and b{k} per pair, and optionally "
                "weight_noise, X, Y"
            )
    depth = max((k for _, k in params), default=-1)
    if depth < 1:
        raise CheckpointError(
            f"{path}: needs at least one binary layer and a head (keys W0 or eta0, b0, W1, b1)"
        )
    thetas: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    kinds: list[str] = []
    for k in range(depth + 1):
        present = [name for name in ("eta", "W") if (name, k) in params]
        if len(present) != 1 or ("b", k) not in params:
            raise CheckpointError(
                f"{path}: pair {k} needs exactly one of eta{k} (Bernoulli) and W{k} (real), and "
                f"b{k}; found {sorted(f'{n}{j}' for n, j in params if j == k)}"
            )
        key = f"{present[0]}{k}"
        theta, b = params[(present[0], k)], params[("b", k)]
        prev = None
        if k:
            prev = (f"{'eta' if kinds[-1] == 'bernoulli' else 'W'}{k - 1}", thetas[-1].shape[0])
        check_pair(path, k, key, theta, b, prev)
        thetas.append(theta)
        biases.append(b)
        kinds.append("bernoulli" if present[0] == "eta" else "real")
    if kinds[-1] != "real":
        raise CheckpointError(
            f"{path}: key eta{depth}: the head (last pair) must be real, W{depth}"
        )
    X, Y = arrays.get("X"), arrays.get("Y")
    check_data(path, X, Y, thetas[0].shape[1])
    return WeightCheckpoint(
        tuple(thetas), tuple(biases), tuple(kinds), X=X, Y=Y, path=path, **settings
    )
