"""Checkpoint and data files (``.npz``) as every problem kind reads them: safe reading and
atomic writing, the kind marker, and the checks of parameters and data that name the file, the
key and the first bad index.

A kind's own layout lives with the kind: the seed authors' SBN layout (``W0, b0, ..., WL, bL``,
no marker) in ``estbench.kinds.sbn.checkpoint``, the Bernoulli-weight layout (marker
``estbench_model = "weight-sbn"``) in ``estbench.kinds.weights.checkpoint``. ``checkpoint_kind``
reads a file's marker (or, without one, asks the kinds whether they recognise its keys), so no
kind's file is misread as another's; ``load_data`` reads X and Y
from any of them (or from a data-only file).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import CheckpointError, ModelError
from .shipped import is_shipped_name, resolve_checkpoint

MODEL_KEY = "estbench_model"  # absent in SBN checkpoints (the seed networks' layout)


def stored_data(
    path: Path | None, X: np.ndarray | None, Y: np.ndarray | None, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """A checkpoint's data as tensors; an error naming the file when it stores none."""
    if X is None or Y is None:
        raise CheckpointError(f"{path}: no data in this checkpoint (keys X and Y)")
    return torch.as_tensor(X, dtype=dtype), torch.as_tensor(Y, dtype=dtype)


def _shape(a: np.ndarray) -> str:
    return str(list(a.shape))


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an .npz is a zip archive (empty: end record)
_NPY_MAGIC = b"\x93NUMPY"


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file; a CheckpointError naming the file if it is unreadable.

    The first bytes are checked before numpy sees the file: given a ``.npy`` array numpy returns
    an array instead of an archive, and given any other file (text, a pickle) it suggests loading
    pickles unsafely, which is advice a user must never get from estbench. A ``seed:`` name is
    read from the installed seed networks (``estbench.shipped``).
    """
    path = resolve_checkpoint(path)
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror or e}") from None
    if head.startswith(_NPY_MAGIC):
        raise CheckpointError(
            f"{path}: a .npy file (one array); expected an .npz archive of named arrays "
            "(np.savez(path, W0=..., b0=..., X=..., Y=...))"
        )
    if not head.startswith(_ZIP_MAGIC):
        raise CheckpointError(
            f"{path}: not a readable .npz file (it does not start like a zip archive); expected "
            "an .npz archive of named arrays written by np.savez"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "allow_pickle" in str(e):  # an object array inside the archive
            first = "it holds an object (pickled) array; expected numeric arrays only"
        raise CheckpointError(f"{path}: not a readable .npz file ({first})") from None


def string_value(path: Path, arrays: dict[str, np.ndarray], key: str) -> str:
    """A 0-d string array (how the format stores names) as str."""
    a = arrays[key]
    if a.ndim != 0 or a.dtype.kind != "U":
        raise CheckpointError(f"{path}: key {key} must be a string, got {a.dtype} {_shape(a)}")
    return str(a[()])


def checkpoint_kind_of(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """The name of the problem kind whose checkpoint this is, from the marker ``estbench_model``
    (``ProblemKind.checkpoint_marker``); without one, the kind that recognises the file's keys
    (``ProblemKind.recognises_checkpoint``), else the seed authors' SBN layout."""
    from .problem import kinds

    if MODEL_KEY not in arrays:
        found = kinds().by_keys(frozenset(arrays))
        if len(found) > 1:
            names = ", ".join(repr(k.name) for k in found)
            raise CheckpointError(
                f"{path}: no key {MODEL_KEY}, and the keys fit problem kinds {names}; expected "
                f"the key {MODEL_KEY} naming one of them"
            )
        if found:
            return found[0].name
    marker = string_value(path, arrays, MODEL_KEY) if MODEL_KEY in arrays else None
    kind = kinds().by_marker(marker)
    if kind is None:
        known = sorted(k.checkpoint_marker for k in kinds().kinds.values() if k.checkpoint_marker)
        raise CheckpointError(
            f"{path}: key {MODEL_KEY} is {marker!r}; expected one of "
            f"{', '.join(repr(m) for m in known)} (or no such key for an SBN with real weights)"
        )
    return kind.name


def kind_evidence(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """How a file shows its kind, for messages: its marker, or its keys."""
    if MODEL_KEY in arrays:
        return f"key {MODEL_KEY} = {string_value(path, arrays, MODEL_KEY)!r}"
    return f"recognised by its keys {', '.join(sorted(arrays))}"


def checkpoint_kind(path: str | Path) -> str:
    """The problem kind of a checkpoint file (or ``seed:`` name), e.g. "sbn" or "weights"
    (``ModelSpec.kind``)."""
    return checkpoint_kind_of(resolve_checkpoint(path), read_npz(path))


def check_pair(
    path: Path, k: int, key: str, W: np.ndarray, b: np.ndarray, prev: tuple[str, int] | None
) -> None:
    """Shapes and values of pair k (weights under ``key``, biases b{k}); ``prev`` is the key and
    output count of the previous pair (None for the first)."""
    if W.ndim != 2:
        raise CheckpointError(f"{path}: key {key} has shape {_shape(W)}, expected a 2-d [out, in]")
    if prev is not None and W.shape[1] != prev[1]:
        raise CheckpointError(
            f"{path}: key {key} has shape {_shape(W)}, expected [{W.shape[0]}, {prev[1]}] "
            f"({prev[0]} has {prev[1]} outputs)"
        )
    if b.shape != (W.shape[0],):
        raise CheckpointError(f"{path}: key b{k} has shape {_shape(b)}, expected [{W.shape[0]}]")
    for name, a in ((key, W), (f"b{k}", b)):
        if not _real(a):
            raise CheckpointError(
                f"{path}: key {name} must hold finite real numbers, got dtype {a.dtype}"
            )
        if not np.all(np.isfinite(a)):
            raise CheckpointError(
                f"{path}: key {name} must hold finite numbers, found {_first_bad(a)}"
            )


def _first_bad(a: np.ndarray) -> str:
    """The first non-finite value of ``a`` and its index, e.g. ``nan at index [3, 1]``."""
    index = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    return f"{a[index]} at index {list(index)}"


def _real(a: np.ndarray) -> bool:
    """Real numbers (integers or floats): a complex array would lose its imaginary part,
    silently, when converted to a float64 tensor."""
    return bool(np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating))


def check_finite(path: Path | str, key: str, a: np.ndarray) -> None:
    """Real numbers only, all finite: a NaN or inf in the data makes every exact value NaN, so it
    is refused at load, naming the file, the key and the first bad index."""
    if not (_real(a) or a.dtype == np.bool_):
        raise CheckpointError(f"{path}: key {key}: expected real numbers, got dtype {a.dtype}")
    if _real(a) and not np.all(np.isfinite(a)):
        raise CheckpointError(f"{path}: key {key}: expected finite numbers, found {_first_bad(a)}")


def check_xy(path: Path | str, X: np.ndarray, Y: np.ndarray, d: int | None = None) -> None:
    """Data X [N, d] and Y [N] or [N, k] with N >= 1 and finite values (``d`` None: any)."""
    if X.ndim != 2 or (d is not None and X.shape[1] != d):
        raise CheckpointError(
            f"{path}: key X has shape {_shape(X)}, expected [N, {'d' if d is None else d}]"
        )
    if Y.ndim not in (1, 2) or Y.shape[0] != X.shape[0]:
        raise CheckpointError(
            f"{path}: key Y has shape {_shape(Y)}, expected [{X.shape[0]}] or [{X.shape[0]}, k]"
        )
    if X.shape[0] == 0:
        raise CheckpointError(
            f"{path}: keys X, Y hold 0 data points (X has shape {_shape(X)}); expected at least 1"
        )
    check_finite(path, "X", X)
    check_finite(path, "Y", Y)


def check_data(path: Path, X: np.ndarray | None, Y: np.ndarray | None, d: int) -> None:
    """Optional data: both X [N, d] and Y [N] or [N, k] (N >= 1, finite), or neither."""
    if (X is None) != (Y is None):
        raise CheckpointError(
            f"{path}: has {'X' if Y is None else 'Y'} without "
            f"{'Y' if Y is None else 'X'}; data needs both keys"
        )
    if X is not None and Y is not None:
        check_xy(path, X, Y, d)


def fit_data(source: str | Path, model: Any, X: Tensor, Y: Tensor) -> None:
    """Data read from ``source`` must fit ``model`` (an SBN or a WeightSBN): X [N, input_dim] and
    targets its head accepts. The head's own message (e.g. labels outside {-1, +1}) is prefixed
    with the file and the key, so the user knows which array of which file to fix."""
    if X.shape[1] != model.input_dim:
        raise CheckpointError(
            f"{source}: key X has shape {list(X.shape)}, expected [N, {model.input_dim}] "
            "(the network's input width)"
        )
    try:
        model.head.targets(torch.as_tensor(Y, dtype=model.dtype), model.out_dim)
    except ModelError as e:
        raise CheckpointError(f"{source}: key Y: {e}") from None


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic: a temporary file, then a rename, so an interruption never leaves half a file.
    A ``seed:`` name is refused: it names an installed file, never a place to write."""
    if is_shipped_name(path):
        raise CheckpointError(f"{path}: a shipped checkpoint's name; expected a file path to write")
    from .results import atomic_write

    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle: bool
    atomic_write(Path(path), buf.getvalue())


def data_arrays(X: object, Y: object) -> dict[str, np.ndarray]:
    if (X is None) != (Y is None):
        raise ValueError("save_checkpoint needs both X and Y, or neither")
    if X is None:
        return {}
    return {
        "X": torch.as_tensor(X).detach().cpu().numpy(),
        "Y": torch.as_tensor(Y).detach().cpu().numpy(),
    }


def load_data(path: str | Path) -> tuple[Tensor, Tensor]:
    """X, Y from an ``.npz`` file (a checkpoint or a data-only file with keys X and Y; a
    ``seed:`` name reads a shipped network's data), refused with the file, the key and the first
    bad index when it has no points or a NaN or inf."""
    arrays = read_npz(path)
    path = resolve_checkpoint(path)
    if "X" not in arrays or "Y" not in arrays:
        raise CheckpointError(f"{path}: needs keys X and Y, found {sorted(arrays)}")
    X, Y = arrays["X"], arrays["Y"]
    check_xy(path, X, Y)
    return torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(Y, dtype=torch.float64)


def other_snapshot(path: Path, net: Any, like: Any) -> CheckpointError:
    """The error for a stored training snapshot of another network than the case trains (every
    kind's ``load_snapshot``)."""
    return CheckpointError(
        f"{path}: a stored training snapshot of another network ({net.describe()}); this case "
        f"trains {like.describe()}. Remove the file (or use another --out) to train again"
    )
