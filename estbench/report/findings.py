"""Findings stated from the measured numbers of one case point (no judgement calls in prose).

With B the squared bias and T the total variance of one draw (per layer), the relative RMSE of
the M-draw mean is sqrt(B + T/M)/||g||, so

- a biased estimator *levels off* at its relative bias: within 10 % of it once
  T/M <= (1.1^2 - 1) B, i.e. from M_off = T / (0.21 B);
- an unbiased estimator matches one draw of a reference estimator r after
  M_eq = T / (B_r + T_r) draws (equal mean squared error).
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from typing import Any

from .intervals import from_row
from .load import Point, ReportData
from .tables import claimed_measured, cost_budget, num, reading_text

LEVEL_OFF = 1.1**2 - 1
TOP = 6  # estimators named in a ranking before "..."


def approx(v: float) -> str:
    """A count to two significant digits, written out: 0.5, 14, 390, 43,000."""
    if not math.isfinite(v):
        return "—"
    if v < 100:
        return f"{v:.2g}"
    return f"{round(v, 1 - int(math.floor(math.log10(v)))):,.0f}"


def _ok(data: ReportData, point: Point) -> list[str]:
    failed = data.failed(point)
    return [e for e in data.estimators if e not in failed]


def _unbiased(point: Point, e: str, layer: str) -> bool:
    return bool(point.info(e).get("verdicts", {}).get(layer, False))


def _ranking(data: ReportData, point: Point, layer: str, metric: str, M: int | None) -> str:
    vals = [(data.value(point, e, layer, metric, M), e) for e in _ok(data, point)]
    vals = sorted((v, e) for v, e in vals if math.isfinite(v))
    text = " < ".join(f"`{e}` {approx(v) if v >= 100 else num(v, 2)}" for v, e in vals[:TOP])
    return text + (" < …" if len(vals) > TOP else "")


def bias_ranking(data: ReportData, point: Point, layer: str) -> str:
    """Estimators by relative bias, smallest first, without ordering noise.

    Only values that are known -- exact, or Monte Carlo with a 95 % interval that excludes 0 --
    are ranked. Exact zeros are named together; Monte Carlo biases whose interval includes 0 are
    named together as "consistent with 0", in the run's order with their upper bounds, not
    sorted: their point estimates are noise, and sorting by them (or by the bounds, which grow
    with the variance) would rank the noisiest unbiased estimator as the most biased."""
    zero, unresolved, ranked, bare = [], [], [], []
    for e in _ok(data, point):
        r = from_row(data.row(point, e, layer, "rel_bias"))
        if r is None:
            continue
        if r.exact_zero:
            zero.append(f"`{e}`")
        elif r.kind == "bound":
            unresolved.append(f"`{e}` ≤ {num(r.high, 2)}")
        elif r.kind == "bare":
            bare.append(f"`{e}` {num(r.value, 2)}")
        else:
            ranked.append((r.value, e, reading_text(r)))
    parts = []
    if zero:
        parts.append("0 (exact): " + ", ".join(zero))
    if unresolved:
        parts.append(
            "consistent with 0 (95 % interval includes 0 or the unbiasedness test keeps 0, not "
            "ranked): " + ", ".join(unresolved)
        )
    if ranked:
        ranked.sort(key=lambda t: (t[0], t[1]))
        text = " < ".join(f"`{e}` {t}" for _, e, t in ranked[:TOP])
        parts.append("known, smallest first: " + text + (" < …" if len(ranked) > TOP else ""))
    if bare:
        parts.append("no interval (not ranked): " + ", ".join(bare))
    return "; ".join(parts) if parts else "—"


def reference_estimator(data: ReportData, point: Point, layer: str = "all") -> str | None:
    """PSA when measured (the seed study's reference); else the biased estimator with the lowest
    relative RMSE at M = 1."""
    ok = _ok(data, point)
    if "psa" in ok:
        return "psa"
    Ms = data.Ms()
    biased = [e for e in ok if not _unbiased(point, e, layer)]
    if not biased or not Ms:
        return None
    return min(biased, key=lambda e: data.value(point, e, layer, "rel_rmse", Ms[0]))


def _B_T(data: ReportData, point: Point, e: str, layer: str) -> tuple[float, float]:
    B = data.value(point, e, layer, "bias_sq")
    return max(B, 0.0), data.value(point, e, layer, "variance")


def _se(row: Any) -> float:
    """A row's standard error: 0 for an exact value (method ``exact``: path enumeration), else
    its ``se`` (NaN where missing)."""
    if row.get("method") == "exact":
        return 0.0
    se = row.get("se")
    return math.nan if se is None else float(se)


def variance_claims(data: ReportData, point: Point) -> list[str]:
    """For every measured estimator that records a published ordering (``variance_claims``:
    its variance below another's at equal loss evaluations) whose other estimator was measured
    too: per block, the ratio of variances per evaluation (T c of one, over the other's) with a
    95 % interval (delta method on the log, the two estimators' draws being independent), and
    whether the ordering holds (interval below 1), is reversed (above 1) or is not resolved.
    A claim that names its blocks (``VarianceClaim.blocks``, shell patterns of block names) is
    counted in those blocks only; the other blocks are shown apart, "outside the claim"."""
    out = []
    ok = _ok(data, point)
    for e in ok:
        for claim in point.info(e).get("variance_claims", []):
            other, source = claim[0], claim[1]
            patterns = list(claim[2]) if len(claim) > 2 else []
            if other not in ok:
                continue
            parts, verdicts, outside = [], [], []
            ce = float(point.info(e).get("evals_per_draw", 1.0))
            co = float(point.info(other).get("evals_per_draw", 1.0))
            for layer in point.layers:
                a, b = (data.row(point, x, layer, "variance") for x in (e, other))
                if a is None or b is None:
                    continue
                # an exact variance (path enumeration) has no standard error: 0
                va, sa, vb, sb = (
                    float(a["value"]),
                    _se(a),
                    float(b["value"]),
                    _se(b),
                )
                if not (va > 0 and vb > 0 and math.isfinite(sa) and math.isfinite(sb)):
                    continue
                ratio = va * ce / (vb * co)
                half = 1.96 * math.hypot(sa / va, sb / vb)
                low, high = ratio * math.exp(-half), ratio * math.exp(half)
                verdict = "holds" if high < 1 else "reversed" if low > 1 else "not resolved"
                text = f"{layer} {num(ratio, 3)} [{num(low, 3)}, {num(high, 3)}] {verdict}"
                if patterns and not any(fnmatchcase(layer, p) for p in patterns):
                    outside.append(text)
                    continue
                verdicts.append(verdict)
                parts.append(text)
            if parts:
                summary = (
                    "holds in every block"
                    if set(verdicts) == {"holds"}
                    else "reversed in every block"
                    if set(verdicts) == {"reversed"}
                    else "holds in " + f"{verdicts.count('holds')} of {len(verdicts)} blocks"
                )
                scope = f" (the claim's blocks: {', '.join(patterns)})" if patterns else ""
                apart = (
                    "; outside the claim (not counted): " + "; ".join(outside) if outside else ""
                )
                out.append(
                    f"Published ordering, `{e}` below `{other}` in variance at equal loss "
                    f"evaluations ({source}): {summary}{scope}. Variance per evaluation, `{e}` "
                    f"over `{other}` ({num(ce, 3)} and {num(co, 3)} evaluations per draw), 95 % "
                    "interval: " + "; ".join(parts) + apart + "."
                )
    return out


def findings(data: ReportData, point: Point) -> tuple[list[str], list[str]]:
    """(headline findings for all binary layers pooled, per-layer findings)."""
    ok = _ok(data, point)
    Ms = data.Ms()
    if not ok or not Ms:
        return ["No estimator produced results at this point."], []
    m1, m_max = Ms[0], Ms[-1]
    layers = [layer for layer in point.layers if layer != "all"]
    head: list[str] = []

    unbiased = [e for e in ok if all(_unbiased(point, e, layer) for layer in point.layers)]
    if unbiased:
        head.append(
            "Unbiased within error in every layer: "
            + ", ".join(f"`{e}`" for e in unbiased)
            + " (exact moments where marked exact, otherwise the z-test and B/SE test at a "
            "false-fail rate of 1e-3)."
        )
    else:
        head.append("No estimator is unbiased within error in every layer.")
    partly = [
        e for e in ok if e not in unbiased and any(_unbiased(point, e, ly) for ly in point.layers)
    ]
    if partly:
        head.append(
            "Unbiased within error in some layers only (where a bias is not claimed absent, the "
            "test only excludes biases larger than these draws resolve): "
            + "; ".join(
                f"`{e}` ({', '.join(ly for ly in point.layers if _unbiased(point, e, ly))})"
                for e in partly
            )
            + "."
        )
    for M in dict.fromkeys((m1, m_max)):
        vals = [(data.value(point, e, "all", "rel_rmse", M), e) for e in ok]
        vals = [t for t in vals if math.isfinite(t[0])]
        if vals:
            v, e = min(vals)
            head.append(f"Lowest relative RMSE at M = {M} (all binary layers): `{e}`, {num(v)}.")
    budget = cost_budget(data, point)
    if budget:
        vals = [(data.value(point, e, "all", "rel_rmse_cost", budget), e) for e in ok]
        vals = [t for t in vals if math.isfinite(t[0])]
        if vals:
            v, e = min(vals)
            head.append(
                f"Lowest relative RMSE at equal cost ({budget} loss evaluations): `{e}`, {num(v)}."
            )
    pooled = bias_ranking(data, point, "all")
    if pooled != "—":  # a kind without an "all" block (the VAE's) has no pooled line
        head.append(f"Relative bias (all binary layers): {pooled}.")
    mismatches = [e for e in ok if claimed_measured(data, point, e)[2]]
    if mismatches:
        for e in mismatches:
            head.append(
                f"⚠ `{e}` claims unbiasedness that the test rejects: "
                f"{claimed_measured(data, point, e)[1]}."
            )
    else:
        head.append("Every claimed unbiasedness holds: no estimator fails a layer it claims.")
    head += variance_claims(data, point)
    failed = data.failed(point)
    if failed:
        head.append("Failed: " + "; ".join(f"`{e}`: {m}" for e, m in failed.items()) + ".")

    per_layer: list[str] = []
    for layer in layers:
        name = point.label(layer)
        per_layer.append(
            f"{name}: ranking by relative RMSE at M = {m1}: "
            + _ranking(data, point, layer, "rel_rmse", m1)
            + f"; at M = {m_max}: "
            + _ranking(data, point, layer, "rel_rmse", m_max)
            + "."
        )
        per_layer.append(f"{name}: relative bias: {bias_ranking(data, point, layer)}.")
    for e in ok:
        parts = []
        for layer in layers:
            if _unbiased(point, e, layer):
                continue
            B, T = _B_T(data, point, e, layer)
            rb = from_row(data.row(point, e, layer, "rel_bias"))
            # A level is stated only where the bias is known: exact, or an interval excluding 0
            # (a noisy B^ gives a noisy level and a noisy M_off).
            if B > 0 and math.isfinite(T) and rb is not None and rb.kind in ("exact", "measured"):
                M_off = T / (LEVEL_OFF * B)
                level = approx(rb.value) if rb.value >= 100 else num(rb.value, 2)
                level += (
                    " (exact)" if rb.kind == "exact" else f" [{num(rb.low, 2)}, {num(rb.high, 2)}]"
                )
                parts.append(f"{layer} at {level} from M ≈ {approx(max(M_off, 1.0))}")
        if parts:
            per_layer.append(f"`{e}` levels off at its relative bias: " + "; ".join(parts) + ".")
    ref = reference_estimator(data, point)
    if ref is not None:
        for e in ok:
            if e == ref:
                continue
            parts = []
            claimed = point.info(e).get("claimed_unbiased", [])
            for layer in layers:
                if layer not in claimed or not _unbiased(point, e, layer):
                    continue
                Br, Tr = _B_T(data, point, ref, layer)
                _, T = _B_T(data, point, e, layer)
                if Br + Tr > 0 and math.isfinite(T):
                    parts.append(f"{layer} {approx(T / (Br + Tr))}")
            if parts:
                per_layer.append(
                    f"Draws of unbiased `{e}` that match the mean squared error of one draw of "
                    f"`{ref}`: " + "; ".join(parts) + "."
                )
    return head, per_layer
