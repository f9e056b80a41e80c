"""The ``sbn`` kind's checkpoints: a network's parameters (and optionally its data) in an ``.npz``
file, the layout of the seed networks.

Keys: ``W0, b0, ..., WL, bL`` (the last pair is the head) and optional ``X`` [N, d], ``Y`` [N, ...].
Coding, noise and head are not stored: they are part of the model the caller states (command line
or case file). Other keys (e.g. the seed files' exact reference values) are kept in
``Checkpoint.extra`` and otherwise ignored. A file with another kind's marker (``estbench_model``)
is refused, naming it, so no kind's file is misread as an SBN's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...checkpoint import (
    check_data,
    check_pair,
    checkpoint_kind_of,
    data_arrays,
    kind_evidence,
    read_npz,
    stored_data,
    write_npz,
)
from ...errors import CheckpointError, ModelError
from ...shipped import resolve_checkpoint
from .model import SBN, check_coding, get_head, get_noise

_PARAM = re.compile(r"([Wb])(\d+)")
_PARAM_LIKE = re.compile(r"(w|b|weight|bias|weights|biases)_?\d+", re.IGNORECASE)


@dataclass(frozen=True)
class Checkpoint:
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    X: np.ndarray | None = None
    Y: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    def model(
        self,
        *,
        coding: str = "01",
        noise: str = "logistic",
        head: str = "logistic",
        dtype: torch.dtype = torch.float64,
    ) -> SBN:
        try:
            return SBN.from_arrays(
                self.weights,
                self.biases,
                coding=check_coding(coding),
                noise=noise,
                head=head,
                dtype=dtype,
            )
        except ModelError as e:
            raise CheckpointError(f"{self.path}: {e}") from None

    def data(self, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
        return stored_data(self.path, self.X, self.Y, dtype)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint (a path, or a shipped network's ``seed:`` name); every
    problem is a CheckpointError naming file and key."""
    arrays = read_npz(path)
    path = resolve_checkpoint(path)
    kind = checkpoint_kind_of(path, arrays)
    if kind != "sbn":
        raise CheckpointError(
            f"{path}: a checkpoint of problem kind {kind!r} ({kind_evidence(path, arrays)}), "
            "not an SBN with real weights; in a "
            f'case: model.kind = "{kind}"'
        )

    params: dict[tuple[str, int], np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        m = _PARAM.fullmatch(key)
        if m:
            params[(m.group(1), int(m.group(2)))] = value
        elif key in ("X", "Y"):
            continue
        elif _PARAM_LIKE.fullmatch(key) or key in ("x", "y"):
            raise CheckpointError(
                f"{path}: unexpected key {key!r}; parameters are named W0, b0, ..., WL, bL "
                f"and data X, Y"
            )
        else:
            extra[key] = value
    if not params:
        raise CheckpointError(f"{path}: no parameters found (expected keys W0, b0, ..., WL, bL)")
    depth = max(k for _, k in params)
    for k in range(depth + 1):
        for kind in "Wb":
            if (kind, k) not in params:
                raise CheckpointError(
                    f"{path}: missing key {kind}{k} (found {sorted(arrays)}; expected W0, b0, ..., "
                    f"W{depth}, b{depth})"
                )
    if depth < 1:
        raise CheckpointError(
            f"{path}: needs at least one binary layer and a head (W0, b0, W1, b1)"
        )

    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    for k in range(depth + 1):
        W, b = params[("W", k)], params[("b", k)]
        check_pair(path, k, f"W{k}", W, b, (f"W{k - 1}", weights[-1].shape[0]) if k else None)
        weights.append(W)
        biases.append(b)

    X, Y = arrays.get("X"), arrays.get("Y")
    check_data(path, X, Y, weights[0].shape[1])
    return Checkpoint(tuple(weights), tuple(biases), X, Y, extra, path)


def save_checkpoint(
    path: str | Path,
    model: SBN,
    X: Tensor | np.ndarray | None = None,
    Y: Tensor | np.ndarray | None = None,
) -> None:
    """Write ``model`` (and data) in the checkpoint layout; atomic (temp file, then rename)."""
    arrays: dict[str, np.ndarray] = {}
    for k, (W, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        arrays[f"W{k}"] = W.detach().cpu().numpy()
        arrays[f"b{k}"] = b.detach().cpu().numpy()
    write_npz(Path(path), arrays | data_arrays(X, Y))


def model_from_checkpoint(
    path: str | Path,
    *,
    coding: str = "01",
    noise: str = "logistic",
    head: str = "logistic",
) -> tuple[SBN, Checkpoint]:
    """Load a checkpoint and build its model (validating coding, noise and head names)."""
    get_noise(noise), get_head(head), check_coding(coding)
    ckpt = load_checkpoint(path)
    return ckpt.model(coding=coding, noise=noise, head=head), ckpt
