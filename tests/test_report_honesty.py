"""Figures, tables and findings that cannot mislead (issue 14): a Monte Carlo bias whose 95 %
interval includes 0 is shown as an upper bound -- never as a point or a ranked number -- while
exact values are filled and marked exact and measured biases keep their intervals.

The stored fixture (tests/data/make_report_fixture.py) has ``noisy-reinforce``: REINFORCE plus
zero-mean noise, unbiased, whose relative bias at depth 1 (layer0 and all layers) reads 1.13 --
larger than Concrete's measured 0.24 -- with the interval [0, 3.22]. A report that drew or
ranked it by that number would call the unbiased estimator the most biased one.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from estbench.report import figures as F
from estbench.report.findings import bias_ranking, findings
from estbench.report.intervals import Reading, classify
from estbench.report.load import load_report_data
from estbench.report.style import estimator_style
from estbench.report.tables import leaderboard, per_layer

FIXTURE = Path(__file__).parent / "data" / "report-fixture" / "report-fixture"
NOISY = "noisy-reinforce"


@pytest.fixture(scope="module")
def data():
    return load_report_data(FIXTURE)


def _row(data, e, layer, depth=1):
    f = data.frame
    sel = (
        (f["estimator"] == e)
        & (f["layer"] == layer)
        & (f["metric"] == "rel_bias")
        & (f["point"] == data.points[depth - 1].pid)
    )
    return f[sel].iloc[0]


def _artists(ax, label):
    return [a for a in [*ax.lines, *ax.collections, *ax.patches] if a.get_label() == label]


def test_the_fixture_has_the_case_the_issue_describes(data):
    noisy = _row(data, NOISY, "layer0")
    concrete = _row(data, "concrete", "layer0")
    assert noisy["method"] == "mc" and noisy["ci_low"] == 0.0
    assert noisy["value"] > 1.0 > concrete["value"]  # a naive ranking puts it last
    assert concrete["method"] == "mc" and concrete["ci_low"] > 0.1  # excludes 0
    assert _row(data, "reinforce", "layer0")["method"] == "exact"


def test_classify_readings():
    assert classify("exact", 1e-16, None, None).exact_zero
    assert classify("mc", 1.6, 0.0, 3.6).kind == "bound"
    assert classify("mc", 0.24, 0.22, 0.26).kind == "measured"
    # On a log axis an interval that reaches the floor cannot be told from one reaching 0.
    assert classify("mc", 2e-4, 5e-5, 3e-4, floor=1e-4).kind == "bound"
    assert classify("mc", 2e-4, 5e-5, 3e-4).kind == "measured"
    # A deterministic estimator: its draws never vary, the zero-width interval is no bound.
    assert classify("mc", 0.0, 0.0, 0.0).kind == "measured"
    assert classify("mc", 0.5, math.nan, math.nan).kind == "bare"
    assert classify("mc", math.nan, 0.0, 1.0) is None
    assert Reading("bound", 1.6, 0.0, 3.6).top == 3.6


@pytest.mark.parametrize("layer_col", [0, 1])  # layer0, all binary layers
def test_sweep_figure_draws_a_noisy_unbiased_bias_as_an_open_upper_bound(data, layer_col):
    fig = F.sweep_figure(data, "depth", list(data.points))
    ax = fig.axes[layer_col]  # row 0: relative bias
    assert ax.get_title().startswith("relative bias")
    (bound,) = _artists(ax, f"_bound:{NOISY}")
    assert bound.get_marker() == F.BOUND_MARKER == "v"
    assert bound.get_markerfacecolor() == "none"
    assert to_rgba(bound.get_markeredgecolor()) == to_rgba(estimator_style(NOISY).color)
    # At depth 1 it sits at the interval's upper end, not at the noisy point estimate.
    layer = ("layer0", "all")[layer_col]
    xs, ys = list(bound.get_xdata()), list(bound.get_ydata())
    assert ys[xs.index(1.0)] == pytest.approx(_row(data, NOISY, layer)["ci_high"])
    assert ys[xs.index(1.0)] != pytest.approx(_row(data, NOISY, layer)["value"])
    # Never a filled point, and no solid line through it.
    for kind in ("exact", "measured", "bare"):
        assert _artists(ax, f"_{kind}:{NOISY}") == []
    (line,) = _artists(ax, f"_line:{NOISY}")
    assert np.isnan(line.get_ydata()).all()
    (faint,) = _artists(ax, f"_faint:{NOISY}")
    assert faint.get_linestyle() == ":"


def test_sweep_figure_draws_exact_values_filled_and_measured_ones_with_their_interval(data):
    fig = F.sweep_figure(data, "depth", list(data.points))
    ax = fig.axes[0]
    (exact,) = _artists(ax, "_exact:reinforce")
    assert exact.get_marker() == estimator_style("reinforce").marker
    assert exact.get_fillstyle() == "full" and exact.get_markerfacecolor() != "none"
    assert _artists(ax, "_interval:reinforce") == []  # exact: no interval to draw
    # Negative control: an mc bias whose interval excludes 0 is a filled point with its bar.
    (measured,) = _artists(ax, "_measured:concrete")
    assert measured.get_marker() == estimator_style("concrete").marker
    assert measured.get_markerfacecolor() != "none"
    assert _artists(ax, "_bound:concrete") == []
    (bars,) = _artists(ax, "_interval:concrete")
    row = _row(data, "concrete", "layer0")
    first = bars.get_segments()[0]  # depth 1
    assert first[0][0] == first[1][0] == 1.0
    assert sorted([first[0][1], first[1][1]]) == pytest.approx([row["ci_low"], row["ci_high"]])
    # The convention is on the figure.
    texts = [t.get_text() for t in fig.legends[1].get_texts()]
    assert texts[0] == "exact (path enumeration)"
    assert any("upper bound" in t and "consistent with 0" in t for t in texts)
    assert any("95 % interval" in t for t in texts)


def test_sweep_figure_shares_axes_and_keeps_rmse_bands(data):
    fig = F.sweep_figure(data, "depth", list(data.points))
    assert len(fig.axes) == 6  # bias, sd, RMSE x (layer0, all)
    first = fig.axes[0]
    for ax in fig.axes[1:]:
        assert first.get_shared_x_axes().joined(first, ax)
        assert first.get_shared_y_axes().joined(first, ax)
    rmse = fig.axes[4]
    assert rmse.get_title().startswith("relative RMSE (M = 1)")
    assert _artists(rmse, "_band:concrete")  # Monte Carlo RMSE: a band
    assert not _artists(rmse, "_band:reinforce")  # exact: none


def test_bias_variance_map_draws_the_bound_open_and_the_measured_bias_filled(data):
    fig = F.bias_variance_map(data, data.points[0])
    panels = [ax for ax in fig.axes if ax.get_visible()]
    ax = panels[0]
    (bound,) = _artists(ax, f"_bound:{NOISY}")
    assert bound.get_marker() == "v" and bound.get_markerfacecolor() == "none"
    assert bound.get_ydata()[0] == pytest.approx(_row(data, NOISY, "layer0")["ci_high"])
    (measured,) = _artists(ax, "_measured:concrete")
    assert measured.get_markerfacecolor() != "none"
    assert _artists(ax, "_interval:concrete") and _artists(ax, "_sd_interval:concrete")
    (exact,) = _artists(ax, "_exact:st")
    assert exact.get_fillstyle() == "full"
    for other in panels[1:]:
        assert ax.get_shared_y_axes().joined(ax, other)


def test_heatmap_gives_a_bound_no_colour_and_writes_it_as_a_bound(data):
    fig = F.bias_heatmap(data, data.points[0])
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "≤3.2" in texts and "1.1" not in " ".join(texts)
    assert _artists(ax, f"_bound:{NOISY}:layer0")[0].get_hatch() == "///"
    mesh = ax.collections[0]
    shown = [t.get_text() for t in ax.get_yticklabels()]
    row = shown.index(NOISY)
    cells = np.ma.getmaskarray(mesh.get_array()).reshape(len(shown), -1)
    assert cells[row].all()  # no colour on the scale
    assert not cells[shown.index("concrete")].any()
    assert "0.24\n[0.23, 0.26]" in texts


def test_tables_write_a_bound_as_consistent_with_zero(data):
    p = data.points[0]
    table = leaderboard(data, p)
    col = table.header.index("rel. bias")
    cells = {r[0]: r[col] for r in table.rows}
    assert cells[f"`{NOISY}`"] == "≤ 3.2 (consistent with 0)"
    assert cells["`reinforce`"] == "0 (exact)"
    assert cells["`st`"] == "0.086 (exact)"
    assert cells["`concrete`"] == "0.242 [0.226, 0.257]"
    assert cells["`arm`"].endswith("(consistent with 0)")
    assert "consistent with 0" in (table.caption or "")
    layers = per_layer(data, p)
    noisy = next(r for r in layers.rows if r[0] == f"`{NOISY}`")
    assert noisy[1].startswith("≤ 3.2 (consistent with 0) / ")
    assert "1.13" not in " ".join(noisy)


def test_findings_do_not_rank_a_bias_consistent_with_zero(data):
    p = data.points[0]
    text = bias_ranking(data, p, "layer0")
    zero, consistent, known = text.split("; ")
    assert zero == "0 (exact): `reinforce`, `psa`"
    assert consistent.startswith("consistent with 0")
    assert f"`{NOISY}` ≤ 3.2" in consistent and "`arm` ≤" in consistent
    assert NOISY not in known and "arm" not in known
    assert known.startswith("known, smallest first: `st` 0.086 (exact) < ")
    assert known.endswith("< `concrete` 0.242 [0.226, 0.257]")
    headline, detail = findings(data, p)
    line = next(x for x in headline if x.startswith("Relative bias (all binary layers)"))
    assert f"`{NOISY}` ≤ 3.2" in line and "1.13" not in line
    assert any(x.startswith("layer0: relative bias: 0 (exact)") for x in detail)
    # No "levels off at" claim for a bias that is not measured.
    assert not any(NOISY in x and "levels off" in x for x in detail)


@pytest.mark.parametrize("n", range(1, 31))
def test_no_lone_panel_on_a_row(n):
    rows, cols = F.grid_shape(n)
    assert rows * cols >= n > (rows - 1) * cols
    assert cols <= 5
    if rows > 1:
        assert n - (rows - 1) * cols >= 2


def test_per_m_figures_share_axes_and_put_no_panel_alone(data):
    p = data.points[0]  # depth 1: layer0, layer1 (head), all
    for make in (F.rmse_vs_M, F.cos_vs_M):
        fig = make(data, p)
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert len(panels) == 3
        for ax in panels[1:]:
            assert panels[0].get_shared_y_axes().joined(panels[0], ax)
            assert panels[0].get_shared_x_axes().joined(panels[0], ax)


def test_a_point_where_every_bias_is_a_bound_still_renders(data):
    """Seaborn's own colour range is all-NaN there; the heat map passes its range explicitly."""
    keep = ("arm", NOISY)
    only = replace(data, frame=data.frame[data.frame["estimator"].isin(keep)], estimators=keep)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        heat = F.bias_heatmap(only, only.points[0])
        heat.savefig(io.BytesIO(), format="png")
    assert len(_artists(heat.axes[0], "_bound:arm:layer0")) == 1
    fig = F.sweep_figure(only, "depth", list(only.points))
    assert _artists(fig.axes[0], "_bound:arm") and not _artists(fig.axes[0], "_measured:arm")


def test_a_bias_the_unbiasedness_test_keeps_is_a_bound_even_if_its_interval_excludes_zero():
    """MuProp at depth 12 of the depth sweep: 235 [17, 332] with heavy-tailed draws, while the
    run's multiplicity-corrected unbiasedness test keeps zero bias: drawn and written as a bound.
    Negative control: the same numbers with the test rejecting zero are a measured bias."""
    from estbench.report.intervals import from_row

    row = {"method": "mc", "value": 235.0, "ci_low": 17.0, "ci_high": 332.0, "metric": "rel_bias"}
    kept = from_row({**row, "zero_bias_kept": True})
    assert kept is not None and kept.kind == "bound" and kept.top == 332.0
    rejected = from_row({**row, "zero_bias_kept": False})
    assert rejected is not None and rejected.kind == "measured" and rejected.top == 235.0
    other = from_row({**row, "metric": "rel_rmse", "zero_bias_kept": True})  # not a bias
    assert other is not None and other.kind == "measured"


def test_no_estimator_style_looks_like_an_upper_bound_and_a_figures_styles_are_unique():
    """Bounds are open down-triangles joined by dotted lines: no estimator gets either, and the
    (colour, marker, line style) of every estimator in a figure is its own, for the 29
    built-ins with variants and plugins among them."""
    from estbench.report.style import LINESTYLES, SLOTS, figure_styles

    labels = [*SLOTS, "concrete(tau=0.1)", "concrete(tau=0.5)", "binaryconnect(proxy=hardtanh)"]
    labels += ["weight-concrete(tau=0.1)", "my-plugin", "my-plugin-2", "my-plugin(k=1)"]
    styles = figure_styles(labels)
    assert len({st.key() for st in styles.values()}) == len(labels)
    assert len({(st.color, st.marker) for st in styles.values()}) == len(labels)
    for st in [*styles.values(), *(estimator_style(e) for e in labels)]:
        assert st.marker != F.BOUND_MARKER
        assert st.linestyle not in (":", "dotted")
        if st.linestyle != "-":  # dashes: the longest "on" segment is a dash, not a dot
            assert max(st.linestyle[1][::2]) >= 4.0
    assert all(ls != ":" for ls in LINESTYLES)


def test_a_zero_at_round_off_does_not_stretch_the_log_axis(data):
    """An exact relative RMSE of 0 or 1e-17 (round-off) sits on the axis's "0" line a decade
    below the smallest other value, not at 1e-17."""
    frame = data.frame.copy()
    sel = (frame["estimator"] == "reinforce") & (frame["metric"] == "rel_rmse")
    frame.loc[sel & (frame["layer"] == "layer0"), ["value", "ci_low", "ci_high"]] = 1e-17
    frame.loc[sel & (frame["layer"] == "all"), ["value", "ci_low", "ci_high"]] = 0.0
    zeroed = replace(data, frame=frame)
    fig = F.rmse_vs_M(zeroed, zeroed.points[0])
    ax = fig.axes[0]
    (zero,) = _artists(ax, "_zero:reinforce")
    here = (frame["metric"] == "rel_rmse") & (frame["point"] == zeroed.points[0].pid)
    others = frame.loc[here & (frame["value"] > 1e-9), "value"]
    floor = 10 ** (math.floor(math.log10(others.min())) - 1)
    assert list(zero.get_ydata()) == pytest.approx([floor] * len(zero.get_ydata()))
    assert ax.get_ylim()[0] > floor / 10 > 1e-9
    assert any("round-off" in t.get_text() for t in fig.legends[1].get_texts())


def test_cos_figure_explains_its_marks(data):
    fig = F.cos_vs_M(data, data.points[0])
    texts = [t.get_text() for t in fig.legends[1].get_texts()]
    assert any("95 % interval" in t for t in texts) and any("spread" in t for t in texts)


@pytest.mark.parametrize("make", ["rmse_vs_M", "cos_vs_M", "bias_variance_map", "sweep"])
def test_legends_overlap_neither_the_title_nor_each_other_nor_the_panels(data, make):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if make == "sweep":
        fig = F.sweep_figure(data, "depth", list(data.points))
    else:
        fig = getattr(F, make)(data, data.points[1])
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    r = canvas.get_renderer()
    legends = [leg.get_window_extent(r) for leg in fig.legends]
    title = fig._suptitle.get_window_extent(r)
    panels = [ax.get_window_extent(r) for ax in fig.axes if ax.get_visible()]
    fig_box = fig.bbox
    for k, box in enumerate(legends):
        assert not box.overlaps(title)
        assert all(not box.overlaps(p) for p in panels)
        assert all(not box.overlaps(o) for o in legends[k + 1 :])
        assert fig_box.x0 <= box.x0 and box.x1 <= fig_box.x1 + 1 and box.y0 >= fig_box.y0 - 1
