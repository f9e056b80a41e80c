"""Saved results as the report reads them: ``results.csv`` as a DataFrame plus ``results.json``.

Nothing here recomputes a metric; a report is a view of the files ``estbench run`` wrote.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..results import COLUMNS, SWEEP_COLUMNS, ResultsError, load_results, point_id
from .style import strip_param

NUMERIC = ("M", "value", "se", "ci_low", "ci_high")


@dataclass(frozen=True)
class Point:
    """One case point of a run: its sweep values, exact objective and per-estimator metadata."""

    pid: str
    values: dict[str, Any]
    meta: dict[str, Any]

    @property
    def title(self) -> str:
        return ", ".join(f"{k} = {v}" for k, v in self.values.items()) or "the case"

    @property
    def depth(self) -> int:
        return len(self.meta["exact"]["widths"])

    @property
    def layers(self) -> tuple[str, ...]:
        """The blocks measured at this point, in the kind's order (``exact.blocks``: e.g.
        layer0..layerL, the ``layerk.W`` / ``layerk.b`` blocks of Bernoulli pairs, then ``all``,
        the binary layers pooled)."""
        return tuple(name for name, _ in self.meta["exact"]["blocks"])

    def label(self, layer: str) -> str:
        """A block's label as its kind gives it (figure panel titles), e.g. ``layer3 (head)``."""
        return str(dict(self.meta["exact"]["blocks"]).get(layer, layer))

    def grad_norm(self, layer: str, estimator: str | None = None) -> float:
        """‖g‖ of a block, in the estimator's parametrisation (``wrt``, e.g. mu) when it has
        one whose norms differ from the default's (``grad_norm_<wrt>``)."""
        ex = self.meta["exact"]
        wrt = self.info(estimator).get("wrt") if estimator is not None else None
        norms = ex.get(f"grad_norm_{wrt}", ex["grad_norm"]) if wrt else ex["grad_norm"]
        return float(norms[layer])

    def info(self, estimator: str) -> dict[str, Any]:
        return self.meta.get("estimators", {}).get(estimator, {})


@dataclass(frozen=True)
class ReportData:
    directory: Path
    frame: pd.DataFrame  # results.csv, numeric columns parsed, plus a ``point`` column (pid)
    meta: dict[str, Any]  # results.json
    points: tuple[Point, ...]
    estimators: tuple[str, ...]  # in the order of the run
    layers: tuple[str, ...]  # layer0..layerL (L = head), then "all"

    @property
    def case_name(self) -> str:
        return str(self.meta["case"]["name"])

    @property
    def case_config(self) -> dict[str, Any]:
        try:
            return tomllib.loads(self.meta["case"].get("content") or "")
        except tomllib.TOMLDecodeError:
            return {}

    def _groups(self, keys: tuple[str, ...]) -> dict[tuple, np.ndarray]:
        """Row positions of the frame grouped by ``keys`` (file order within a group), built
        once: a report looks up about a thousand numbers, and a boolean mask over the whole frame
        per look-up was most of its rendering time."""
        return self.frame.groupby(list(keys), sort=False, dropna=False).indices

    @cached_property
    def _by_metric(self) -> dict[tuple, np.ndarray]:
        return self._groups(("point", "metric"))

    @cached_property
    def _by_layer(self) -> dict[tuple, np.ndarray]:
        return self._groups(("point", "metric", "layer"))

    @cached_property
    def _by_estimator(self) -> dict[tuple, np.ndarray]:
        return self._groups(("point", "metric", "layer", "estimator"))

    @cached_property
    def _M_value(self) -> tuple[np.ndarray, np.ndarray]:
        return self.frame["M"].to_numpy(), self.frame["value"].to_numpy()

    @cached_property
    def _numeric(self) -> dict[str, np.ndarray]:
        return {c: self.frame[c].to_numpy(dtype=float) for c in NUMERIC}

    def series(
        self, point: Point, estimator: str, layer: str, metric: str
    ) -> dict[str, np.ndarray] | None:
        """One estimator's rows of a metric at a point and layer as arrays (``NUMERIC``
        columns), sorted by M; None when there are none. A figure reads some 200 of these: a
        pandas selection per series was a fifth of its building time."""
        rows = self._by_estimator.get((point.pid, metric, layer, estimator))
        if rows is None or not len(rows):
            return None
        cols = self._numeric
        order = rows[np.argsort(cols["M"][rows], kind="stable")]
        return {c: v[order] for c, v in cols.items()}

    def select(self, point: Point, metric: str, layer: str | None = None) -> pd.DataFrame:
        """The rows of one point and metric (and layer), in file order."""
        if layer is None:
            rows = self._by_metric.get((point.pid, metric))
        else:
            rows = self._by_layer.get((point.pid, metric, layer))
        return self.frame.iloc[rows if rows is not None else []]

    def _first(
        self, point: Point, estimator: str, layer: str, metric: str, M: int | None
    ) -> int | None:
        """Position of the first matching row, or None."""
        rows = self._by_estimator.get((point.pid, metric, layer, estimator))
        if rows is not None and M is not None:
            rows = rows[self._M_value[0][rows] == M]
        return int(rows[0]) if rows is not None and len(rows) else None

    def value(
        self, point: Point, estimator: str, layer: str, metric: str, M: int | None = None
    ) -> float:
        """One number, or NaN when the run did not record it."""
        i = self._first(point, estimator, layer, metric, M)
        return math.nan if i is None else float(self._M_value[1][i])

    def row(
        self, point: Point, estimator: str, layer: str, metric: str, M: int | None = None
    ) -> pd.Series | None:
        i = self._first(point, estimator, layer, metric, M)
        return None if i is None else self.frame.iloc[i]

    def Ms(self, metric: str = "rel_rmse") -> list[int]:
        m = self.frame.loc[self.frame["metric"] == metric, "M"].dropna().unique()
        return sorted(int(x) for x in m)

    def failed(self, point: Point) -> dict[str, str]:
        """estimator -> error message, for estimators that failed at this point."""
        return {e: str(point.info(e)["error"]) for e in self.estimators if "error" in point.info(e)}

    def tau_base(self, estimator: str) -> str | None:
        """For a temperature-swept variant, its label without tau (``concrete``); else None."""
        taus = self.frame.loc[self.frame["estimator"] == estimator, "tau"].dropna()
        return strip_param(estimator, "tau") if len(taus) else None


def load_report_data(directory: str | Path) -> ReportData:
    """Read ``results.csv`` and ``results.json`` of a case directory (``DIR/<case>``), refused
    unless they are one committed pair (``results.load_results``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultsError(f"{directory}: no such case directory (expected DIR/<case> of a run)")
    meta, rows = load_results(directory)
    csv_path = directory / "results.csv"
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in NUMERIC:
        frame[col] = pd.to_numeric(frame[col].replace("", None), errors="coerce")
    frame["tau"] = pd.to_numeric(frame["tau"].replace("", None), errors="coerce")
    frame["error"] = frame["error"].replace("", None)
    # A row's point: the sweep values other than tau (an estimator variant, not a point).
    keys = [k for k in SWEEP_COLUMNS if k != "tau"]
    pids: dict[tuple[str, ...], str] = {}
    for r in rows:  # the raw rows: their sweep columns are the frame's, as text
        values = tuple(r[k] for k in keys)
        if values not in pids:
            pids[values] = point_id({k: v for k, v in zip(keys, values, strict=True) if v != ""})
    frame["point"] = [pids[tuple(r[k] for k in keys)] for r in rows]
    # Whether the run's unbiasedness test (multiplicity-corrected, docs/results.md) kept zero
    # bias for the row's (point, estimator, layer): a bias it cannot reject is shown as a bound
    # even where a 95 % interval happens to exclude 0 (intervals.from_row).
    test = frame.loc[frame["metric"] == "unbiased_test", ["point", "estimator", "layer", "value"]]
    kept = {(r.point, r.estimator, r.layer) for r in test.itertuples() if r.value == 1.0}
    frame["zero_bias_kept"] = [
        (pt, e, ly) in kept
        for pt, e, ly in zip(frame["point"], frame["estimator"], frame["layer"], strict=True)
    ]
    points = tuple(Point(point_id(p["point"]), dict(p["point"]), p) for p in meta.get("points", []))
    known = {p.pid for p in points}
    stray = sorted(set(frame["point"]) - known)
    if stray:
        raise ResultsError(
            f"{csv_path}: rows for points {stray} that {directory / 'results.json'} does not list"
        )
    estimators = tuple(dict.fromkeys(frame["estimator"]))
    present = set(frame["layer"])
    # Every point's layers in order (a deeper point's extra layers after the shallower ones'),
    # ``all`` last.
    ordered = sorted(
        {ly for p in points for ly in p.layers if ly != "all"},
        key=lambda ly: (int(ly[5:].split(".")[0]), ly) if ly.startswith("layer") else (1 << 30, ly),
    )
    layers = tuple(ly for ly in ordered if ly in present)
    layers += ("all",) if "all" in present else ()
    return ReportData(directory, frame, meta, points, estimators, layers)
