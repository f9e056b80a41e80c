"""Results files: a tidy ``results.csv`` and a versioned ``results.json`` per case.

``results.csv`` has one row per (case point, estimator, layer, metric, M) and no timings, so the
same case and seed reproduce it byte for byte. ``results.json`` carries ``schema_version`` and the
metadata to reproduce and audit the run (versions, commit, seed, device, the case file and its
hash, timings, unbiasedness verdicts).

The two are one unit (``commit_results``): results.csv is written first, then results.json, which
records the SHA-256, byte and row counts of the CSV it belongs to. Each file is replaced
atomically (a unique temporary file, fsync, rename), and results.json is written last, so a crash
between the two leaves a pair whose checksum does not match; ``load_results`` refuses such a pair
(and a truncated or foreign CSV) instead of showing one run's numbers under the other's metadata.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import EstbenchError

SCHEMA_VERSION = 3  # 2: the checksum of results.csv; 3: each point's exact.kind and exact.blocks
SWEEP_COLUMNS = ("depth", "width", "checkpoint", "seed", "tau")
COLUMNS = (
    "case",
    *SWEEP_COLUMNS,
    "estimator",
    "layer",
    "metric",
    "M",
    "value",
    "se",
    "ci_low",
    "ci_high",
    "method",
    "error",
)

METRICS: dict[str, str] = {
    "rel_bias": "relative bias ||E g^ - g|| / ||g|| (exact, or from the unbiased B^ with its CI)",
    "bias_sq": "squared bias ||E g^ - g||^2 (B^ = ||mean - g||^2 - T^/S, may be negative)",
    "variance": "total variance T = tr Cov of one draw",
    "mse": "mean squared error of one draw E||g^ - g||^2",
    "rel_rmse": "relative RMSE of the M-draw mean, sqrt(B + T/M) / ||g|| (CI by bootstrap)",
    "rel_rmse_grouped": "relative RMSE of the M-draw mean by grouping the draws (seed protocol)",
    "rel_rmse_cost": "relative RMSE at equal cost: M loss evaluations, sqrt(B + T c / M) / ||g||",
    "cos_mean": "expected cosine E cos(mean of M draws, g) (groups of M draws; se over groups)",
    "cos_q15": "15 % quantile of cos(mean of M draws, g) over groups",
    "cos_q85": "85 % quantile of cos(mean of M draws, g) over groups",
    "cos_of_mean": "cosine of the mean, cos(E g^, g) (bias-reduced when estimated)",
    "snr": "median over coordinates of |E g^_i| / sd_i (bias-reduced numerator)",
    "zero_frac": "share of draws whose layer vector is exactly zero",
    "z_max": "max over coordinates of |mean - g| / (sd / sqrt(S))",
    "bias_z": "B^ / SE(B^), the aggregate unbiasedness statistic",
    "unbiased_test": "1 if the unbiasedness test passes (z with Bonferroni and B^/SE), else 0",
    "evals_per_draw": "loss evaluations on a complete path per draw",
}


def point_id(point: dict[str, Any]) -> str:
    """A case point's name, e.g. ``depth=3_width=4``; ``base`` for a case without a sweep."""
    return "_".join(f"{k}={point[k]}" for k in SWEEP_COLUMNS if k in point) or "base"


class ResultsError(EstbenchError):
    """Results files that cannot be read or have an unknown schema version."""


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return str(v)


def atomic_write(path: Path, content: str | bytes) -> None:
    """Replace ``path`` atomically: a unique temporary file beside it, fsync, rename. A crash
    leaves the old file or the new one, never a half-written one (at worst a hidden
    ``.NAME.*.tmp``, which ``remove_stale_temporaries`` clears)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 -> what open() would have made
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(directory: Path) -> None:
    """Delete the temporary files of writes that a killed process left in ``directory`` and its
    subfolders (points/, checkpoints/, figures/). Call it under the case lock only: a running
    writer's temporary file must not be removed."""
    for tmp in Path(directory).rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()


def rows_to_csv(rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in COLUMNS])
    return buf.getvalue()


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise ResultsError(
                    f"{path}: unexpected columns {reader.fieldnames}; expected {COLUMNS}"
                )
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ResultsError(f"{path}: not a readable results.csv ({e})") from None


def csv_digest(content: bytes) -> dict[str, Any]:
    """What results.json records of the results.csv it belongs to."""
    return {
        "sha256": hashlib.sha256(content).hexdigest(),
        "bytes": len(content),
        "lines": content.count(b"\n"),
    }


def commit_results(directory: Path, csv_text: str, payload: dict[str, Any]) -> None:
    """Write results.csv, then results.json with the CSV's checksum (module docstring)."""
    content = csv_text.encode()
    atomic_write(directory / "results.csv", content)
    write_json(directory / "results.json", {**payload, "results_csv": csv_digest(content)})


def load_results(directory: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """results.json and the rows of results.csv of a case directory, refused unless they are
    one committed pair: the CSV's SHA-256, size and line count as results.json records them."""
    directory = Path(directory)
    json_path, csv_path = directory / "results.json", directory / "results.csv"
    meta = load_json(json_path)
    rerun = "rerun the `estbench run` command that wrote them to rebuild the pair"
    try:
        content = csv_path.read_bytes()
    except FileNotFoundError:
        raise ResultsError(f"{csv_path}: no such results file ({rerun})") from None
    except OSError as e:
        raise ResultsError(f"{csv_path}: cannot read: {e.strerror or e}") from None
    recorded = meta.get("results_csv")
    if not isinstance(recorded, dict) or csv_digest(content) != recorded:
        raise ResultsError(
            f"{csv_path}: does not match {json_path.name} (checksum, size or line count differ: "
            f"a truncated file, or a pair from two runs); {rerun}"
        )
    return meta, read_csv_rows(csv_path)


def git_commit() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            # Untracked files (results and reports written into the checkout) are not code.
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def environment() -> dict[str, Any]:
    import numpy
    import torch

    from ._version import __version__
    from .estimators.registry import default_registry

    plugins = sorted(
        {(e.source, e.version) for e in default_registry().values() if e.source != "estbench"}
    )
    return {
        "estbench_version": __version__,
        "git": git_commit(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "torch_version": torch.__version__,
        "numpy_version": numpy.__version__,
        "num_threads": torch.get_num_threads(),
        "plugins": [{"dist": d, "version": v} for d, v in plugins],
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(
        path,
        json.dumps({"schema_version": SCHEMA_VERSION, **payload}, indent=2, sort_keys=True) + "\n",
    )


def load_json(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: not a readable results file ({e})") from None
    version = payload.get("schema_version") if isinstance(payload, dict) else None
    if version != SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: results schema_version {version!r}; this estbench reads version "
            f"{SCHEMA_VERSION} (re-run the case with this version, or use the estbench that "
            f"wrote it)"
        )
    return payload
