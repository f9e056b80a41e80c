"""Reports render from stored results (tests/data/report-fixture, made by
tests/data/make_report_fixture.py): tables list every estimator and layer, figures have the
expected panels and legends, HTML is self-contained, and renders are byte-identical."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from estbench.cli import main
from estbench.estimators.registry import default_registry
from estbench.report import estimator_style, render_report
from estbench.report import figures as F
from estbench.report.findings import findings
from estbench.report.load import load_report_data
from estbench.report.render import figure_points
from estbench.report.style import SLOTS, style_name
from estbench.report.tables import leaderboard
from estbench.results import ResultsError

FIXTURE = Path(__file__).parent / "data" / "report-fixture" / "report-fixture"


@pytest.fixture
def results(tmp_path):
    """A writable copy of the stored results."""
    target = tmp_path / "report-fixture"
    shutil.copytree(FIXTURE, target)
    return target


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    target = tmp_path_factory.mktemp("r") / "report-fixture"
    shutil.copytree(FIXTURE, target)
    return target, render_report(target, svg=True)


def test_report_files_exist_and_are_non_empty(rendered):
    root, files = rendered
    assert files.markdown == root / "report.md" and files.html == root / "report.html"
    # Per depth: RMSE, cosine, bias-variance map, heat map, temperature; one depth sweep figure.
    assert len(files.figures) == 2 * 5 + 1
    for png in files.figures:
        svg = png.with_suffix(".svg")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert svg.read_text().lstrip().startswith("<?xml") and svg.stat().st_size > 5000
    md = files.markdown.read_text()
    for png in files.figures:
        assert f"]({png.relative_to(root).as_posix()})" in md  # linked relatively


def test_svg_twins_only_on_request(results):
    files = render_report(results, svg=True)
    assert all(png.with_suffix(".svg").is_file() for png in files.figures)
    pngs = {p: p.read_bytes() for p in files.figures}
    again = render_report(results)  # the same PNGs; stale twins are removed
    assert again.figures == files.figures
    assert {p: p.read_bytes() for p in again.figures} == pngs
    assert not list((results / "figures").glob("*.svg"))


def test_every_estimator_and_layer_appears_in_the_tables(rendered):
    root, files = rendered
    df = pd.read_csv(root / "results.csv")
    md, page = files.markdown.read_text(), files.html.read_text()
    for e in df["estimator"].unique():
        assert f"`{e}`" in md and f"<code>{e}</code>" in page
    data = load_report_data(root)
    for p in data.points:
        section = md.split(f"## Results: {p.title}")[1].split("## Results")[0]
        per_layer = section.split("### Per layer")[1]
        header = next(line for line in per_layer.splitlines() if line.startswith("| estimator"))
        assert [c.strip() for c in header.strip("|").split("|")] == ["estimator", *p.layers]
        layers = set(df[df["depth"] == p.values["depth"]]["layer"])
        assert layers == set(p.layers)
    assert "failed: RuntimeError: boom" in md


def test_leaderboard_is_sorted_by_relative_rmse_at_equal_cost(rendered):
    root, files = rendered
    df = pd.read_csv(root / "results.csv")
    md = files.markdown.read_text()
    section = md.split("## Results: depth = 2")[1].split("### Per layer")[0]
    budget = int(re.search(r"equal cost \((\d+) loss evaluations", section).group(1))
    listed = re.findall(r"^\| `([^`]+)` \| (?!failed)", section, flags=re.M)
    cost = df[
        (df["depth"] == 2)
        & (df["metric"] == "rel_rmse_cost")
        & (df["layer"] == "all")
        & (df["M"] == budget)
    ].set_index("estimator")["value"]
    assert listed == list(cost.sort_values().index)
    # ARM needs 2 evaluations per layer (4 at depth 2), PSA one per unit plus one: the budget is
    # the smallest M of the grid that affords the most expensive draw.
    assert budget == 10


def test_findings_name_the_measured_best(rendered):
    root, files = rendered
    df = pd.read_csv(root / "results.csv")
    md = files.markdown.read_text()
    for depth in (1, 2):
        rows = df[
            (df["depth"] == depth)
            & (df["metric"] == "rel_rmse")
            & (df["layer"] == "all")
            & (df["M"] == 1)
        ]
        best = rows.loc[rows["value"].idxmin()]
        block = md.split(f"### depth = {depth}")[1]
        line = next(x for x in block.splitlines() if "Lowest relative RMSE at M = 1 " in x)
        assert f"`{best['estimator']}`, {best['value']:.3g}." in line


def test_a_claim_the_test_rejects_is_flagged(results):
    meta = json.loads((results / "results.json").read_text())
    st = meta["points"][1]["estimators"]["st"]
    assert st["claimed_unbiased"] == ["layer2"]
    st["verdicts"]["layer2"] = False  # as if the test had rejected ST's head gradient
    (results / "results.json").write_text(json.dumps(meta))
    data = load_report_data(results)
    table = leaderboard(data, data.points[1])
    st_row = next(r for r in table.rows if r[0] == "`st`")
    assert st_row[-1] == "⚠ MISMATCH: rejected in layer2 (no)"
    headline, _ = findings(data, data.points[1])
    assert any(x.startswith("⚠ `st` claims unbiasedness that the test rejects") for x in headline)
    assert not any(r[-1].startswith("⚠") for r in leaderboard(data, data.points[0]).rows)


def test_html_is_self_contained(rendered):
    _, files = rendered
    page = files.html.read_text()
    srcs = re.findall(r'src="([^"]*)"', page)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"https?:|//[a-z]|<link|<script|@import|url\(|href=", text, flags=re.I)
    assert len(srcs) == len(files.figures)
    assert all(s.startswith("data:image/png;base64,") for s in srcs)


def test_rendering_twice_gives_identical_files_and_selects_no_backend(
    rendered, tmp_path, monkeypatch
):
    import matplotlib.pyplot as plt

    def refuse(*args, **kwargs):
        raise AssertionError("the report touched pyplot's backend")

    monkeypatch.setattr(matplotlib, "use", refuse)
    monkeypatch.setattr(plt, "switch_backend", refuse)
    monkeypatch.setattr(plt, "figure", refuse)
    root, _ = rendered
    first = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    other = tmp_path / "again" / "report-fixture"
    shutil.copytree(FIXTURE, other)
    render_report(other, svg=True)
    second = {p.relative_to(other): p.read_bytes() for p in other.rglob("*") if p.is_file()}
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_figures_have_the_expected_panels_and_legends():
    data = load_report_data(FIXTURE)
    p = data.points[1]  # depth 2
    ok = [e for e in data.estimators if e != "exploding"]
    for make in (F.rmse_vs_M, F.cos_vs_M, F.bias_variance_map):
        fig = make(data, p)
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert [ax.get_title() for ax in panels] == [
            "layer0",
            "layer1",
            "layer2 (head)",
            "all binary layers",
        ]
        assert all(ax.get_xscale() == "log" for ax in panels)
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ok
    fig = F.rmse_vs_M(data, p)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert all(ax.get_yscale() == "log" for ax in panels)
    assert [ax.get_ylabel() for ax in panels] == ["relative RMSE", "", "", ""]  # shared y
    heat = F.bias_heatmap(data, p)
    ax = heat.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ok
    assert len(ax.get_xticklabels()) == len(p.layers)
    sweep = F.sweep_figure(data, "depth", list(data.points))
    assert [t.get_text() for t in sweep.legends[0].get_texts()] == ok
    assert {ax.get_xlabel() for ax in sweep.axes[-2:]} == {"depth"}  # the bottom row
    tau = F.sweep_figure(data, "tau", [p])
    assert [t.get_text() for t in tau.legends[0].get_texts()] == ["concrete"]
    assert {ax.get_xlabel() for ax in tau.axes[-2:]} == {"temperature τ"}


def test_an_estimator_has_one_style_whatever_the_run():
    registry = default_registry()
    builtins = {name for name, entry in registry.items() if entry.source == "estbench"}
    assert {style_name(n) for n in builtins} <= set(SLOTS), (
        "a new built-in needs a style slot (append it to SLOTS, or name a VAE estimator after "
        "its sbn counterpart)"
    )
    own = [n for n in SLOTS if style_name(n) == n]  # the VAE kind's share their counterparts'
    pairs = {(estimator_style(n).color, estimator_style(n).marker) for n in own}
    assert len(pairs) == len(own)
    # A figure shows one kind's estimators: within a kind, every built-in has its own pair.
    for kind in {entry.cls.problem for entry in registry.values()}:
        names = [n for n in builtins if registry[n].cls.problem == kind]
        pairs = {(estimator_style(n).color, estimator_style(n).marker) for n in names}
        assert len(pairs) == len(names), kind
    first10 = [estimator_style(n) for n in SLOTS[:10]]
    assert len({s.color for s in first10}) == len({s.marker for s in first10}) == 10
    # A variant keeps its family's colour and marker and gets its own line style.
    a, b = estimator_style("concrete"), estimator_style("concrete(tau=0.1)")
    assert (a.color, a.marker) == (b.color, b.marker) and a.linestyle != b.linestyle
    # A plugin's style comes from its name: the same in any report, unlike a position.
    assert estimator_style("my-plugin") == estimator_style("my-plugin")
    assert estimator_style("my-plugin") != estimator_style("my-plugin-2")


def test_the_shipped_vae_cases_estimators_have_distinct_colours():
    """Every shipped VAE case (cases/vae-*.toml) draws its estimator families in pairwise
    distinct colours where the ten colours suffice, and in distinct (colour, marker) pairs
    always (a family's variants, e.g. ``vae-reinforce(baseline=frozen)``, keep their
    family's colour and get another line style); a VAE estimator is styled as its sbn
    counterpart, ``vae-muprop``, ``-gumbel-rao`` and ``-rebar`` in the first-round slots of sbn
    estimators the kind does not have (``estbench.report.style``)."""
    import tomllib

    from estbench.report.style import parse_label
    from estbench.shipped import cases_dir

    files = sorted(cases_dir().glob("vae-*.toml"))
    assert len(files) >= 5
    for file in files:
        raw = tomllib.loads(file.read_text())
        labels = [*raw.get("measure", {}).get("estimators", [])]
        labels += [e for e in raw.get("compare", {}).get("estimators", []) if e != "exact"]
        families = sorted({parse_label(label)[0] for label in labels})
        assert families, file
        colours = [estimator_style(name).color for name in families]
        if len(families) <= 10:  # the palette's size: beyond it colours repeat, markers differ
            assert len(set(colours)) == len(families), (
                file.name,
                dict(zip(families, colours, strict=True)),
            )
        pairs = {(estimator_style(n).color, estimator_style(n).marker) for n in families}
        assert len(pairs) == len(families), file.name
    assert estimator_style("vae-reinforce") == estimator_style("reinforce")
    assert estimator_style("vae-relax") == estimator_style("relax")
    assert estimator_style("vae-muprop") == estimator_style("mean-field")


def test_cli_report_rerenders_removes_stale_figures_and_names_a_bad_directory(
    results, tmp_path, capsys
):
    stale = results / "figures" / "rel_rmse-depth=9.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    assert main(["report", str(results)]) == 0
    assert (results / "report.html").exists() and not stale.exists()
    assert main(["report", str(tmp_path / "nope")]) == 1
    assert "nope: no such case directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="results.json: no such results file"):
        render_report(tmp_path / "empty")


def test_per_point_figures_are_capped_for_long_sweeps(results):
    assert figure_points(12, 4) == [0, 4, 7, 11]
    assert figure_points(3, 4) == [0, 1, 2] and figure_points(5, None) == list(range(5))
    assert figure_points(5, 1) == [0]
    files = render_report(results, max_point_figures=1)
    names = sorted(p.name for p in files.figures)
    assert names == [
        "bias_heatmap-depth=1.png",
        "bias_variance-depth=1.png",
        "cos-depth=1.png",
        "rel_rmse-depth=1.png",
        "vs_depth.png",
        "vs_temperature-depth=1.png",
        "vs_temperature-depth=2.png",
    ]
    md = files.markdown.read_text()
    assert "Per-point figures are drawn for depth = 1 (1 of 2 points" in md
    assert md.count("### Leaderboard") == 2  # tables for every point


@pytest.mark.parametrize(("epochs", "scale"), [((0, 20), "symlog"), ((1, 20), "log")])
def test_epoch_zero_stays_on_the_checkpoint_axis(results, epochs, scale):
    """A log axis would drop the initial network (epoch 0) without a word: with epoch 0 the
    checkpoint axis is symmetric-log, starting just left of 0; otherwise plain log."""
    data = load_report_data(results)
    assert len(data.points) == 2  # the fixture's two depths, relabelled as two epochs
    points = [
        replace(p, values={"checkpoint": e}) for p, e in zip(data.points, epochs, strict=True)
    ]
    fig = F.sweep_figure(data, "checkpoint", points)
    assert len(fig.axes) == 6
    assert [ax.get_xlabel() for ax in fig.axes] == [""] * 4 + ["checkpoint"] * 2  # shared x
    for ax in fig.axes:
        assert ax.get_xscale() == scale
        markers = [line for line in ax.lines if line.get_label().split(":")[0] != "_faint"]
        assert {x for line in markers for x in line.get_xdata()} == set(epochs)
        lo, hi = ax.get_xlim()
        assert lo < min(epochs) and hi > max(epochs)
        if scale == "symlog":
            assert -1 < lo < 0


def test_the_report_command_imports_neither_torch_nor_seaborn(results):
    import subprocess
    import sys

    code = (
        "import runpy, sys; sys.argv = ['estbench', 'report', sys.argv[1]]\n"
        "try:\n    runpy.run_module('estbench', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "bad = {'torch', 'seaborn', 'scipy', 'matplotlib.pyplot'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code, str(results)], check=True, capture_output=True)
    assert (results / "report.md").is_file()


def test_the_reports_lock_is_the_runs_lock(results):
    from estbench.errors import EstbenchError
    from estbench.lock import case_lock
    from estbench.runner import case_lock as run_lock

    assert run_lock is case_lock  # one lock, not a copy
    with run_lock(results), pytest.raises(EstbenchError, match="in use"), case_lock(results):
        pass
    with case_lock(results), pytest.raises(EstbenchError, match="in use"), run_lock(results):
        pass


def test_figures_drawn_in_forked_workers_are_the_same_bytes_as_drawn_here(results, monkeypatch):
    import estbench.report.render as render_module

    forks = []
    real_forked = render_module._forked
    monkeypatch.setattr(render_module.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    # idle threads an earlier test left (a Dask client's) would make the report draw here
    monkeypatch.setattr(render_module.threading, "active_count", lambda: 1)
    monkeypatch.setattr(
        render_module, "_forked", lambda n, w: forks.append((n, w)) or real_forked(n, w)
    )
    files = render_report(results)
    assert forks and forks[0][1] == 2  # two workers drew the figures
    forked = {p.name: p.read_bytes() for p in files.figures}
    forked["report.md"] = files.markdown.read_bytes()
    monkeypatch.setattr(render_module.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    files = render_report(results)
    here = {p.name: p.read_bytes() for p in files.figures}
    here["report.md"] = files.markdown.read_bytes()
    assert len(forks) == 1 and here == forked and len(here) > 3


def test_a_figure_that_fails_in_a_forked_worker_raises_here(results, monkeypatch):
    import estbench.report.render as render_module

    monkeypatch.setattr(render_module.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(render_module.threading, "active_count", lambda: 1)

    def broken(data, p):  # noqa: ANN001, ANN202
        raise ValueError("no such panel")

    monkeypatch.setattr(render_module.F, "cos_vs_M", broken)
    with pytest.raises(ValueError, match="no such panel"):
        render_report(results)


def test_the_exact_table_shows_a_kinds_columns_and_no_more():
    """A kind's further exact scalars (results.json ``exact.columns``) become columns after the
    loss, labelled by the kind; a point without such a value shows "-", and a run without columns
    keeps the table as it was."""
    from types import SimpleNamespace

    from estbench.report.tables import exact_reference

    def point(title, **extra):
        exact = {"widths": [3], "n_points": 4, "loss": 1.5, "grad_norm": {"layer0": 0.25}}
        return SimpleNamespace(title=title, meta={"exact": {**exact, **extra}})

    with_cols = point("a", columns=[["elbo", "mean ELBO"]], elbo=-1.5)
    data = SimpleNamespace(layers=["layer0"], points=[with_cols, point("b")])
    table = exact_reference(data)
    assert table.header == ["point", "widths", "N", "exact loss", "mean ELBO", "‖g‖ layer0"]
    assert [row[4] for row in table.rows] == ["-1.5", "-"]
    plain = exact_reference(SimpleNamespace(layers=["layer0"], points=[point("b")]))
    assert plain.header == ["point", "widths", "N", "exact loss", "‖g‖ layer0"]
