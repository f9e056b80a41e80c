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

import functools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.legend import Legend
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, LogFormatter, LogLocator, MaxNLocator, NullLocator

from .intervals import EXACT_ZERO, KINDS, Reading, from_row, scaled
from .load import Point, ReportData
from .style import Style, figure_styles

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

PANEL = (3.3, 2.7)  # inches per panel
BIAS_FLOOR = 1e-4  # relative biases below this are drawn at it (log axes; exact zeros exist)
BOUND_MARKER = "v"  # an upper bound: open, pointing down from the interval's upper end
DPI = 100  # the figures' (and the saved PNGs') resolution
# Figures are built and saved under these settings (``render`` saves under them too): text is
# measured while building, for the layout, so it must be measured at the size it is drawn at.
RC: dict[RcKeyType, Any] = {"svg.hashsalt": "estbench", "svg.fonttype": "path", "font.size": 9}

_F = TypeVar("_F", bound=Callable[..., Any])


def _with_rc(make: _F) -> _F:
    @functools.wraps(make)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(RC):
            return make(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _plain_log(ax, *axes: str) -> None:
    """Log axes labelled 0.1, 1, 10 (no mathtext: readable, and rendering is much faster)."""
    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))  # 2 and 5: fewer tick artists
        # Minor ticks get labels only when the axis spans too few decades to show majors.
        axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def layer_title(data: ReportData, point: Point, layer: str) -> str:
    """The panel title: the block's label from its problem kind (``layer3 (head)``, ``layer1
    (Bernoulli η + b)``, ``all binary layers``)."""
    return point.label(layer)


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


AXES = (2.75, 1.95)  # inches of one panel's axes box (PANEL less its share of the margins)
_PAD = 0.08  # inches around the figure's edge and between legends
_RENDERER: list[RendererAgg] = []


def _renderer() -> RendererAgg:
    """An Agg renderer used only to measure text (the figures' layout is computed, not searched
    for: constrained layout drew every tick label twice and was half of the rendering time)."""
    if not _RENDERER:
        _RENDERER.append(RendererAgg(8, 8, DPI))
    return _RENDERER[0]


def _text_size(text: str, size: Any = "medium", **font: Any) -> tuple[float, float]:
    """(width, height) in inches of ``text`` (lines of it) at a font size."""
    prop = FontProperties(size=size, **font)
    r = _renderer()
    lines = text.split("\n")
    w = max(r.get_text_width_height_descent(ln or " ", prop, ismath=False)[0] for ln in lines)
    return w / DPI, prop.get_size_in_points() * 1.2 * len(lines) / 72


def _line_height(size: Any) -> float:
    return FontProperties(size=size).get_size_in_points() * 1.2 / 72


def _tick_label_width(axis: Any) -> float:
    """The widest tick label an axis will draw (major and labelled minor ticks in its view)."""
    lo, hi = sorted(axis.get_view_interval())
    texts = []
    for locs, fmt in (
        (axis.get_majorticklocs(), axis.get_major_formatter()),
        (axis.get_minorticklocs(), axis.get_minor_formatter()),
    ):
        locs = [v for v in locs if lo <= v <= hi]
        fmt.set_locs(locs)
        texts += [fmt(v, k) for k, v in enumerate(locs)]
    size = matplotlib.rcParams["ytick.labelsize"]
    return max((_text_size(t, size)[0] for t in texts if t), default=0.0)


def _legend_size(leg: Legend) -> tuple[float, float]:
    box = leg.get_window_extent(_renderer())
    return box.width / DPI, box.height / DPI


def _stack_legends(
    legends: list[Legend], height: float
) -> tuple[float, list[tuple[Legend, float, float]]]:
    """Legends to the right of the panels, from the top down: stacked when they fit in
    ``height``, else side by side, a legend taller than ``height`` in as many columns as it
    needs. Returns the width they take and each one's (x, y) offset (inches)."""
    sizes = [_legend_size(leg) for leg in legends]
    for k, leg in enumerate(legends):  # too tall: more columns
        if sizes[k][1] > height and len(leg.legend_handles) > 1:
            leg.set_ncols(math.ceil(sizes[k][1] / height))
            sizes[k] = _legend_size(leg)
    stacked = sum(h for _, h in sizes) + 3 * _PAD * (len(sizes) - 1) <= height
    placed = []
    x = y = 0.0
    for leg, (w, h) in zip(legends, sizes, strict=True):
        placed.append((leg, x, y))
        if stacked:
            y += h + 3 * _PAD
        else:
            x += w + 3 * _PAD
    if not sizes:
        return 0.0, placed
    width = max(w for w, _ in sizes) if stacked else x - 3 * _PAD
    return width, placed


def _arrange(
    fig: Figure,
    axes: Sequence,
    rows: int,
    cols: int,
    *,
    title_lines: int = 1,
    legends: Sequence[Legend | None] = (),
) -> None:
    """Size the figure and place its panels, suptitle and legends (all inches, measured text):
    the panels' axes are ``AXES`` each; tick labels, axis labels and titles get the room their
    text takes; the legends sit right of the panels, below the suptitle, never over it."""
    sup = fig.get_suptitle()
    sup_h = (_text_size(sup, "medium")[1] + 2 * _PAD) if sup else _PAD
    title_h = title_lines * _line_height("large") + 0.1
    tick_h = _line_height("medium") + 0.1  # tick length and pad, 3.5 pt each
    label_h = _line_height("medium") + 0.06
    # Shared x: tick labels and x labels between rows only above an empty slot of the grid.
    vgap = title_h + 0.12 + (tick_h + label_h if rows * cols > len(axes) else 0.0)
    hgap = 0.22
    aw, ah = AXES
    top = sup_h + title_h
    bottom = _PAD + tick_h + label_h
    height = top + rows * ah + (rows - 1) * vgap + bottom
    shown = [leg for leg in legends if leg is not None]
    legend_w, placed = _stack_legends(shown, height - sup_h - _PAD)
    right = legend_w + (3 * _PAD if shown else _PAD)

    def adjust(left: float) -> float:
        width = left + cols * aw + (cols - 1) * hgap + right
        fig.set_size_inches(width, height)
        fig.subplots_adjust(
            left=left / width,
            right=(width - right) / width,
            bottom=bottom / height,
            top=(height - top) / height,
            wspace=hgap / aw,
            hspace=vgap / ah,
        )
        return width

    for ax in axes:
        ax.set_title(ax.get_title(), y=1.0)  # a fixed title position: no tick-label search
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            if axis.get_scale() == "log" and lo > 0 and hi / lo > 10**2.5:
                axis.set_minor_locator(NullLocator())  # majors suffice; each tick costs
    adjust(0.8)  # the tick locators need the axes' size
    width = adjust(_PAD + label_h + 0.12 + _tick_label_width(axes[0].yaxis))
    for leg, x, y in placed:
        anchor = ((width - right + 2 * _PAD + x) / width, 1 - (sup_h + y) / height)
        leg.set_bbox_to_anchor(anchor, transform=fig.transFigure)
    if sup:
        getattr(fig, "_suptitle").set_y(1 - _PAD / height)  # noqa: B009 (no public getter)


def _grid(n: int, max_cols: int = 4, share: bool = True) -> tuple[Figure, list]:
    """A figure of ``n`` panels, sharing both axes when ``share`` (tick labels on the outer
    panels; a panel above an empty slot keeps its x tick labels). ``_arrange`` sizes it."""
    rows, cols = grid_shape(n, max_cols)
    fig = Figure(figsize=(PANEL[0] * cols + 1.8, PANEL[1] * rows + 0.4), dpi=DPI)
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


def _legend(fig: Figure, styles: dict[str, Style]) -> Legend:
    handles = [Line2D([], [], label=e, lw=1.2, **st.line()) for e, st in styles.items()]
    return fig.legend(
        handles=handles,
        loc="upper left",
        fontsize="small",
        frameon=False,
        borderaxespad=0,
        borderpad=0,
        handlelength=2.6,
    )


CONVENTION = {
    "exact": "exact (path enumeration)",
    "zero": '0 (exact, or round-off\nbelow 1e-9): drawn\non the axis\'s "0" line',
    "measured": "Monte Carlo value,\nbar: 95 % interval",
    "band": "band: 95 % interval\n(Monte Carlo)",
    "cos": "Monte Carlo mean,\nbar: 95 % interval\n(mean ± 1.96 se)",
    "spread": "band: 15 %-85 % of the\ngroups (a spread, not\nan interval)",
    "bound": (
        "upper bound,\nconsistent with 0:\nthe 95 % interval\nreaches 0 (or the floor),\n"
        "or the unbiasedness\ntest keeps 0"
    ),
    "bare": "Monte Carlo value,\nno interval",
    "mcref": "grey background: a\nMonte Carlo reference\n(its error is in\nthe intervals)",
}


def _convention_legend(fig: Figure, kinds: set[str]) -> Legend | None:
    """The second legend: what each marker style means (only the styles drawn)."""
    grey = "0.35"
    measured = (
        Line2D([], [], ls="none", marker="|", ms=12, mew=1.0, color=grey),
        Line2D([], [], ls="none", marker="o", ms=5, color=grey),
    )
    handles: dict[str, object] = {
        "exact": Line2D([], [], ls="none", marker="o", ms=5, color=grey),
        "zero": (
            Line2D([], [], ls="-", lw=0.8, color="0.6"),
            Line2D([], [], ls="none", marker="o", ms=5, color=grey),
        ),
        "measured": measured,
        "band": Patch(color=grey, alpha=0.25, lw=0),
        "cos": measured,
        "spread": Patch(color=grey, alpha=0.15, lw=0),
        "bound": Line2D([], [], ls="none", marker=BOUND_MARKER, ms=6.5, mfc="none", mec=grey),
        "bare": Line2D([], [], ls="none", marker="o", ms=5, mfc="none", mec=grey),
        "mcref": Patch(color="0.5", alpha=0.2, lw=0),
    }
    shown = [k for k in CONVENTION if k in kinds]
    if not shown:
        return None
    return fig.legend(
        handles=[handles[k] for k in shown],
        labels=[CONVENTION[k] for k in shown],
        handler_map={tuple: HandlerTuple(ndivide=1)},
        loc="upper left",
        fontsize="x-small",
        title="markers",
        title_fontsize="small",
        frameon=False,
        borderaxespad=0,
        borderpad=0,
        alignment="left",
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


def _band(ax: Any, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, **kw: Any) -> None:
    """``fill_between`` for finite x, lo, hi (one polygon, no masking): a tenth of its cost,
    which was a fifth of a report's drawing time for 22 estimators x 4 panels x 2 figures."""
    verts = np.concatenate([np.column_stack([x, lo]), np.column_stack([x[::-1], hi[::-1]])])
    ax.add_collection(PolyCollection([verts], **kw), autolim=False)
    ax.update_datalim(verts)


def _bars(ax: Any, bars: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]) -> None:
    """Vertical interval bars of several estimators, (x, low, high, colour) each, as one
    collection (``vlines`` per estimator costs more than drawing them)."""
    segs, colours = [], []
    for x, lo, hi, colour in bars:
        segs += [((a, b), (a, c)) for a, b, c in zip(x, lo, hi, strict=True)]
        colours += [colour] * len(x)
    if segs:
        ax.add_collection(
            LineCollection(segs, colors=colours, lw=0.9, label="_intervals"), autolim=False
        )
        ax.update_datalim(np.array(segs).reshape(-1, 2))


def _band_alpha(n: int) -> float:
    """Bands of many estimators pile up: each is fainter the more there are."""
    return max(0.06, min(0.18, 1.2 / max(n, 1)))


def _zero_floor(values: np.ndarray) -> float:
    """The "0" line of a log axis: a power of ten one decade below the smallest value above
    round-off (values at or below ``EXACT_ZERO`` are zeros, drawn on that line)."""
    pos = values[np.isfinite(values) & (values > EXACT_ZERO)]
    return 10.0 ** (math.floor(math.log10(float(pos.min()))) - 1) if len(pos) else 1e-3


def _zero_axis(ax: Any, floor: float) -> None:
    """Mark a log y axis's floor as "0": a grey line, its tick labelled 0."""
    ax.axhline(floor, color="0.6", lw=0.8, zorder=1)
    fmt = ax.yaxis.get_major_formatter()
    ax.yaxis.set_major_formatter(
        FuncFormatter(lambda v, i: "0" if math.isclose(v, floor) else fmt(v, i))
    )
    ax.set_ylim(bottom=floor / 10**0.25)


@_with_rc
def rmse_vs_M(data: ReportData, point: Point) -> Figure | None:
    """Figure 1: relative RMSE of the M-draw mean versus M, per layer (the seed study's figure).

    Exact values (path enumeration) are filled markers on the line; Monte Carlo values have the
    95 % bootstrap band. A zero (exact, or below ``EXACT_ZERO``: round-off) is drawn on the
    axis's "0" line, a decade below the smallest other value: on a log axis a round-off 1e-17
    would stretch the axis over ten empty decades, and an exact 0 would vanish."""
    rows = data.select(point, "rel_rmse")
    if rows.empty or len(data.Ms()) < 2:
        return None
    fig, axes = _grid(len(point.layers))
    shown = _ok(data, point)
    styles = figure_styles(shown)
    floor = _zero_floor(rows["value"].to_numpy(dtype=float))
    alpha = _band_alpha(len(shown))
    kinds: set[str] = set()
    for ax, layer in zip(axes, point.layers, strict=True):
        for e in shown:
            r = data.series(point, e, layer, "rel_rmse")
            if r is None:
                continue
            st = styles[e]
            m, v = r["M"], r["value"]
            zero = v <= EXACT_ZERO
            y = np.where(zero, floor, v)
            ax.plot(m, y, markersize=3, linewidth=1.2, label=f"_line:{e}", **st.line())
            if zero.any():
                ax.plot(m[zero], y[zero], ls="none", marker=st.marker, ms=4, color=st.color,
                        label=f"_zero:{e}", zorder=3)  # fmt: skip
                kinds.add("zero")
            lo, hi = r["ci_low"], r["ci_high"]
            ok = np.isfinite(lo) & np.isfinite(hi) & ~zero
            if ok.any():
                _band(ax, m[ok], np.maximum(lo[ok], floor), hi[ok], color=st.color,
                      alpha=alpha, lw=0, label=f"_band:{e}")  # fmt: skip
                kinds.add("band")
        ax.set(xscale="log", yscale="log", title=layer_title(data, point, layer))
        _plain_log(ax, "x", "y")
        ax.grid(True, which="major", alpha=0.3)
    if "zero" in kinds:
        for ax in axes:  # shared y: the formatter of each panel
            _zero_axis(ax, floor)
    rows_, cols = grid_shape(len(axes))
    _outer_labels(axes, cols, "M (draws averaged)", "relative RMSE")
    fig.suptitle(f"{data.case_name}: relative RMSE vs M ({point.title})", fontsize="medium")
    legends = [_legend(fig, styles), _convention_legend(fig, kinds)]
    _arrange(fig, axes, rows_, cols, legends=legends)
    return fig


@_with_rc
def cos_vs_M(data: ReportData, point: Point) -> Figure | None:
    """Figure 2: E cos(mean of M draws, g) versus M per layer: the Monte Carlo mean with its
    95 % interval (± 1.96 se, mostly shorter than the marker) and the 15 %-85 % spread of the
    groups as a faint band (fainter the more estimators share the panel)."""
    rows = data.select(point, "cos_mean")
    if rows.empty:
        return None
    fig, axes = _grid(len(point.layers))
    shown = _ok(data, point)
    styles = figure_styles(shown)
    alpha = _band_alpha(len(shown))
    kinds: set[str] = set()
    for ax, layer in zip(axes, point.layers, strict=True):
        bars = []
        for e in shown:
            r = data.series(point, e, layer, "cos_mean")
            if r is None:
                continue
            st = styles[e]
            m, v, se = r["M"], r["value"], r["se"]
            ax.plot(m, v, markersize=3, linewidth=1.2, label=f"_measured:{e}", **st.line())
            kinds.add("cos" if np.isfinite(se).any() else "bare")
            ok = np.isfinite(se) & (se > 0)
            if ok.any():
                bars.append((m[ok], (v - 1.96 * se)[ok], (v + 1.96 * se)[ok], st.color))
            q15 = data.series(point, e, layer, "cos_q15")
            q85 = data.series(point, e, layer, "cos_q85")
            lo = q15["value"] if q15 is not None else np.array([])
            hi = q85["value"] if q85 is not None else np.array([])
            if len(lo) == len(m) == len(hi) and np.isfinite([lo, hi]).all():
                _band(ax, m, lo, hi, color=st.color, alpha=alpha * 0.8, lw=0,
                      label=f"_spread:{e}")  # fmt: skip
                kinds.add("spread")
        _bars(ax, bars)
        ax.set(xscale="log", ylim=(-1.05, 1.05), title=layer_title(data, point, layer))
        _plain_log(ax, "x")
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.axhline(1.0, color="0.5", lw=0.6)
        ax.grid(True, alpha=0.3)
    rows_, cols = grid_shape(len(axes))
    _outer_labels(axes, cols, "M (draws averaged)", "E cos(mean, g)")
    fig.suptitle(
        f"{data.case_name}: cosine to the true gradient ({point.title})", fontsize="medium"
    )
    legends = [_legend(fig, styles), _convention_legend(fig, kinds)]
    _arrange(fig, axes, rows_, cols, legends=legends)
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


@_with_rc
def sweep_figure(
    data: ReportData, dim: str, points: Sequence[Point], estimators: Sequence[str] | None = None
) -> Figure | None:
    """Figure 3 (and 4 with ``dim='tau'``): relative bias, relative sd and relative RMSE of one
    draw versus ``dim``, each with its interval.

    Panels: rows are (relative bias, relative sd, relative RMSE at the smallest M); columns are
    the first block (layer0: farthest from the loss) and all binary layers pooled. All panels
    share both axes: the three quantities are relative to the same ||g||
    (RMSE^2 = bias^2 + sd^2/M), so a bias reads against the spread that hides it. For ``tau``
    the x values come from the variants' tau column and a line joins the variants of one family.
    """
    # the first block (layer0 for layered kinds) and, where there is one, ``all``
    if not data.layers:
        return None
    layers = list(dict.fromkeys(ly for ly in (data.layers[0], "all") if ly in data.layers))
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
    fig = Figure(figsize=(PANEL[0] * len(layers) + 2.2, PANEL[1] * len(what) + 0.4), dpi=DPI)
    axes = fig.subplots(len(what), len(layers), squeeze=False, sharex=True, sharey=True)
    styles = figure_styles(lines)
    kinds: set[str] = set()
    for j, layer in enumerate(layers):
        for base, pts in lines.items():
            pts = sorted(pts, key=lambda t: t[0])
            xs = [t[0] for t in pts]
            cols = list(zip(*(_readings(data, t[2], t[1], layer, m1) for t in pts), strict=True))
            st = styles[base]
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
    mc_xs = sorted(
        {float(p.values[dim]) for p in points if _mc_reference(p)} if dim != "tau" else set()
    )
    if mc_xs:
        kinds.add("mcref")
        for ax in axes.ravel():
            _mark_mc(ax, mc_xs, sorted(xs_all))
    what_x = "temperature" if dim == "tau" else dim
    fig.suptitle(f"{data.case_name}: bias and spread vs {what_x}", fontsize="medium")
    legends = [_legend(fig, styles), _convention_legend(fig, kinds)]
    _arrange(fig, axes.ravel().tolist(), len(what), len(layers), title_lines=2, legends=legends)
    return fig


def _mc_reference(point: Point) -> bool:
    """Whether a point was measured against a Monte Carlo reference (results.json)."""
    return (point.meta.get("reference") or {}).get("kind") == "mc"


def _mark_mc(ax: Any, mc_xs: Sequence[float], xs: Sequence[float]) -> None:
    """A grey background behind the x values whose points have a Monte Carlo reference."""
    gaps = [b - a for a, b in zip(xs, xs[1:], strict=False) if b > a]
    half = 0.3 * min(gaps) if gaps else 0.5
    log = ax.get_xscale() != "linear"
    for x in mc_xs:
        lo, hi = (x / 1.12, x * 1.12) if log and x > 0 else (x - half, x + half)
        ax.axvspan(lo, hi, color="0.5", alpha=0.2, lw=0, zorder=0, label="_mcref")


@_with_rc
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
    styles = figure_styles(shown)
    kinds: set[str] = set()
    for ax, layer in zip(axes, point.layers, strict=True):
        for level in 10.0 ** np.arange(-3, 3):
            if BIAS_FLOOR < level < hi:
                grid = np.geomspace(BIAS_FLOOR, level * (1 - 1e-9), 200)
                ax.plot(grid, np.sqrt(level**2 - grid**2), color="0.75", lw=0.7, zorder=0)
                ax.annotate(f"{level:g}", (level / 1.6, level / 1.35), fontsize=6, color="0.5")
        for e, (b, s) in per_layer[layer].items():
            st = styles[e]
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
    rows, cols = grid_shape(len(axes))
    _outer_labels(axes, cols, "relative sd of one draw", "relative bias")
    fig.suptitle(
        f"{data.case_name}: bias-variance map at M = 1 ({point.title}); grey: iso relative RMSE",
        fontsize="medium",
    )
    legends = [_legend(fig, styles), _convention_legend(fig, kinds)]
    _arrange(fig, axes, rows, cols, legends=legends)
    return fig


def _g2(v: float) -> str:
    """Two significant digits without an exponent below 1e5: 360, 0.24, 1.1."""
    return f"{float(f'{v:.2g}'):g}"


def _cell(r: Reading | None) -> str:
    """A heat-map annotation: "0.12" exact, "0.12\n[0.1, 0.14]" measured, "≤0.16" bound."""
    if r is None:
        return ""
    if r.exact_zero:
        return "0"
    if r.kind == "exact":
        return f"<{BIAS_FLOOR:g}" if r.value < BIAS_FLOOR else _g2(r.value)
    if r.kind == "bound":
        return f"≤{_g2(r.high)}"
    if r.kind == "measured":
        return f"{_g2(r.value)}\n[{_g2(r.low)}, {_g2(r.high)}]"
    return f"{_g2(r.value)}\n(no interval)"


def _colour_value(r: Reading | None) -> float:
    """The value a heat-map cell is coloured by; NaN (no colour) for a bound, whose colour would
    read as a measured bias (the noisiest unbiased estimator would be the brightest cell)."""
    return math.nan if r is None or r.kind == "bound" else r.value


def _dark(rgba: Sequence[float]) -> bool:
    """Whether a cell colour needs white text (relative luminance, as seaborn decides)."""
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2] <= 0.408


CELL_FONT = 7.5  # heat-map annotations (pt)


@_with_rc
def bias_heatmap(data: ReportData, point: Point) -> Figure | None:
    """Figure 6: relative bias, estimators x layers (log colour scale, values annotated).

    A cell is coloured by the exact value or the Monte Carlo estimate; when the Monte Carlo
    interval includes 0 the cell is grey and hatched, annotated "≤ bound", and has no colour on
    the scale: there is no measured value to colour. With more layers than estimators (depth 12)
    the map is transposed (layers as rows), so it stays narrow enough to read on a page."""
    rows = data.select(point, "rel_bias")
    if rows.empty:
        return None
    shown = _ok(data, point)
    layers = list(point.layers)
    readings = {
        (e, ly): from_row(data.row(point, e, ly, "rel_bias")) for e in shown for ly in layers
    }
    titles = [layer_title(data, point, c) for c in layers]
    across = len(layers) > len(shown)  # transposed: layers as rows
    row_keys, col_keys = (layers, shown) if across else (shown, layers)
    row_names, col_names = (titles, shown) if across else (shown, titles)

    def reading(i: int, j: int) -> Reading | None:
        e, ly = (col_keys[j], row_keys[i]) if across else (row_keys[i], col_keys[j])
        return readings[e, ly]

    nr, nc = len(row_keys), len(col_keys)
    values = np.array([[_colour_value(reading(i, j)) for j in range(nc)] for i in range(nr)])
    values = np.where(np.isfinite(values), np.maximum(values, BIAS_FLOOR), np.nan)
    vmax = max(float(np.nanmax(values, initial=0.0)), 1.0)
    two_lines = any(r is not None and r.kind in ("measured", "bare") for r in readings.values())
    cell_w, cell_h = 1.0, (0.46 if two_lines else 0.32)

    # The layout, measured: row names on the left, column names rotated 30 degrees below.
    title = (
        f"{data.case_name}: relative bias ({point.title})\n"
        "plain: exact; [low, high]: Monte Carlo 95 % interval;\n"
        "grey hatched ≤ x: Monte Carlo interval includes 0 (upper bound)"
    )
    name_w = max(_text_size(t)[0] for t in row_names)
    col_sizes = [_text_size(t) for t in col_names]
    sin, cos = math.sin(math.radians(30)), math.cos(math.radians(30))
    below = max(w * sin + h * cos for w, h in col_sizes)
    reach = col_sizes[0][0] * cos - cell_w / 2  # the first column's name, left of the map
    left = max(_PAD + name_w + 0.12, _PAD + reach)
    bottom = _PAD + below + 0.1
    top = _text_size(title, "small")[1] + 2 * _PAD
    right = 1.25
    W, H = left + nc * cell_w + right, top + nr * cell_h + bottom
    fig = Figure(figsize=(W, H), dpi=DPI)
    ax = fig.add_axes((left / W, bottom / H, nc * cell_w / W, nr * cell_h / H))
    cax = fig.add_axes(((W - right + 0.2) / W, bottom / H, 0.16 / W, nr * cell_h / H))
    norm = LogNorm(vmin=BIAS_FLOOR, vmax=vmax)
    mesh = ax.pcolormesh(
        np.ma.masked_invalid(values), cmap="cividis", norm=norm, edgecolors="white", lw=0.5
    )
    cbar = fig.colorbar(mesh, cax=cax)
    cbar.set_label("relative bias")
    cax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set(xlim=(0, nc), ylim=(nr, 0), xlabel="", ylabel="")
    ax.set_xticks(np.arange(nc) + 0.5, col_names, rotation=30, ha="right")
    ax.set_yticks(np.arange(nr) + 0.5, row_names)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    for i in range(nr):
        for j in range(nc):
            r = reading(i, j)
            if r is None:
                continue
            e = col_keys[j] if across else row_keys[i]
            ly = row_keys[i] if across else col_keys[j]
            if r.kind == "bound":
                ax.add_patch(
                    Rectangle(
                        (j, i), 1, 1, fc="0.93", hatch="///", ec="0.75", lw=0,
                        label=f"_bound:{e}:{ly}",
                    )
                )  # fmt: skip
                ax.text(
                    j + 0.5, i + 0.5, _cell(r), ha="center", va="center", fontsize=CELL_FONT,
                    color="0.1", bbox={"fc": "0.93", "ec": "none", "pad": 1.0},
                )  # fmt: skip
                continue
            v = values[i, j]
            dark = math.isfinite(v) and _dark(mesh.cmap(norm(v)))
            ax.text(
                j + 0.5, i + 0.5, _cell(r), ha="center", va="center", fontsize=CELL_FONT,
                color="white" if dark else "0.1",
            )  # fmt: skip
    fig.text(0.5, 1 - _PAD / H, title, ha="center", va="top", fontsize="small")
    return fig
