"""Results files: a tidy ``results.csv`` and a versioned ``results.json`` per case.

``results.csv`` has one row per (case point, estimator, layer, metric, M) and no timings, so the
same case and seed reproduce it byte for byte. ``results.json`` carries ``schema_version`` and the
metadata to reproduce and audit the run (versions, commit, seed, device, the case file and its
hash, timings, unbiasedness verdicts). Files are written atomically (temp file + rename).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import EstbenchError

SCHEMA_VERSION = 1
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
    """Write through a temporary file and rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(content, bytes):
        tmp.write_bytes(content)
    else:
        tmp.write_text(content)
    os.replace(tmp, path)


def rows_to_csv(rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in COLUMNS])
    return buf.getvalue()


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ResultsError(
                f"{path}: unexpected columns {reader.fieldnames}; expected {COLUMNS}"
            )
        return list(reader)


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
    except (OSError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: not a readable results file ({e})") from None
    version = payload.get("schema_version") if isinstance(payload, dict) else None
    if version != SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: results schema_version {version!r}; this estbench reads version "
            f"{SCHEMA_VERSION} (re-run the case with this version, or use the estbench that "
            f"wrote it)"
        )
    return payload
