"""Render a case directory's saved results into ``report.md``, ``report.html`` and ``figures/``.

Rendering reads ``results.csv``/``results.json`` only and never re-runs an estimator. The same
results render to byte-identical files: SVGs carry no date and a fixed id salt, PNGs no
software stamp, and nothing depends on the clock or the order of a dict we do not control.
PNGs are stored with an adaptive palette of at most 256 colours (a figure has few), about a
quarter of the size of matplotlib's RGBA output, so the committed reports stay small.
"""

from __future__ import annotations

import io
import os
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image as PILImage

from ..results import atomic_write
from . import figures as F
from .document import Block, Bullets, Heading, Image, Para, Section, to_html, to_markdown
from .findings import findings
from .load import Point, ReportData, load_report_data
from .reference import detectable_table, has_mc, reference_table
from .tables import exact_reference, leaderboard, per_layer

DPI = F.DPI
RC = F.RC
SWEEP_DIMS = ("depth", "width", "checkpoint")
MAX_POINT_FIGURES = 4
PNG_COLORS = 256  # palette size of the saved PNGs
PNG_ZLIB_LEVEL = 6


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    figures: tuple[Path, ...]  # the PNGs (each with an SVG twin when rendered with svg=True)


def palette_png(image: bytes | PILImage.Image, colors: int = PNG_COLORS) -> bytes:
    """A PNG re-encoded on white with an adaptive palette (maximum coverage, no dithering).

    ``image``: an RGBA image, or PNG bytes of one. Matplotlib draws 8-bit RGBA; a figure's flat
    colours, anti-aliased edges and colour-map cells fit a palette of 256 with no visible
    change, at about a quarter of the bytes. The result depends on the pixels only (no
    metadata), so equal figures give equal bytes."""
    if isinstance(image, bytes):
        with PILImage.open(io.BytesIO(image)) as im:
            rgba = im.convert("RGBA")
    else:
        rgba = image.convert("RGBA")
    white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = PILImage.alpha_composite(white, rgba).convert("RGB")
    pal = rgb.quantize(colors, method=PILImage.Quantize.MAXCOVERAGE, dither=PILImage.Dither.NONE)
    out = io.BytesIO()
    # zlib level 6: a tenth of level 9's time for about 10 % more bytes.
    pal.save(out, format="PNG", compress_level=PNG_ZLIB_LEVEL)
    return out.getvalue()


def figure_files(fig: Figure, *, svg: bool = False) -> dict[str, bytes]:
    """The files of a figure by suffix: ``.png`` (palette, see ``palette_png``) and, with
    ``svg``, its twin ``.svg`` first, byte-reproducible. The figure is laid out and drawn once for
    the PNG; the SVG reuses that layout (a second draw, about as long as the PNG's: hence on
    request)."""
    files = {}
    with matplotlib.rc_context(RC):
        canvas = FigureCanvasAgg(fig)  # drawn straight to pixels: no RGBA PNG to decode
        canvas.draw()
        rgba = PILImage.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba())
        if svg:
            out = io.BytesIO()
            fig.set_layout_engine("none")  # keep the layout just computed
            fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
            files[".svg"] = out.getvalue()
    files[".png"] = palette_png(rgba)
    return files


@dataclass(eq=False)
class _Figure:
    """A figure of the report: built and saved by ``_render_figures``, then replaced in the
    document by its image (or by nothing, when ``build`` has nothing to show)."""

    build: Callable[[], Figure | None]
    name: str
    caption: str


@dataclass(eq=False)
class _Group:
    """Blocks with a heading that is dropped when the figures under it all come to nothing."""

    heading: list[Block]
    blocks: list[Draft]


Draft = Block | _Figure | _Group  # the document before its figures are rendered


def _resolve(blocks: list[Draft], images: dict[int, Image]) -> list[Block]:
    out: list[Block] = []
    for b in blocks:
        if isinstance(b, _Figure):
            out += [images[id(b)]] if id(b) in images else []
        elif isinstance(b, _Group):
            inner = _resolve(b.blocks, images)
            out += [*b.heading, *inner] if inner else []
        elif isinstance(b, Section):
            out.append(replace(b, blocks=_resolve(b.blocks, images)))
        else:
            out.append(b)
    return out


# The figures being rendered, for the forked workers of ``_render_figures`` (inherited, never
# pickled: a figure's build is a closure over the report's data).
_JOBS: tuple[list[_Figure], bool] | None = None


def _render_one(index: int) -> dict[str, bytes] | None:
    assert _JOBS is not None
    jobs, svg = _JOBS
    fig = jobs[index].build()
    return None if fig is None else figure_files(fig, svg=svg)


def _render_figures(jobs: list[_Figure], fig_dir: Path, svg: bool) -> list[Path | None]:
    """Build, draw and write every figure; the PNG of each (None: nothing to show). Building and
    drawing are most of a report's time, so they are shared among forked processes, one per
    core, where forking is safe: a POSIX system and no other Python thread in this process (a
    Dask client's threads could hold a lock that the child would wait on forever). The files
    are written here, in the figures' order, so they are the same bytes, renamed into place in
    the same order, either way."""
    global _JOBS
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    workers = min(len(jobs), cores)
    _JOBS = (jobs, svg)
    try:
        if workers < 2 or not hasattr(os, "fork") or threading.active_count() > 1:
            drawn = [_render_one(i) for i in range(len(jobs))]
        else:
            drawn = _forked(len(jobs), workers)
    finally:
        _JOBS = None
    return [_write(job, files, fig_dir) for job, files in zip(jobs, drawn, strict=True)]


def _forked(n: int, workers: int) -> list[dict[str, bytes] | None]:
    """``_render_one`` of 0..n-1 in ``workers`` forked children, job i in child i % workers.
    Each child sends its results (or its exception) through a pipe and exits: no pool that
    could outlive this process if it is killed."""
    children = []
    for w in range(workers):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            try:
                os.close(read)
                try:
                    reply: Any = ("ok", {i: _render_one(i) for i in range(w, n, workers)})
                except BaseException as e:  # handed to the parent, which raises it
                    reply = ("error", e)
                with os.fdopen(write, "wb") as pipe:
                    try:
                        pickle.dump(reply, pipe)
                    except Exception as e:  # an exception that does not pickle
                        pickle.dump(("error", RuntimeError(f"{type(e).__name__}: {e}")), pipe)
            finally:
                os._exit(0)
        os.close(write)
        children.append((pid, read))
    drawn: dict[int, dict[str, bytes] | None] = {}
    errors = []
    for pid, read in children:
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        os.waitpid(pid, 0)
        if not data:
            errors.append(RuntimeError(f"a report worker (pid {pid}) died without a result"))
            continue
        status, value = pickle.loads(data)
        if status == "ok":
            drawn.update(value)
        else:
            errors.append(value)
    if errors:
        raise errors[0]
    return [drawn[i] for i in range(n)]


def _write(job: _Figure, files: dict[str, bytes] | None, fig_dir: Path) -> Path | None:
    if files is None:
        return None
    for suffix, data in files.items():
        atomic_write((fig_dir / job.name).with_suffix(suffix), data)
    return (fig_dir / job.name).with_suffix(".png")


def _config_bullets(data: ReportData) -> list[str]:
    cfg = data.case_config
    checkpoint = data.meta["case"].get("checkpoint")
    out = []
    for table in ("data", "model", "training", "sweep", "measure"):
        if table in cfg and not (checkpoint and table == "training"):
            values = dict(cfg[table])
            if table == "measure":  # as run: --estimators and tau variants applied
                values["estimators"] = list(data.estimators)
            items = ", ".join(f"{k} = {_short(v)}" for k, v in values.items())
            out.append(f"{table}: {items}")
    if checkpoint:
        out.append(f"network: the checkpoint {checkpoint} (its data when it has X, Y)")
    return out


def _short(v: Any) -> str:
    if isinstance(v, list) and len(v) > 12:
        return f"[{', '.join(map(str, v[:4]))}, …, {v[-1]}] ({len(v)} values)"
    if isinstance(v, list):
        return f"[{', '.join(map(str, v))}]"
    return str(v)


def _run_bullets(data: ReportData) -> list[str]:
    run, env = data.meta.get("run", {}), data.meta.get("environment", {})
    git = env.get("git") or {}
    commit = (git.get("commit") or "unknown")[:12] + (
        " (uncommitted changes)" if git.get("dirty") else ""
    )
    plugins = ", ".join(f"{p['dist']} {p['version']}" for p in env.get("plugins", [])) or "none"
    quick = " (--quick: fewer draws, smoke test only)" if run.get("quick") else ""
    return [
        f"seed {run.get('seed')}{quick}; device {run.get('device')}"
        + (f" ({run['device_name']})" if run.get("device_name") else "")
        + f"; draws in {run.get('dtype')}, exact reference in {run.get('exact_dtype', 'float64')}",
        f"estbench {env.get('estbench_version')} at commit {commit}; torch "
        f"{env.get('torch_version')}, numpy {env.get('numpy_version')}, Python "
        f"{env.get('python_version')}, {env.get('num_threads')} threads",
        f"platform {env.get('platform')}; plugins: {plugins}",
        f"case file {data.meta['case'].get('path')} (sha256 "
        f"{str(data.meta['case'].get('sha256'))[:16]}…)",
    ]


def _sweep_groups(data: ReportData, dim: str) -> list[list[Point]]:
    """Points grouped by every sweep value except ``dim`` (one figure per group)."""
    groups: dict[tuple, list[Point]] = {}
    for p in data.points:
        if dim in p.values:
            rest = tuple((k, v) for k, v in p.values.items() if k != dim)
            groups.setdefault(rest, []).append(p)
    return [g for g in groups.values() if len(g) >= 2]


def figure_points(n: int, limit: int | None) -> list[int]:
    """Indices of the points that get per-point figures: all, or ``limit`` spread evenly with the
    first and the last among them (a 12-point sweep with 48 per-point figures reads badly and
    weighs tens of MB; its sweep figures already show every point)."""
    if limit is None or n <= limit:
        return list(range(n))
    if limit <= 1:
        return [0][:limit]
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def render_report(
    directory: str | Path,
    *,
    max_point_figures: int | None = MAX_POINT_FIGURES,
    log: Callable[[str], None] | None = None,
    svg: bool = False,
) -> ReportFiles:
    """Render ``DIR/<case>`` (a directory ``estbench run`` wrote) into its report files.

    Per-point figures are drawn for at most ``max_point_figures`` points (None: all). With
    ``svg``, every PNG figure gets an SVG twin; without, SVGs left by an earlier render are
    removed (they would no longer match)."""
    from .training_report import has_training, render_training_report, training_blocks

    if has_training(Path(directory)) and not (Path(directory) / "results.json").exists():
        return render_training_report(directory, svg=svg, log=log)  # a [compare]-only case
    data = load_report_data(directory)
    root = data.directory
    fig_dir = root / "figures"

    jobs: list[_Figure] = []

    def figure(build: Callable[[], Figure | None], name: str, caption: str) -> list[Draft]:
        jobs.append(_Figure(build, name, caption))
        return [jobs[-1]]  # a placeholder, replaced once every figure is rendered

    doc: list[Draft] = [Heading(1, f"estbench report: {data.case_name}")]
    if data.meta["case"].get("description"):
        doc.append(Para(data.meta["case"]["description"]))
    doc += [Heading(2, "Case"), Bullets(_config_bullets(data))]
    doc += [Heading(2, "Run"), Bullets(_run_bullets(data))]
    doc += [Heading(2, "Exact reference"), exact_reference(data)]
    if has_mc(data):
        doc += [Heading(2, "Monte Carlo reference"), reference_table(data)]
        doc += [Heading(3, "Smallest detectable bias"), detectable_table(data)]

    doc.append(Heading(2, "Findings"))
    for p in data.points:
        headline, detail = findings(data, p)
        if len(data.points) > 1:
            doc.append(Heading(3, p.title))
        doc += [Bullets(headline), Bullets(detail)] if detail else [Bullets(headline)]

    sweeps: list[Draft] = []
    for dim in SWEEP_DIMS:
        for group in _sweep_groups(data, dim):
            rest = "_".join(f"{k}={v}" for k, v in group[0].values.items() if k != dim)
            sweeps += figure(
                partial(F.sweep_figure, data, dim, group),
                f"vs_{dim}" + (f"-{rest}" if rest else ""),
                f"Relative bias, sd and RMSE of one draw vs {dim}; open triangles: upper bounds.",
            )
    for p in data.points:
        sweeps += figure(
            partial(F.sweep_figure, data, "tau", [p]),
            f"vs_temperature-{p.pid}",
            f"Relaxations: relative bias, sd and RMSE vs temperature ({p.title}).",
        )
    if sweeps:
        doc.append(_Group([Heading(2, "Sweeps")], sweeps))

    many = len(data.points) > 3
    drawn = figure_points(len(data.points), max_point_figures)
    if len(drawn) < len(data.points):
        titles = ", ".join(data.points[i].title for i in drawn)
        doc.append(
            Para(
                f"Per-point figures are drawn for {titles} ({len(drawn)} of "
                f"{len(data.points)} points; the sweep figures above cover every point, and "
                f"`estbench report --all-figures` draws them all). Tables cover every point."
            )
        )
    for i, p in enumerate(data.points):
        blocks: list[Draft] = [
            Heading(3, "Leaderboard"),
            leaderboard(data, p),
            Heading(3, "Per layer"),
            per_layer(data, p),
        ]
        title = f"Results: {p.title}" if data.points[0].values else "Results"
        if i not in drawn:
            doc.append(Section(title, blocks, open=False))
            continue
        blocks.append(Heading(3, "Figures"))
        blocks += figure(
            partial(F.rmse_vs_M, data, p),
            f"rel_rmse-{p.pid}",
            "Relative RMSE of the M-draw mean vs M, per layer; bands: 95 % bootstrap CI.",
        )
        blocks += figure(
            partial(F.cos_vs_M, data, p),
            f"cos-{p.pid}",
            "E cos(mean of M draws, g) vs M, per layer; bands: 15 %-85 % of the groups.",
        )
        blocks += figure(
            partial(F.bias_variance_map, data, p),
            f"bias_variance-{p.pid}",
            "Relative bias vs relative sd of one draw; grey curves: equal relative RMSE.",
        )
        blocks += figure(
            partial(F.bias_heatmap, data, p),
            f"bias_heatmap-{p.pid}",
            "Relative bias, estimators × layers.",
        )
        doc.append(Section(title, blocks, open=not many or i == 0))

    if has_training(root):  # the case's [compare] too (estbench.compare)
        doc += training_blocks(root, figure)

    pngs = _render_figures(jobs, fig_dir, svg)
    written = [png for png in pngs if png is not None]
    if log:
        for png in written:
            log(f"  {png}")
    images = {
        id(job): Image(png.relative_to(root).as_posix(), job.caption, job.caption)
        for job, png in zip(jobs, pngs, strict=True)
        if png is not None
    }
    final = _resolve(doc, images)
    md = to_markdown(final)
    page = to_html(f"estbench report: {data.case_name}", final, root)
    atomic_write(root / "report.md", md)
    atomic_write(root / "report.html", page)
    keep = {q for p in written for q in ((p, p.with_suffix(".svg")) if svg else (p,))}
    for old in fig_dir.glob("*"):
        if old.suffix in (".png", ".svg") and old not in keep:
            old.unlink()
    return ReportFiles(root / "report.md", root / "report.html", tuple(written))
