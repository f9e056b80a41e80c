"""The reference of each point, where a case asks for a Monte Carlo one (``measure.reference``
"mc" or "auto"): which reference, which estimator, how many draws, the relative standard error
each block reached and the rule that stopped it; and the smallest relative bias the
unbiasedness test could detect against it, per estimator and block. Generic: it reads the
``reference`` entry of each point of results.json and the estimators' ``detectable_rel_bias``,
whatever the kind."""

from __future__ import annotations

from typing import Any

from .document import Table
from .load import ReportData
from .tables import num

STOPS = {
    "target": "target reached",
    "max_draws": "draw cap (reference_max_draws)",
    "max_seconds": "time cap (reference_max_seconds)",
}


def has_mc(data: ReportData) -> bool:
    """Whether any point was measured against a Monte Carlo reference."""
    return any(_ref(p.meta).get("kind") == "mc" for p in data.points)


def _ref(meta: dict[str, Any]) -> dict[str, Any]:
    return meta.get("reference") or {"kind": "exact"}


def reference_table(data: ReportData) -> Table:
    """Per point: the reference (exact / Monte Carlo), its estimator, R, the stop rule and the
    achieved relative SE per block."""
    header = ["point", "reference", "estimator", "R", "stopped by", "target"]
    header += [f"rel. SE {layer}" for layer in data.layers]
    rows = []
    for p in data.points:
        ref = _ref(p.meta)
        if ref.get("kind") != "mc":
            rows.append([p.title, "exact", "—", "—", "—", "—", *("0" for _ in data.layers)])
            continue
        rows.append(
            [
                p.title,
                "Monte Carlo",
                str(ref["estimator"]),
                f"{ref['draws']:,}",
                STOPS.get(ref["stop"], str(ref["stop"])),
                num(ref["target_rel_se"], 3),
                *(num(ref["rel_se"].get(layer, float("nan")), 3) for layer in data.layers),
            ]
        )
    caption = (
        "Monte Carlo reference: the mean of R draws of an unbiased estimator, from a stream "
        "independent of the measured draws; rel. SE = sqrt(tr Cov(g_ref)) / ||g|| per block. "
        "Rows against it have method `mc-reference`: the squared bias and MSE are corrected by "
        "tr Cov(g_ref) and every interval includes the reference's error (docs/kinds/"
        "mc-reference.md). In figures versus a swept variable, such points have a grey "
        "background."
    )
    return Table(header, rows, caption)


def detectable_table(data: ReportData) -> Table:
    """Per estimator and block, the largest (over Monte Carlo points) smallest relative bias
    the unbiasedness test detects about half the time."""
    header = ["estimator", *data.layers]
    rows = []
    for est in data.estimators:
        worst: dict[str, float] = {}
        for p in data.points:
            for layer, v in p.info(est).get("detectable_rel_bias", {}).items():
                worst[layer] = max(worst.get(layer, 0.0), float(v))
        if worst:
            rows.append([est, *(num(worst.get(layer, float("nan")), 2) for layer in data.layers)])
    caption = (
        "Smallest relative bias ||E g^ - g|| / ||g|| that the unbiasedness test (aggregate "
        "B^/SE(B^), reference error included) detects about half the time, against the Monte "
        "Carlo reference (the largest over points). A test that passes says only that the bias "
        "is below about this."
    )
    return Table(header, rows, caption)
