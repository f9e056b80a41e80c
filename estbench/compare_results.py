"""The files of a training comparison (``estbench.compare``): ``training.csv`` and
``training.json``, one committed unit, read back by the report without torch.

``training.csv`` is tidy and long: one row per (estimator, seed, record step, quantity) with the
columns ``COLUMNS``. ``quantity`` is ``objective`` (the kind's exact loss, the reference's
``loss``) or one of the kind's exact scalars (``Reference.columns``, e.g. ``elbo``,
``log_likelihood``, ``kl_gap`` for a VAE), so the header is the same for every problem kind and
the labels of the quantities live in ``training.json`` (``columns``). Everything but
``wall_seconds`` is a function of the case and the seeds: the same case and ``--seed`` give the
same bytes in every other column (wall time has its own column so that a comparison of two runs
can drop it). ``evaluations`` is empty for exact training (it enumerates; no loss evaluations
are drawn).

The pair is committed like results.csv/results.json (``estbench.results``): the CSV first, then
the JSON that records its SHA-256, size and line count; ``load_training`` refuses a pair that
does not match.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .results import ResultsError, atomic_write, csv_digest

SCHEMA_VERSION = 1
TRAINING_CSV = "training.csv"
TRAINING_JSON = "training.json"
COLUMNS = (
    "case",
    "estimator",
    "seed",
    "step",
    "epoch",
    "evaluations",
    "quantity",
    "value",
    "wall_seconds",
)
OBJECTIVE = "objective"  # the quantity that is the kind's exact loss


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return str(v)


def rows_to_csv(rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in COLUMNS])
    return buf.getvalue()


def commit_training(directory: Path, csv_text: str, payload: dict[str, Any]) -> None:
    """training.csv, then training.json with the CSV's checksum (module docstring)."""
    content = csv_text.encode()
    atomic_write(directory / TRAINING_CSV, content)
    meta = {"schema_version": SCHEMA_VERSION, **payload, "training_csv": csv_digest(content)}
    atomic_write(directory / TRAINING_JSON, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def has_training(directory: Path) -> bool:
    return (Path(directory) / TRAINING_JSON).is_file()


def load_training(directory: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """training.json and the rows of training.csv, refused unless they are one committed pair
    of this schema version."""
    directory = Path(directory)
    json_path, csv_path = directory / TRAINING_JSON, directory / TRAINING_CSV
    rerun = "rerun the `estbench run` command that wrote them to rebuild the pair"
    try:
        meta = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{json_path}: no such file ({rerun})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{json_path}: not a readable training file ({e})") from None
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if version != SCHEMA_VERSION:
        raise ResultsError(
            f"{json_path}: schema_version {version!r}; this estbench reads version "
            f"{SCHEMA_VERSION} ({rerun})"
        )
    try:
        content = csv_path.read_bytes()
    except FileNotFoundError:
        raise ResultsError(f"{csv_path}: no such file ({rerun})") from None
    if csv_digest(content) != meta.get("training_csv"):
        raise ResultsError(
            f"{csv_path}: does not match {json_path.name} (checksum, size or line count differ: "
            f"a truncated file, or a pair from two runs); {rerun}"
        )
    reader = csv.DictReader(io.StringIO(content.decode()))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ResultsError(
            f"{csv_path}: unexpected columns {reader.fieldnames}; expected {COLUMNS}"
        )
    return meta, list(reader)
