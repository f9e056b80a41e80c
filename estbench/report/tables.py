"""The report's tables: the leaderboard, relative bias and RMSE per layer, the exact reference."""

from __future__ import annotations

import math

from .document import Table
from .intervals import Reading, from_row
from .load import Point, ReportData

BIAS_NOTE = (
    "Biases: exact from path enumeration, [low, high] a Monte Carlo 95 % interval, "
    '"≤ x (consistent with 0)" a Monte Carlo estimate whose interval includes 0, or whose '
    "unbiasedness test keeps 0 (only its upper end x is known)."
)


def num(v: float, digits: int = 3) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    if v != 0 and abs(v) < 10 ** -(digits + 3):
        return "0"  # exact zeros carry float round-off (1e-16); printing it suggests a bias
    return f"{v:.{digits}g}"


def seconds(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v * 1e6:.3g} µs" if v < 1e-3 else f"{v * 1e3:.3g} ms"


def reading_text(r: Reading | None) -> str:
    """A number as what it is: "0.12 (exact)", "0.12 [0.1, 0.14]" (Monte Carlo, 95 % interval),
    "≤ 0.16 (consistent with 0)" (Monte Carlo whose interval includes 0: the point estimate is
    noise and is not printed), "0.12 (no interval)"."""
    if r is None:
        return "—"
    if r.kind == "exact":
        return f"{num(r.value)} (exact)"
    if r.kind == "bound":
        return f"≤ {num(r.high, 2)} (consistent with 0)"
    if r.kind == "measured":
        return f"{num(r.value)} [{num(r.low)}, {num(r.high)}]"
    return f"{num(r.value)} (no interval)"


def rel_bias_cell(data: ReportData, point: Point, e: str, layer: str) -> str:
    return reading_text(from_row(data.row(point, e, layer, "rel_bias")))


def cost_budget(data: ReportData, point: Point) -> int | None:
    """The equal-cost budget: the smallest M of the grid that affords one draw of every estimator
    (M loss evaluations; ARM needs 2 per layer, PSA one per unit...)."""
    grid = data.Ms("rel_rmse_cost")
    if not grid:
        return None
    need = max(
        (float(point.info(e).get("evals_per_draw") or 1.0) for e in data.estimators), default=1.0
    )
    return next((m for m in grid if m >= need), grid[-1])


def claimed_measured(data: ReportData, point: Point, e: str) -> tuple[str, str, bool]:
    """(claimed, measured, mismatch) unbiasedness of an estimator at a point."""
    info = point.info(e)
    claimed = str(info.get("unbiased", "—"))
    verdicts: dict[str, bool] = info.get("verdicts", {})
    passing = [layer for layer in point.layers if verdicts.get(layer)]
    if verdicts and len(passing) == len(verdicts):
        measured = "yes"
    elif not passing:
        measured = "no"
    else:
        measured = ", ".join(passing)
    rejected = [layer for layer in info.get("claimed_unbiased", []) if not verdicts.get(layer, 1)]
    if rejected:
        measured = f"⚠ MISMATCH: rejected in {', '.join(rejected)} ({measured})"
    return claimed, measured, bool(rejected)


def leaderboard(data: ReportData, point: Point, layer: str = "all") -> Table:
    """One row per estimator at ``layer``, sorted by relative RMSE at equal cost."""
    budget = cost_budget(data, point)
    Ms = data.Ms()
    m1 = Ms[0] if Ms else 1
    cost_head = f"rel. RMSE, {budget} evals" if budget else "rel. RMSE, equal cost"
    header = [
        "estimator",
        "rel. bias",
        f"rel. RMSE (M={m1})",
        cost_head,
        f"E cos (M={m1})",
        "cos of mean",
        "SNR",
        "evals/draw",
        "time/draw",
        "unbiased: claimed",
        "unbiased: measured",
    ]
    failed = data.failed(point)
    ranked = []
    for e in data.estimators:
        if e in failed:
            continue
        cost = data.value(point, e, layer, "rel_rmse_cost", budget) if budget else math.nan
        claimed, measured, _ = claimed_measured(data, point, e)
        info = point.info(e)
        row = [
            f"`{e}`",
            rel_bias_cell(data, point, e, layer),
            num(data.value(point, e, layer, "rel_rmse", m1)),
            num(cost),
            num(data.value(point, e, layer, "cos_mean", m1)),
            num(data.value(point, e, layer, "cos_of_mean")),
            num(data.value(point, e, layer, "snr")),
            num(float(info.get("evals_per_draw", math.nan)), 4),
            seconds(info.get("seconds_per_draw")),
            claimed,
            measured,
        ]
        ranked.append((math.inf if math.isnan(cost) else cost, row))
    rows = [row for _, row in sorted(ranked, key=lambda t: t[0])]
    rows += [[f"`{e}`", f"failed: {msg}", *["—"] * (len(header) - 2)] for e, msg in failed.items()]
    caption = (
        f"Layer: {layer if layer != 'all' else 'all binary layers pooled'}. Sorted by relative "
        f"RMSE at equal cost ({budget} loss evaluations per estimate). {BIAS_NOTE}"
    )
    return Table(header, rows, caption)


def per_layer(data: ReportData, point: Point) -> Table:
    """Relative bias and relative RMSE at M = 1 of every estimator in every layer."""
    Ms = data.Ms()
    m1 = Ms[0] if Ms else 1
    header = ["estimator", *point.layers]
    failed = data.failed(point)
    rows = []
    for e in data.estimators:
        if e in failed:
            rows.append([f"`{e}`", *["failed"] * len(point.layers)])
            continue
        cells = [
            f"{rel_bias_cell(data, point, e, layer)} / "
            f"{num(data.value(point, e, layer, 'rel_rmse', m1))}"
            for layer in point.layers
        ]
        rows.append([f"`{e}`", *cells])
    named = [
        f"{ly} = {point.label(ly).removeprefix(ly + ' (').removesuffix(')')}"
        for ly in point.layers
        if point.label(ly) != ly
    ]
    caption = (
        f"Relative bias / relative RMSE at M = {m1}, per block"
        + (f" ({'; '.join(named)})" if named else "")
        + ". "
        + BIAS_NOTE
    )
    return Table(header, rows, caption)


def exact_reference(data: ReportData) -> Table:
    """The exact objective and gradient norms at every point, with the kind's further exact
    scalars (``exact.columns`` of results.json: [key, label], e.g. the ELBO and log p(x) of a
    VAE) after the loss; a point without one shows "-"."""
    layers = [layer for layer in data.layers]
    columns: dict[str, str] = {}
    for p in data.points:
        for key, label in p.meta["exact"].get("columns", []):
            columns.setdefault(key, label)
    header = [
        "point",
        "widths",
        "N",
        "exact loss",
        *columns.values(),
        *(f"‖g‖ {layer}" for layer in layers),
    ]
    rows = []
    for p in data.points:
        ex = p.meta["exact"]
        rows.append(
            [
                p.title,
                "-".join(map(str, ex["widths"])),
                str(ex["n_points"]),
                "— (mc)" if ex["loss"] is None else f"{ex['loss']:.6g}",
                *(f"{ex[key]:.6g}" if key in ex else "-" for key in columns),
                *(num(ex["grad_norm"].get(layer, math.nan), 4) for layer in layers),
            ]
        )
    return Table(header, rows)
