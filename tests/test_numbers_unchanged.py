"""Every number stays what it was: a run of a small stored case gives results.csv byte for byte
as stored (tests/data/report-fixture/, made by tests/data/make_report_fixture.py).

A refactoring that changes an estimator's arithmetic, a random stream, the order of rows or the
exact reference fails here. A change meant to change numbers regenerates the fixture (and says
so); the report tests then render the new one. The case is small enough (width 3, 30 points)
that no product is split across threads, so the bytes do not depend on the thread count.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DATA = Path(__file__).parent / "data"


def _fixture_module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(
        "make_report_fixture", DATA / "make_report_fixture.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_stored_case_reproduces_its_results_byte_for_byte(tmp_path):
    fixture = _fixture_module()
    fixture.run(
        DATA / "report-fixture.toml",
        estimators=fixture.fixture_estimators(),
        out=tmp_path,
        progress=False,
        seed=fixture.SEED,
    )
    stored = (DATA / "report-fixture" / "report-fixture" / "results.csv").read_bytes()
    fresh = (tmp_path / "report-fixture" / "results.csv").read_bytes()
    assert fresh == stored
