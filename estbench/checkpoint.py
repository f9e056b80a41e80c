"""Checkpoints: a network's parameters (and optionally its data) in an ``.npz`` file.

Keys: ``W0, b0, ..., WL, bL`` (the last pair is the head) and optional ``X`` [N, d], ``Y`` [N, ...]
-- the layout of the seed networks. Coding, noise and head are not stored: they are part of the
model the caller states (command line or case file). Other keys (e.g. the seed files' exact
reference values) are kept in ``Checkpoint.extra`` and otherwise ignored.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import CheckpointError, ModelError
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
        if self.X is None or self.Y is None:
            raise CheckpointError(f"{self.path}: no data in this checkpoint (keys X and Y)")
        return torch.as_tensor(self.X, dtype=dtype), torch.as_tensor(self.Y, dtype=dtype)


def _shape(a: np.ndarray) -> str:
    return str(list(a.shape))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint; every problem is a CheckpointError naming file and key."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable .npz file ({e})") from None
    if not isinstance(arrays, dict):  # pragma: no cover - np.load of a .npy gives an array
        raise CheckpointError(f"{path}: expected an .npz archive")

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

    weights, biases = [], []
    for k in range(depth + 1):
        W, b = params[("W", k)], params[("b", k)]
        if W.ndim != 2:
            raise CheckpointError(
                f"{path}: key W{k} has shape {_shape(W)}, expected a 2-d [out, in]"
            )
        if k > 0 and W.shape[1] != weights[-1].shape[0]:
            raise CheckpointError(
                f"{path}: key W{k} has shape {_shape(W)}, expected [{W.shape[0]}, "
                f"{weights[-1].shape[0]}] (W{k - 1} has {weights[-1].shape[0]} outputs)"
            )
        if b.shape != (W.shape[0],):
            raise CheckpointError(
                f"{path}: key b{k} has shape {_shape(b)}, expected [{W.shape[0]}]"
            )
        for key, a in ((f"W{k}", W), (f"b{k}", b)):
            if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
                raise CheckpointError(f"{path}: key {key} must hold finite numbers")
        weights.append(W)
        biases.append(b)

    X, Y = arrays.get("X"), arrays.get("Y")
    if (X is None) != (Y is None):
        raise CheckpointError(
            f"{path}: has {'X' if Y is None else 'Y'} without "
            f"{'Y' if Y is None else 'X'}; data needs both keys"
        )
    if X is not None and Y is not None:
        d = weights[0].shape[1]
        if X.ndim != 2 or X.shape[1] != d:
            raise CheckpointError(f"{path}: key X has shape {_shape(X)}, expected [N, {d}]")
        if Y.ndim not in (1, 2) or Y.shape[0] != X.shape[0]:
            raise CheckpointError(
                f"{path}: key Y has shape {_shape(Y)}, expected [{X.shape[0]}] or [{X.shape[0]}, k]"
            )
    return Checkpoint(tuple(weights), tuple(biases), X, Y, extra, path)


def load_data(path: str | Path) -> tuple[Tensor, Tensor]:
    """X, Y from an ``.npz`` file (a checkpoint or a data-only file with keys X and Y)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z.files or "Y" not in z.files:
                raise CheckpointError(f"{path}: needs keys X and Y, found {sorted(z.files)}")
            X, Y = z["X"], z["Y"]
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such data file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable .npz file ({e})") from None
    if X.ndim != 2 or Y.ndim not in (1, 2) or Y.shape[0] != X.shape[0]:
        raise CheckpointError(
            f"{path}: key X has shape {_shape(X)} and Y {_shape(Y)}; "
            f"expected [N, d] and [N] or [N, k]"
        )
    return torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(Y, dtype=torch.float64)


def save_checkpoint(
    path: str | Path,
    model: SBN,
    X: Tensor | np.ndarray | None = None,
    Y: Tensor | np.ndarray | None = None,
) -> None:
    """Write ``model`` (and data) in the checkpoint layout; atomic (temp file, then rename)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for k, (W, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        arrays[f"W{k}"] = W.detach().cpu().numpy()
        arrays[f"b{k}"] = b.detach().cpu().numpy()
    if (X is None) != (Y is None):
        raise ValueError("save_checkpoint needs both X and Y, or neither")
    if X is not None and Y is not None:
        arrays["X"] = torch.as_tensor(X).detach().cpu().numpy()
        arrays["Y"] = torch.as_tensor(Y).detach().cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.replace(path)


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
