"""The notebook API: run a case for any estimator objects and get the tidy results as a DataFrame.

    import estbench.api as eb
    df = eb.run("default", estimators=[MyEstimator(), "st"], overrides={"measure.draws": 2000})
    df.query("metric == 'rel_rmse' and layer == 'all'")

Estimators may be registered names (with parameters) or unregistered ``Estimator`` instances; the
DataFrame has the columns of ``results.csv``. ``out`` keeps the results files (and lets a re-run
resume); without it they go to a temporary directory.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from . import results
from .cases import Case, load_case
from .estimators.base import Estimator
from .runner import run_case


def run(
    case: str | Path | Case,
    *,
    estimators: list[Estimator | str] | None = None,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    quick: bool = False,
    out: str | Path | None = None,
    force: bool = False,
    progress: bool | None = None,
    client: Any = None,
) -> pd.DataFrame:
    """Run ``case`` (a shipped name, a path, or a Case) and return results.csv as a DataFrame;
    with a ``distributed.Client``, on its Dask cluster (``estbench.cluster``)::

        from distributed import Client
        df = eb.run("depth-sweep", client=Client(n_workers=2, threads_per_worker=1))
    """
    c = case if isinstance(case, Case) else load_case(case, overrides=overrides)
    objects: list[Estimator] = []
    if estimators is not None:
        names = tuple(e for e in estimators if isinstance(e, str))
        objects = [e for e in estimators if isinstance(e, Estimator)]
        c = replace(c, measure=replace(c.measure, estimators=names))
    with tempfile.TemporaryDirectory(prefix="estbench-") as tmp:
        directory = Path(out) if out is not None else Path(tmp)
        report = run_case(
            c,
            directory,
            seed=seed,
            quick=quick,
            force=force,
            extra_estimators=objects,
            progress=progress,
            client=client,
        )
        return load_results(report.directory)


def load_results(directory: str | Path) -> pd.DataFrame:
    """results.csv of a case directory as a DataFrame with numeric columns parsed (refused
    unless results.csv and results.json are one committed pair)."""
    _, rows = results.load_results(Path(directory))
    df = pd.DataFrame(rows, columns=list(results.COLUMNS))
    for col in (
        "depth",
        "width",
        "checkpoint",
        "seed",
        "tau",
        "M",
        "value",
        "se",
        "ci_low",
        "ci_high",
    ):
        df[col] = pd.to_numeric(df[col].replace("", None), errors="coerce")
    df["error"] = df["error"].replace("", None)
    return df
