"""The report's figures, each a ``matplotlib.figure.Figure`` built from saved results.

The library never touches pyplot or the backend: figures are constructed directly and saved by
``render``. Each function returns ``None`` when the case has no data for its figure.

1. relative RMSE of the M-draw mean versus M, one log-log panel per layer, CI bands;
2. E cos(mean of M draws, g) versus M per layer with the 15 %-85 % band;
3. relative bias and relative standard deviation versus a swept dimension (depth, width,
   training checkpoint), per estimator;
4. the same versus temperature for the relaxation family (estimators swept over tau);
5. the bias-variance map at M = 1 with iso-RMSE curves;
6. a heat map of relative bias, estimators x layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogFormatter, LogLocator, MaxNLocator, NullLocator

from .load import Point, ReportData
from .style import estimator_style

PANEL = (3.3, 2.7)  # inches per panel
BIAS_FLOOR = 1e-4  # relative biases below this are drawn at it (log axes; exact zeros exist)


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


def _grid(n: int, max_cols: int = 4) -> tuple[Figure, list]:
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(PANEL[0] * cols + 1.8, PANEL[1] * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(fig: Figure, labels: Sequence[str]) -> None:
    handles = [Line2D([], [], label=e, **estimator_style(e).line()) for e in labels]
    fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)


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
        ax.set_xlabel("M (draws averaged)")
        ax.set_ylabel("relative RMSE")
        ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(f"{data.case_name}: relative RMSE vs M ({point.title})", fontsize="medium")
    _legend(fig, shown)
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
        ax.set_xlabel("M (draws averaged)")
        ax.set_ylabel("E cos(mean, g)")
        ax.axhline(1.0, color="0.5", lw=0.6)
        ax.grid(True, alpha=0.3)
    fig.suptitle(
        f"{data.case_name}: cosine to the true gradient ({point.title})", fontsize="medium"
    )
    _legend(fig, shown)
    return fig


def _bias_sd(data: ReportData, point: Point, e: str, layer: str) -> tuple[float, float]:
    """(relative bias, relative standard deviation of one draw) at one point and layer."""
    gn = point.grad_norm(layer, e) if layer in point.meta["exact"]["grad_norm"] else math.nan
    var = data.value(point, e, layer, "variance")
    return data.value(point, e, layer, "rel_bias"), math.sqrt(max(var, 0.0)) / gn


def sweep_figure(
    data: ReportData, dim: str, points: Sequence[Point], estimators: Sequence[str] | None = None
) -> Figure | None:
    """Figure 3 (and 4 with ``dim='tau'``): relative bias and relative sd versus ``dim``.

    Panels: rows are (relative bias, relative sd of one draw); columns are layer0 (farthest from
    the loss) and all binary layers pooled. For ``tau`` the x values come from the variants'
    tau column and a line joins the variants of one family.
    """
    layers = [layer for layer in ("layer0", "all") if layer in data.layers]
    lines: dict[str, list[tuple[float, float, float, str, Point]]] = {}
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
            lines.setdefault(base, []).append((x, 0.0, 0.0, e, p))
    xs_all = {x for v in lines.values() for x, *_ in v}
    if not lines or len(xs_all) < 2:
        return None
    x_min = min(xs_all)
    fig = Figure(figsize=(PANEL[0] * len(layers) + 1.8, PANEL[1] * 2 + 0.4), layout="constrained")
    axes = fig.subplots(2, len(layers), squeeze=False)
    for j, layer in enumerate(layers):
        for base, pts in lines.items():
            pts = sorted(pts, key=lambda t: t[0])
            xs = [t[0] for t in pts]
            bs, sds = zip(*(_bias_sd(data, t[4], t[3], layer) for t in pts), strict=True)
            st = estimator_style(base)
            axes[0][j].plot(xs, np.maximum(bs, BIAS_FLOOR), markersize=4, **st.line())
            # A deterministic estimator's sd is round-off (1e-15): floor it like the bias.
            axes[1][j].plot(xs, np.maximum(sds, BIAS_FLOOR), markersize=4, **st.line())
        for i, what in enumerate(("relative bias", "relative sd (M = 1)")):
            ax = axes[i][j]
            ax.set(yscale="log", title=f"{what}\n{layer_title(data, points[0], layer)}")
            ax.set_xlabel({"tau": "temperature τ"}.get(dim, dim))
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
        axes[0][j].set_ylabel(f"relative bias (floor {BIAS_FLOOR:g})")
        axes[1][j].set_ylabel(f"relative sd (floor {BIAS_FLOOR:g})")
    what = "temperature" if dim == "tau" else dim
    fig.suptitle(f"{data.case_name}: bias and spread vs {what}", fontsize="medium")
    _legend(fig, list(lines))
    return fig


def bias_variance_map(data: ReportData, point: Point) -> Figure | None:
    """Figure 5: relative bias against relative sd at M = 1, iso-RMSE curves b^2 + s^2 = r^2."""
    if data.select(point, "variance").empty or data.select(point, "rel_bias").empty:
        return None
    fig, axes = _grid(len(point.layers))
    shown = _ok(data, point)
    for ax, layer in zip(axes, point.layers, strict=True):
        pts = {e: _bias_sd(data, point, e, layer) for e in shown}
        pts = {e: v for e, v in pts.items() if all(map(math.isfinite, v))}
        if not pts:
            continue
        hi = max(max(max(b, s) for b, s in pts.values()) * 2, 10 * BIAS_FLOOR)
        for r in 10.0 ** np.arange(-3, 3):
            if BIAS_FLOOR < r < hi:
                sd = np.geomspace(BIAS_FLOOR, r * (1 - 1e-9), 200)
                ax.plot(sd, np.sqrt(r**2 - sd**2), color="0.75", lw=0.7, zorder=0)
                ax.annotate(f"{r:g}", (r / 1.6, r / 1.35), fontsize=6, color="0.5")
        for e, (b, s) in pts.items():
            st = estimator_style(e)
            ax.plot(
                [max(s, BIAS_FLOOR)],
                [max(b, BIAS_FLOOR)],
                linestyle="none",
                ms=6,
                color=st.color,
                marker=st.marker,
            )
        ax.set(xscale="log", yscale="log", xlim=(BIAS_FLOOR, hi), ylim=(BIAS_FLOOR / 2, hi))
        _plain_log(ax, "x", "y")
        ax.set_title(layer_title(data, point, layer))
        ax.set_xlabel("relative sd of one draw")
        ax.set_ylabel("relative bias")
        ax.grid(True, alpha=0.2)
    fig.suptitle(
        f"{data.case_name}: bias-variance map at M = 1 ({point.title}); grey: iso relative RMSE",
        fontsize="medium",
    )
    _legend(fig, shown)
    return fig


def bias_heatmap(data: ReportData, point: Point) -> Figure | None:
    """Figure 6: relative bias, estimators x layers (log colour scale, values annotated)."""
    rows = data.select(point, "rel_bias")
    if rows.empty:
        return None
    shown = _ok(data, point)
    table = rows.pivot_table(
        index="estimator", columns="layer", values="value", aggfunc="first"
    ).reindex(index=shown, columns=list(point.layers))
    fig = Figure(
        figsize=(1.0 * len(point.layers) + 3.0, 0.38 * len(shown) + 1.4), layout="constrained"
    )
    ax = fig.subplots()
    shown_values = table.clip(lower=BIAS_FLOOR)
    sns.heatmap(
        shown_values,
        ax=ax,
        cmap="cividis",
        norm=LogNorm(vmin=BIAS_FLOOR, vmax=max(float(np.nanmax(shown_values.values)), 1.0)),
        annot=table.map(lambda v: f"<{BIAS_FLOOR:g}" if v < BIAS_FLOOR else f"{v:.2g}"),
        fmt="",
        annot_kws={"fontsize": 7},
        cbar_kws={"label": "relative bias"},
        linewidths=0.5,
    )
    ax.set_xticklabels(
        [layer_title(data, point, c) for c in table.columns], rotation=30, ha="right"
    )
    ax.set(xlabel="", ylabel="")
    ax.set_title(f"{data.case_name}: relative bias ({point.title})", fontsize="medium")
    return fig
