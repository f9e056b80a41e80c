"""The report's figures, each a ``matplotlib.figure.Figure`` built from saved results.

The library never touches pyplot or the backend: figures are constructed directly and saved by
``render``. Each function returns ``None`` when the case has no data for its figure.

1. relative RMSE of the M-draw mean versus M, one log-log panel per layer, CI bands;
2. E cos(mean of M draws, g) versus M per layer with the 15 %-85 % band;
3. relative bias, relative standard deviation and relative RMSE (smallest M) versus a swept
   dimension (depth, width, training checkpoint), per estimator;
4. the same versus temperature for the relaxation family (estimators swept over tau);
5. the bias-variance map at M = 1 with iso-RMSE curves;
6. a heat map of relative bias, estimators x layers.

A value with sampling error is drawn as what it is (``intervals``): exact values (path
enumeration) as filled markers; Monte Carlo values with their 95 % interval (a bar, or a band for
the relative RMSE); a Monte Carlo value whose interval reaches 0 or the log axis's floor as an
open downward triangle at the interval's upper end (an upper bound), never as a point, and joined
to its neighbours by a faint dotted line only. A second legend ("markers") says which is which.
Panels of one figure share their axes: they show the same quantity on the same grid, and
separate scales would make a layer with a 100x larger error look like its neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, LogFormatter, LogLocator, MaxNLocator, NullLocator

from .intervals import KINDS, Reading, from_row, scaled
from .load import Point, ReportData
from .style import Style, estimator_style

PANEL = (3.3, 2.7)  # inches per panel
BIAS_FLOOR = 1e-4  # relative biases below this are drawn at it (log axes; exact zeros exist)
BOUND_MARKER = "v"  # an upper bound: open, pointing down from the interval's upper end


def _plain_log(ax, *axes: str) -> None:
    """Log axes labelled 0.1, 1, 10 (no mathtext: readable, and rendering is much faster)."""
    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))  # 2 and 5: fewer tick artists
        # Minor ticks get labels only when the axis spans too few decades to show majors.
        axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def layer_title(data: ReportData, point: Point, layer: str) -> str:
    """The panel title. Stochastic-weight points name what a layer's gradient flows through:
    ``layer1 (Bernoulli η + b)``, ``layer1.W (Bernoulli η)``, ``layer1.b (b, sign
    units)``, ``layer0 (real W + b)``."""
    if layer == "all":
        return "all binary layers"
    if layer == f"layer{point.depth}":
        return f"{layer} (head)"
    kinds = point.weight_kinds
    if kinds is None:
        return layer
    pair, _, block = layer[5:].partition(".")
    act = point.meta["exact"].get("activation", "stochastic")
    act = "sign" if act == "sign" else "stochastic"
    if block == "W":
        return f"{layer} (Bernoulli η)"
    if block == "b":
        return f"{layer} (b, {act} units)"
    kind = "Bernoulli η" if kinds[int(pair)] == "bernoulli" else "real W"
    return f"{layer} ({kind} + b)"


def grid_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
    """(rows, columns) for ``n`` panels: one row up to ``max_cols``; beyond, never a last row with
    a lone panel (it reads as an afterthought, and the "all binary layers" panel is the one that
    lands there), then the fewest rows, then the fewest empty slots. One column more than
    ``max_cols`` is allowed when every narrower grid leaves a lone panel (13 panels: 5-5-3)."""
    if n <= max_cols:
        return 1, max(n, 1)
    best: tuple[tuple[bool, bool, int, int], tuple[int, int]] | None = None
    for cols in range(2, max_cols + 2):
        rows = math.ceil(n / cols)
        last = n - (rows - 1) * cols
        key = (last == 1, cols > max_cols, rows, rows * cols - n)
        if best is None or key < best[0]:
            best = (key, (rows, cols))
    assert best is not None
    return best[1]


def _grid(n: int, max_cols: int = 4, share: bool = True) -> tuple[Figure, list]:
    """A figure of ``n`` panels, sharing both axes when ``share`` (tick labels on the outer
    panels; a panel above an empty slot keeps its x tick labels)."""
    rows, cols = grid_shape(n, max_cols)
    fig = Figure(figsize=(PANEL[0] * cols + 1.8, PANEL[1] * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=share, sharey=share).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    if share:
        for i, ax in enumerate(axes[:n]):
            if i + cols >= n:  # nothing drawn below it
                ax.xaxis.set_tick_params(which="both", labelbottom=True)
    return fig, axes[:n]


def _outer_labels(axes: Sequence, cols: int, xlabel: str, ylabel: str) -> None:
    """Axis labels on the bottom panel of each column and the first panel of each row only."""
    n = len(axes)
    for i, ax in enumerate(axes):
        ax.set_xlabel(xlabel if i + cols >= n else "")
        ax.set_ylabel(ylabel if i % cols == 0 else "")


def _legend(fig: Figure, labels: Sequence[str]) -> None:
    handles = [Line2D([], [], label=e, **estimator_style(e).line()) for e in labels]
    fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)


CONVENTION = {
    "exact": "exact (path enumeration)",
    "measured": "Monte Carlo value,\nbar: 95 % interval",
    "band": "band: 95 % interval\n(Monte Carlo)",
    "bound": (
        "upper bound,\nconsistent with 0:\nthe 95 % interval\nreaches 0 (or the floor),\n"
        "or the unbiasedness\ntest keeps 0"
    ),
    "bare": "Monte Carlo value,\nno interval",
}


def _convention_legend(fig: Figure, kinds: set[str]) -> None:
    """The second legend: what each marker style means (only the styles drawn)."""
    grey = "0.35"
    handles: dict[str, object] = {
        "exact": Line2D([], [], ls="none", marker="o", ms=5, color=grey),
        "measured": (
            Line2D([], [], ls="none", marker="|", ms=12, mew=1.0, color=grey),
            Line2D([], [], ls="none", marker="o", ms=5, color=grey),
        ),
        "band": Patch(color=grey, alpha=0.25, lw=0),
        "bound": Line2D([], [], ls="none", marker=BOUND_MARKER, ms=6.5, mfc="none", mec=grey),
        "bare": Line2D([], [], ls="none", marker="o", ms=5, mfc="none", mec=grey),
    }
    shown = [k for k in CONVENTION if k in kinds]
    if not shown:
        return
    fig.legend(
        handles=[handles[k] for k in shown],
        labels=[CONVENTION[k] for k in shown],
        handler_map={tuple: HandlerTuple(ndivide=1)},
        loc="outside right lower",
        fontsize="x-small",
        title="markers",
        title_fontsize="small",
        frameon=False,
    )


def _series(
    ax,
    xs: Sequence[float],
    readings: Sequence[Reading | None],
    st: Style,
    label: str,
    *,
    band: bool = False,
    ms: float = 4.0,
) -> set[str]:
    """One estimator's values along x, each drawn as its reading says; returns the kinds drawn.

    A solid line joins consecutive known values (exact or measured); a segment touching an upper
    bound is faint and dotted, so a rising bound never reads as a rising curve. Artists carry
    the label ``_<kind>:<estimator>`` (hidden from legends), which the tests read."""
    pts = [(float(x), r) for x, r in zip(xs, readings, strict=True) if r is not None]
    if not pts:
        return set()
    x = np.array([p[0] for p in pts])
    kinds = [r.kind for _, r in pts]
    y = np.array([max(r.top, BIAS_FLOOR) for _, r in pts])
    known = np.array([k in ("exact", "measured") for k in kinds])
    lw = 1.2
    ax.plot(
        x,
        np.where(known, y, np.nan),
        color=st.color,
        ls=st.linestyle,
        lw=lw,
        label=f"_line:{label}",
    )
    seg_x: list[float] = []
    seg_y: list[float] = []
    for i in range(len(pts) - 1):
        if not (known[i] and known[i + 1]):
            seg_x += [x[i], x[i + 1], math.nan]
            seg_y += [y[i], y[i + 1], math.nan]
    if seg_x:
        ax.plot(seg_x, seg_y, color=st.color, ls=":", lw=0.8, alpha=0.6, label=f"_faint:{label}")
    measured = np.array([k == "measured" for k in kinds])
    # The part of each interval above the floor; a zero-width one (a deterministic estimator's
    # variance) has no bar.
    lo = np.array([max(r.low, BIAS_FLOOR) if r.kind == "measured" else math.nan for _, r in pts])
    hi = np.array([max(r.high, BIAS_FLOOR) if r.kind == "measured" else math.nan for _, r in pts])
    wide = measured & (hi > lo)
    if wide.any() and band:
        lo, hi = np.where(wide, lo, math.nan), np.where(wide, hi, math.nan)
        ax.fill_between(x, lo, hi, color=st.color, alpha=0.18, lw=0, label=f"_band:{label}")
    elif wide.any():
        ax.vlines(x[wide], lo[wide], hi[wide], color=st.color, lw=0.9, label=f"_interval:{label}")
    for kind in KINDS:
        sel = np.array([k == kind for k in kinds])
        if not sel.any():
            continue
        common = {"ls": "none", "color": st.color, "label": f"_{kind}:{label}", "zorder": 3}
        if kind in ("exact", "measured"):
            ax.plot(x[sel], y[sel], marker=st.marker, ms=ms, **common)
        elif kind == "bound":
            ax.plot(x[sel], y[sel], marker=BOUND_MARKER, ms=ms + 2, mfc="none", mew=1.1, **common)
        else:
            ax.plot(x[sel], y[sel], marker=st.marker, ms=ms, mfc="none", **common)
    drawn = set(kinds)
    if band and measured.any():
        drawn = (drawn - {"measured"}) | ({"band"} if wide.any() else set())
    return drawn


def _ok(data: ReportData, point: Point) -> list[str]:
    failed = data.failed(point)
    return [e for e in data.estimators if e not in failed]


def rmse_vs_M(data: ReportData, point: Point) -> Figure | None:
    """Figure 1: relative RMSE of the M-draw mean versus M, per layer (the seed study's figure)."""
    rows = data.select(point, "rel_rmse")
    if rows.empty or len(data.Ms()) < 2:
        return None
    fig, axes = _grid(len(point.layers))
    shown = _ok(data, point)
    for ax, layer in zip(axes, point.layers, strict=True):
        for e in shown:
            r = rows[(rows["layer"] == layer) & (rows["estimator"] == e)].sort_values("M")
            if r.empty:
                continue
            st = estimator_style(e)
            ax.plot(r["M"], r["value"], markersize=3, linewidth=1.2, **st.line())
            band = r.dropna(subset=["ci_low", "ci_high"])
            if len(band):
                ax.fill_between(
                    band["M"], band["ci_low"], band["ci_high"], color=st.color, alpha=0.18, lw=0
                )
        ax.set(xscale="log", yscale="log", title=layer_title(data, point, layer))
        _plain_log(ax, "x", "y")
        ax.grid(True, which="major", alpha=0.3)
    _outer_labels(axes, grid_shape(len(axes))[1], "M (draws averaged)", "relative RMSE")
    fig.suptitle(f"{data.case_name}: relative RMSE vs M ({point.title})", fontsize="medium")
    _legend(fig, shown)
    _convention_legend(fig, {"band"} if len(rows.dropna(subset=["ci_low", "ci_high"])) else set())
    return fig


def cos_vs_M(data: ReportData, point: Point) -> Figure | None:
    """Figure 2: E cos(mean of M draws, g) versus M per layer, 15 %-85 % band."""
    rows = data.select(point, "cos_mean")
    if rows.empty:
        return None
    q15, q85 = data.select(point, "cos_q15"), data.select(point, "cos_q85")
    fig, axes = _grid(len(point.layers))
    shown = _ok(data, point)
    for ax, layer in zip(axes, point.layers, strict=True):
        for e in shown:
            sel = (rows["layer"] == layer) & (rows["estimator"] == e)
            r = rows[sel].sort_values("M")
            if r.empty:
                continue
            st = estimator_style(e)
            ax.plot(r["M"], r["value"], markersize=3, linewidth=1.2, **st.line())
            lo = q15[(q15["layer"] == layer) & (q15["estimator"] == e)].sort_values("M")
            hi = q85[(q85["layer"] == layer) & (q85["estimator"] == e)].sort_values("M")
            if len(lo) == len(r) and len(hi) == len(r):
                ax.fill_between(r["M"], lo["value"], hi["value"], color=st.color, alpha=0.15, lw=0)
        ax.set(xscale="log", ylim=(-1.05, 1.05), title=layer_title(data, point, layer))
        _plain_log(ax, "x")
        ax.axhline(1.0, color="0.5", lw=0.6)
        ax.grid(True, alpha=0.3)
    _outer_labels(axes, grid_shape(len(axes))[1], "M (draws averaged)", "E cos(mean, g)")
    fig.suptitle(
        f"{data.case_name}: cosine to the true gradient ({point.title})", fontsize="medium"
    )
    _legend(fig, shown)
    return fig


def _readings(
    data: ReportData, point: Point, e: str, layer: str, m1: int | None = None
) -> tuple[Reading | None, Reading | None, Reading | None]:
    """(relative bias, relative sd of one draw, relative RMSE at ``m1``) at one point and layer,
    each with its interval, classified against the log axes' floor."""
    gn = point.grad_norm(layer, e) if layer in point.meta["exact"]["grad_norm"] else math.nan
    bias = from_row(data.row(point, e, layer, "rel_bias"), BIAS_FLOOR)
    # A deterministic estimator's sd is round-off (1e-15): the floor shows it like the bias.
    sd = scaled(
        data.row(point, e, layer, "variance"), lambda v: math.sqrt(max(v, 0.0)) / gn, BIAS_FLOOR
    )
    rmse = None if m1 is None else from_row(data.row(point, e, layer, "rel_rmse", m1), BIAS_FLOOR)
    return bias, sd, rmse


def sweep_figure(
    data: ReportData, dim: str, points: Sequence[Point], estimators: Sequence[str] | None = None
) -> Figure | None:
    """Figure 3 (and 4 with ``dim='tau'``): relative bias, relative sd and relative RMSE of one
    draw versus ``dim``, each with its interval.

    Panels: rows are (relative bias, relative sd, relative RMSE at the smallest M); columns are
    layer0 (farthest from the loss) and all binary layers pooled. All panels share both axes:
    the three quantities are relative to the same ||g|| (RMSE^2 = bias^2 + sd^2/M), so a bias
    reads against the spread that hides it. For ``tau`` the x values come from the variants'
    tau column and a line joins the variants of one family.
    """
    layers = [layer for layer in ("layer0", "all") if layer in data.layers]
    lines: dict[str, list[tuple[float, str, Point]]] = {}
    for p in points:
        failed = data.failed(p)
        for e in estimators or data.estimators:
            if e in failed:
                continue
            if dim == "tau":
                base = data.tau_base(e)
                if base is None:
                    continue
                taus = data.frame.loc[data.frame["estimator"] == e, "tau"].dropna()
                x = float(taus.iloc[0])
            else:
                base, x = e, float(p.values[dim])
            lines.setdefault(base, []).append((x, e, p))
    xs_all = {x for v in lines.values() for x, *_ in v}
    if not lines or len(xs_all) < 2:
        return None
    x_min = min(xs_all)
    Ms = data.Ms()
    m1 = Ms[0] if Ms else None
    what = ["relative bias", "relative sd (one draw)"]
    what += [f"relative RMSE (M = {m1})"] if m1 is not None else []
    fig = Figure(
        figsize=(PANEL[0] * len(layers) + 2.2, PANEL[1] * len(what) + 0.4), layout="constrained"
    )
    axes = fig.subplots(len(what), len(layers), squeeze=False, sharex=True, sharey=True)
    kinds: set[str] = set()
    for j, layer in enumerate(layers):
        for base, pts in lines.items():
            pts = sorted(pts, key=lambda t: t[0])
            xs = [t[0] for t in pts]
            cols = list(zip(*(_readings(data, t[2], t[1], layer, m1) for t in pts), strict=True))
            st = estimator_style(base)
            for i in range(len(what)):
                kinds |= _series(axes[i][j], xs, cols[i], st, base, band=i == 2)
        for i, title in enumerate(what):
            ax = axes[i][j]
            ax.set(yscale="log", title=f"{title}\n{layer_title(data, points[0], layer)}")
            if dim == "checkpoint" and x_min == 0:  # epoch 0 (the initial network) on the axis
                ax.set_xscale("symlog", linthresh=1, linscale=0.5)
                ax.set_xlim(-0.3, max(xs_all) * 1.4)
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_locator(NullLocator())
            elif dim in ("tau", "checkpoint"):
                ax.set_xscale("log")
                _plain_log(ax, "x")
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            _plain_log(ax, "y")
            ax.grid(True, alpha=0.3)
            ax.set_xlabel({"tau": "temperature τ"}.get(dim, dim) if i == len(what) - 1 else "")
            ax.set_ylabel(f"{title.split(' (')[0]} (floor {BIAS_FLOOR:g})" if j == 0 else "")
    what_x = "temperature" if dim == "tau" else dim
    fig.suptitle(f"{data.case_name}: bias and spread vs {what_x}", fontsize="medium")
    _legend(fig, list(lines))
    _convention_legend(fig, kinds)
    return fig


def bias_variance_map(data: ReportData, point: Point) -> Figure | None:
    """Figure 5: relative bias against relative sd at M = 1, iso-RMSE curves b^2 + s^2 = r^2.

    Each estimator is one marker with its intervals (vertical: bias, horizontal: sd); a bias
    whose interval reaches 0 is an open triangle at its upper end. Panels share both axes."""
    if data.select(point, "variance").empty or data.select(point, "rel_bias").empty:
        return None
    shown = _ok(data, point)
    per_layer: dict[str, dict[str, tuple[Reading, Reading]]] = {}
    for layer in point.layers:
        pts = {}
        for e in shown:
            bias, sd, _ = _readings(data, point, e, layer)
            if bias is not None and sd is not None:
                pts[e] = (bias, sd)
        per_layer[layer] = pts
    tops = [
        max(b.top, s.high if s.kind == "measured" else s.top)
        for v in per_layer.values()
        for b, s in v.values()
    ]
    if not tops:
        return None
    hi = max(max(tops) * 2, 10 * BIAS_FLOOR)
    fig, axes = _grid(len(point.layers))
    kinds: set[str] = set()
    for ax, layer in zip(axes, point.layers, strict=True):
        for level in 10.0 ** np.arange(-3, 3):
            if BIAS_FLOOR < level < hi:
                grid = np.geomspace(BIAS_FLOOR, level * (1 - 1e-9), 200)
                ax.plot(grid, np.sqrt(level**2 - grid**2), color="0.75", lw=0.7, zorder=0)
                ax.annotate(f"{level:g}", (level / 1.6, level / 1.35), fontsize=6, color="0.5")
        for e, (b, s) in per_layer[layer].items():
            st = estimator_style(e)
            x = max(s.top, BIAS_FLOOR)
            if s.kind == "measured" and s.high > max(s.low, BIAS_FLOOR):
                ax.hlines(
                    max(b.top, BIAS_FLOOR),
                    max(s.low, BIAS_FLOOR),
                    s.high,
                    color=st.color,
                    lw=0.9,
                    label=f"_sd_interval:{e}",
                )
            kinds |= _series(ax, [x], [b], st, e, ms=6)
        ax.set(xscale="log", yscale="log", xlim=(BIAS_FLOOR / 2, hi), ylim=(BIAS_FLOOR / 2, hi))
        _plain_log(ax, "x", "y")
        ax.xaxis.set_major_locator(LogLocator(numticks=5))  # "0.0001" and "0.001" collide
        ax.set_title(layer_title(data, point, layer))
        ax.grid(True, alpha=0.2)
    _outer_labels(axes, grid_shape(len(axes))[1], "relative sd of one draw", "relative bias")
    fig.suptitle(
        f"{data.case_name}: bias-variance map at M = 1 ({point.title}); grey: iso relative RMSE",
        fontsize="medium",
    )
    _legend(fig, shown)
    _convention_legend(fig, kinds)
    return fig


def _cell(r: Reading | None) -> str:
    """A heat-map annotation: "0.12" exact, "0.12\n[0.1, 0.14]" measured, "≤0.16" bound."""
    if r is None:
        return ""
    if r.exact_zero:
        return "0"
    if r.kind == "exact":
        return f"<{BIAS_FLOOR:g}" if r.value < BIAS_FLOOR else f"{r.value:.2g}"
    if r.kind == "bound":
        return f"≤{r.high:.2g}"
    if r.kind == "measured":
        return f"{r.value:.2g}\n[{r.low:.2g}, {r.high:.2g}]"
    return f"{r.value:.2g}\n(no interval)"


def _colour_value(r: Reading | None) -> float:
    """The value a heat-map cell is coloured by; NaN (no colour) for a bound, whose colour would
    read as a measured bias (the noisiest unbiased estimator would be the brightest cell)."""
    return math.nan if r is None or r.kind == "bound" else r.value


def bias_heatmap(data: ReportData, point: Point) -> Figure | None:
    """Figure 6: relative bias, estimators x layers (log colour scale, values annotated).

    A cell is coloured by the exact value or the Monte Carlo estimate; when the Monte Carlo
    interval includes 0 the cell is grey and hatched, annotated "≤ bound", and has no colour on
    the scale: there is no measured value to colour."""
    rows = data.select(point, "rel_bias")
    if rows.empty:
        return None
    shown = _ok(data, point)
    layers = list(point.layers)
    readings = {
        (e, ly): from_row(data.row(point, e, ly, "rel_bias")) for e in shown for ly in layers
    }
    table = pd.DataFrame(
        [[_colour_value(readings[e, ly]) for ly in layers] for e in shown],
        index=shown,
        columns=layers,
        dtype=float,
    )
    notes = pd.DataFrame(
        [[_cell(readings[e, ly]) for ly in layers] for e in shown], index=shown, columns=layers
    )
    two_lines = any(r is not None and r.kind in ("measured", "bare") for r in readings.values())
    fig = Figure(
        figsize=(1.05 * len(layers) + 3.0, (0.5 if two_lines else 0.38) * len(shown) + 1.7),
        layout="constrained",
    )
    ax = fig.subplots()
    shown_values = table.clip(lower=BIAS_FLOOR)
    known = shown_values.values[np.isfinite(shown_values.values)]
    vmax = max(float(known.max(initial=0.0)), 1.0)
    sns.heatmap(
        shown_values,
        ax=ax,
        cmap="cividis",
        norm=LogNorm(vmin=BIAS_FLOOR, vmax=vmax),
        vmin=BIAS_FLOOR,  # seaborn's own nanmin/nanmax warn when every cell is a bound
        vmax=vmax,
        annot=notes,
        fmt="",
        annot_kws={"fontsize": 6.5},
        cbar_kws={"label": "relative bias"},
        linewidths=0.5,
    )
    for i, e in enumerate(shown):
        for j, ly in enumerate(layers):
            r = readings[e, ly]
            if r is not None and r.kind == "bound":
                ax.add_patch(
                    Rectangle(
                        (j, i),
                        1,
                        1,
                        fc="0.93",
                        hatch="///",
                        ec="0.75",
                        lw=0,
                        label=f"_bound:{e}:{ly}",
                    )
                )
                ax.text(
                    j + 0.5,
                    i + 0.5,
                    _cell(r),
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="0.1",
                    bbox={"fc": "0.93", "ec": "none", "pad": 1.0},
                )
    ax.set_xticklabels([layer_title(data, point, c) for c in layers], rotation=30, ha="right")
    ax.set(xlabel="", ylabel="")
    ax.set_title(
        f"{data.case_name}: relative bias ({point.title})\n"
        "plain: exact; [low, high]: Monte Carlo 95 % interval;\n"
        "grey hatched ≤ x: Monte Carlo interval includes 0 (upper bound)",
        fontsize="small",
    )
    return fig
