"""Regenerate tests/data/report-fixture/ (stored results that the report tests render).

    python tests/data/make_report_fixture.py

The fixture is stored, not recomputed by the tests, so the report tests check rendering alone.
It holds a failing estimator ("exploding") so the report's failure path is rendered too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from estbench.api import run
from estbench.estimators.base import Estimator

HERE = Path(__file__).parent


class Exploding(Estimator):
    name = "exploding"
    family = "score-function"
    unbiased = "yes"
    reference = "test fixture"

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        raise RuntimeError("boom")


if __name__ == "__main__":
    out = HERE / "report-fixture"
    shutil.rmtree(out, ignore_errors=True)
    run(
        HERE / "report-fixture.toml",
        estimators=["reinforce", "arm", "st", "psa", "concrete", Exploding()],
        out=out,
        progress=False,
    )
    # Keep only what a report reads.
    shutil.rmtree(out / "report-fixture" / "points")
    for name in ("run.json", ".lock"):
        (out / "report-fixture" / name).unlink(missing_ok=True)
    print(sorted(p.name for p in (out / "report-fixture").iterdir()))
