"""Checkpoint files of Bernoulli-latent VAEs (``.npz``), issue 16's format.

Keys: ``q_W{k}`` [n_k, n_{k-1}] and ``q_b{k}`` [n_k], the encoder factor of layer k given layer
k-1 (k = 1..L, n_0 = D); ``p_W{k}`` [n_{k-1}, n_k] and ``p_b{k}`` [n_{k-1}], the decoder factor
of layer k-1 given layer k; ``p_prior`` [n_L], the prior logits of z_L; ``X`` [N, D] in {0, 1}.
The nonlinear model adds its tanh hidden layers, ``{q,p}_W{k}_h{i}`` and ``{q,p}_b{k}_h{i}``
(i = 1..m, input side first; the output maps ``q_W{k}``, ``p_W{k}`` then read the last hidden
layer). A file with the linear model's keys is recognised as a VAE checkpoint by its keys alone
(``recognises``); the files estbench writes also carry the marker ``estbench_model = "sbvae"``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...checkpoint import MODEL_KEY, check_finite, read_npz, string_value, write_npz
from ...errors import CheckpointError, ModelError
from ...shipped import resolve_checkpoint
from .model import PRIOR, SBVAE

MARKER = "sbvae"
REQUIRED = frozenset({"q_W1", "q_b1", "p_W1", "p_b1", PRIOR, "X"})
_KEY = re.compile(r"([qp])_([Wb])([1-9][0-9]*)(?:_h([1-9][0-9]*))?")


def recognises(keys: frozenset[str]) -> bool:
    """A VAE checkpoint by its keys alone: those of a one-layer linear model and X."""
    return REQUIRED.issubset(keys)


def _shape(a: np.ndarray) -> str:
    return str(list(a.shape))


def load_sbvae_checkpoint(path: str | Path) -> tuple[SBVAE, Tensor]:
    """The model and its data X (float64) of a VAE checkpoint; every problem is a
    CheckpointError naming the file and the key."""
    arrays = read_npz(path)
    path = resolve_checkpoint(path)
    if MODEL_KEY in arrays and string_value(path, arrays, MODEL_KEY) != MARKER:
        raise CheckpointError(
            f"{path}: key {MODEL_KEY} is {string_value(path, arrays, MODEL_KEY)!r}; expected "
            f"{MARKER!r} (or no such key) for a VAE checkpoint"
        )
    missing = sorted(REQUIRED - set(arrays))
    if missing:
        raise CheckpointError(
            f"{path}: missing key {missing[0]} (a VAE checkpoint has q_W1, q_b1, p_W1, p_b1, "
            "p_prior and X)"
        )
    params: dict[str, np.ndarray] = {}
    depth, n_hidden = 0, 0
    for key, a in arrays.items():
        if key in (MODEL_KEY, "X"):
            continue
        m = _KEY.fullmatch(key)
        if m is None and key != PRIOR:
            raise CheckpointError(
                f"{path}: unexpected key {key!r}; a VAE checkpoint has q_W{{k}}, q_b{{k}}, "
                "p_W{k}, p_b{k} (hidden layers with _h{i}), p_prior and X"
            )
        check_finite(path, key, a)
        if a.dtype == np.bool_:
            raise CheckpointError(f"{path}: key {key}: expected real numbers, got dtype bool")
        if m is not None:
            depth = max(depth, int(m.group(3)))
            n_hidden = max(n_hidden, int(m.group(4) or 0))
        params[key] = a

    def size(key: str, axis: int) -> int:
        """Axis ``axis`` of a 2-d (axis 1) or 1-d (axis 0) parameter that sets a width."""
        if key not in params:
            raise CheckpointError(f"{path}: missing key {key} (its layer has other keys)")
        a, ndim = params[key], 2 if key.startswith(("q_W", "p_W")) else 1
        if a.ndim != ndim:
            raise CheckpointError(
                f"{path}: key {key} has shape {_shape(a)}, expected a {ndim}-d array"
            )
        return int(a.shape[axis])

    hidden = tuple(size(f"q_W1_h{i}", 0) for i in range(1, n_hidden + 1))
    latent = tuple(size(f"q_b{k}", 0) for k in range(1, depth + 1))
    data_dim = size("q_W1_h1" if n_hidden else "q_W1", 1)
    try:
        model = SBVAE(
            data_dim,
            latent,
            hidden,
            {k: torch.as_tensor(v, dtype=torch.float64) for k, v in params.items()},
        )
    except ModelError as e:
        raise CheckpointError(f"{path}: {e}") from None
    X = arrays["X"]
    if X.ndim != 2 or X.shape[1] != model.data_dim or X.shape[0] < 1:
        raise CheckpointError(
            f"{path}: key X has shape {_shape(X)}, expected [N >= 1, {model.data_dim}] (the "
            "encoder's input width)"
        )
    check_finite(path, "X", X)
    bad = np.argwhere((X != 0) & (X != 1))
    if len(bad):
        index = [int(i) for i in bad[0]]
        raise CheckpointError(
            f"{path}: key X must hold 0 or 1, found {X[tuple(index)]} at index {index}"
        )
    return model, torch.as_tensor(X, dtype=torch.float64)


def save_sbvae_checkpoint(path: str | Path, model: SBVAE, X: Tensor) -> None:
    """Atomically, with the marker; parameters float64, X uint8."""
    arrays = {MODEL_KEY: np.array(MARKER)}
    for key in model.keys:
        arrays[key] = model.params[key].detach().cpu().to(torch.float64).numpy()
    arrays["X"] = torch.as_tensor(X).detach().cpu().numpy().astype(np.uint8)
    write_npz(Path(path), arrays)
