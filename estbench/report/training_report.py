"""The training comparison in a report (``training.csv`` + ``training.json``, written by
``estbench.compare``): the exact objective and the kind's exact scalars versus steps and versus
training wall time, one line per estimator, and a table of the final values.

What is drawn. Every recorded value is exact (enumeration: no sampling error in a value); what
varies is the training outcome between seeds (initialisation, minibatch order, estimator noise).
So a line is the mean over the seeds and its band the 95 % t-interval of that mean, mean ± t_{0.975,
n-1} sd / sqrt(n) over the n seeds that recorded the step -- an interval for the expected
training outcome of the estimator under this protocol, drawn as one polygon per line. With one
seed there is no interval: no band is drawn and the figure and table say so. Versus wall time, x
is the mean over the seeds of the training time to that step (the exact evaluations excluded).
The exact gradient is drawn in black.

Nothing here knows a problem kind: the quantities and their labels are those of training.json
(``columns``: the kind's loss first, then its ``Reference.columns``).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..compare_results import OBJECTIVE, has_training, load_training
from .document import Block, Bullets, Heading, Para, Table
from .figures import DPI, PANEL, _band, _with_rc, grid_shape
from .style import Style, figure_styles
from .tables import num

EXACT = "exact"
EXACT_STYLE = Style("#000000", "o", "-")
LEVEL = 0.95
INTERVAL = (
    "mean over the seeds; band: 95 % t-interval of the mean (mean ± t(0.975, n−1) · sd / √n "
    "over the n seeds), the seed-to-seed spread of the training outcome -- every value is exact"
)
BAND_LEGEND = "band: 95 % t-interval\nof the mean over\nthe seeds"
ONE_SEED = "one seed: no interval can be given, so no band is drawn"

__all__ = ["has_training", "load_training_data", "training_blocks", "render_training_report"]


@dataclass(frozen=True)
class Curve:
    """One estimator's quantity over the record steps: per step the number of seeds ``n``, the
    mean, the interval (NaN where n < 2) and the mean wall time."""

    step: np.ndarray
    n: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    wall: np.ndarray


def t_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the t-interval of the mean of ``values``; NaN ends for one value."""
    from scipy.special import stdtrit  # the quantile without scipy.stats' import time

    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    half = float(stdtrit(len(v) - 1, 0.5 + level / 2)) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class TrainingData:
    directory: Path
    meta: dict[str, Any]
    frame: pd.DataFrame  # training.csv, numeric columns parsed

    @property
    def case_name(self) -> str:
        return str(self.meta["case"]["name"])

    @property
    def estimators(self) -> tuple[str, ...]:
        return tuple(self.meta["run"]["estimators"])

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.meta["run"]["seeds"])

    @property
    def quantities(self) -> list[tuple[str, str]]:
        """(key, label) of the recorded quantities, the kind's loss first."""
        out = [(str(k), str(label)) for k, label in self.meta.get("columns", [])]
        return out or [(OBJECTIVE, "exact objective")]

    def failed(self) -> dict[tuple[str, int], str]:
        return {(r["estimator"], r["seed"]): r["error"] for r in self.meta["runs"] if r["error"]}

    def curve(self, estimator: str, quantity: str) -> Curve | None:
        f = self.frame
        rows = f[(f["estimator"] == estimator) & (f["quantity"] == quantity)]
        if rows.empty:
            return None
        steps = np.array(sorted(rows["step"].unique()), dtype=float)
        cols: dict[str, list[float]] = {k: [] for k in ("n", "mean", "low", "high", "wall")}
        for s in steps:
            at = rows[rows["step"] == s]
            values = at["value"].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            mean, low, high = t_interval(values) if len(values) else (math.nan,) * 3
            cols["n"].append(len(values))
            cols["mean"].append(mean)
            cols["low"].append(low)
            cols["high"].append(high)
            cols["wall"].append(float(at["wall_seconds"].mean()))
        return Curve(steps, *(np.array(cols[k], dtype=float) for k in cols))


def load_training_data(directory: str | Path) -> TrainingData:
    """training.csv and training.json of a case directory (one committed pair)."""
    meta, rows = load_training(Path(directory))
    frame = pd.DataFrame(rows)
    for col in ("seed", "step", "epoch", "evaluations", "value", "wall_seconds"):
        frame[col] = pd.to_numeric(frame[col].replace("", None), errors="coerce")
    return TrainingData(Path(directory), meta, frame)


def _styles(labels: tuple[str, ...]) -> dict[str, Style]:
    styles = figure_styles([e for e in labels if e != EXACT])
    return {e: EXACT_STYLE if e == EXACT else styles[e] for e in labels}


def _segments(ok: np.ndarray) -> list[np.ndarray]:
    """Index runs where ``ok`` holds (a band is drawn only where there is an interval)."""
    idx = np.flatnonzero(ok)
    if not len(idx):
        return []
    return np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)


@_with_rc
def objective_figure(data: TrainingData, x: str = "step") -> Figure | None:
    """The exact objective and the kind's exact scalars versus ``x`` ("step" or "wall": the
    mean training wall time), one panel per quantity with its own y axis, one line per
    estimator with its band (module docstring). Laid out by matplotlib's constrained layout:
    the panels' y ranges differ, so their tick labels need room between the panels."""
    quantities = data.quantities
    frame = data.frame
    labels = tuple(e for e in data.estimators if not frame[frame["estimator"] == e].empty)
    if not labels:
        return None
    rows, cols = grid_shape(len(quantities), max_cols=2 if len(quantities) == 4 else 4)
    fig = Figure(figsize=(PANEL[0] * cols + 1.9, PANEL[1] * rows + 0.5), dpi=DPI,
                 layout="constrained")  # fmt: skip
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[len(quantities) :]:
        ax.set_visible(False)
    styles = _styles(labels)
    many = len(data.seeds) > 1
    alpha = max(0.08, min(0.2, 1.5 / len(labels)))
    for i, (ax, (key, label)) in enumerate(zip(axes, quantities, strict=False)):
        for e in labels:
            c = data.curve(e, key)
            if c is None:
                continue
            xs = c.step if x == "step" else c.wall
            st = styles[e]
            ax.plot(xs, c.mean, lw=1.3, ms=3, label=f"_line:{e}", **st.line())
            for seg in _segments(np.isfinite(c.low) & np.isfinite(c.high)) if many else []:
                if len(seg) > 1:
                    _band(ax, xs[seg], c.low[seg], c.high[seg], color=st.color, alpha=alpha,
                          lw=0, label=f"_band:{e}")  # fmt: skip
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
        ax.autoscale_view()
        if i + cols >= len(quantities):
            ax.set_xlabel(
                "training step"
                if x == "step"
                else "training wall time (s),\nexact evaluations excluded"
            )
    versus = "steps" if x == "step" else "wall time"
    fig.suptitle(
        f"{data.case_name}: exact values vs {versus} ({len(data.seeds)} seed{'s' * many})",
        fontsize="medium",
        x=0.02,
        ha="left",  # clear of the legend, which is outside on the right
    )
    handles = [Line2D([], [], label=e, lw=1.3, **styles[e].line()) for e in labels]
    note = (
        Patch(color="0.35", alpha=0.25, lw=0, label=BAND_LEGEND)
        if many
        else Line2D([], [], color="0.35", label="one seed:\nno interval,\nno band")
    )
    fig.legend(handles=[*handles, note], loc="outside right upper", fontsize="small",
               frameon=False, handlelength=2.6)  # fmt: skip
    return fig


def _reading(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    if not len(values):
        return "—"
    mean, low, high = t_interval(values)
    if len(values) < 2:
        return f"{num(mean, 5)} (one seed: no interval)"
    return f"{num(mean, 5)} [{num(low, 5)}, {num(high, 5)}]"


def final_table(data: TrainingData) -> Table:
    """Per estimator: the exact quantities at the last step (mean over the seeds that reached
    it, 95 % t-interval), the mean training wall time and the loss evaluations."""
    f = data.frame
    last = int(data.meta["run"]["steps"])
    quantities = data.quantities
    header = ["estimator", "seeds", *(f"final {label}" for _, label in quantities)]
    header += ["training time (s, mean)", "loss evaluations per run"]
    rows = []
    for e in data.estimators:
        at = f[(f["estimator"] == e) & (f["step"] == last)]
        n = int(at["seed"].nunique())
        cells = [f"`{e}`", f"{n} of {len(data.seeds)}"]
        for key, _ in quantities:
            cells.append(_reading(at.loc[at["quantity"] == key, "value"].to_numpy(dtype=float)))
        objective = at[at["quantity"] == quantities[0][0]]
        wall = objective["wall_seconds"].to_numpy(dtype=float)
        cells.append(num(float(wall.mean()), 3) if len(wall) else "—")
        evals = objective["evaluations"].to_numpy(dtype=float)
        if e == EXACT:
            cells.append("— (exact gradient: enumerated)")
        else:
            cells.append(f"{float(evals.mean()):,.0f}" if len(evals) else "—")
        rows.append(cells)
    caption = (
        f"Exact values at the last step ({last:,}), {INTERVAL}."
        if len(data.seeds) > 1
        else f"Exact values at the last step ({last:,}); {ONE_SEED}."
    )
    return Table(header, rows, caption)


def _settings(data: TrainingData) -> str:
    run = data.meta["run"]
    opt = f"{run['optimizer']} (lr {run['lr']:g}" + (
        f", momentum {run['momentum']:g})" if "momentum" in run else ")"
    )
    quick = " (--quick: a short smoke run)" if run.get("quick") else ""
    return (
        f"{len(data.estimators)} estimators × {len(data.seeds)} seeds {list(data.seeds)}, "
        f"{run['steps']:,} steps{quick} of {opt} on minibatches of {run['batch_size']} of the "
        f"{run['n_points']} data points, in {run['dtype']} on the {run['device']}; the exact "
        f"objective of all {run['n_points']} points recorded at {len(run['record_steps'])} "
        f"steps (every {run['record_every']}); seed s initialises the model with model.seed + s; "
        f"root seed {run['seed']}."
    )


def training_blocks(directory: Path, figure: Any) -> list[Any]:
    """The report's "Training comparison" section. ``figure(build, name, caption)`` registers a
    figure with the renderer and returns its placeholder blocks (``render.render_report``)."""
    data = load_training_data(directory)
    many = len(data.seeds) > 1
    blocks: list[Any] = [Heading(2, "Training comparison"), Para(_settings(data))]
    failed = data.failed()
    if failed:
        blocks.append(
            Bullets([f"`{e}` seed {s} stopped: {msg}" for (e, s), msg in sorted(failed.items())])
        )
    blocks.append(final_table(data))
    band = INTERVAL if many else ONE_SEED
    blocks += figure(
        lambda: objective_figure(data, "step"),
        "training_vs_steps",
        f"Exact training objective and the kind's exact values vs step: {band}.",
    )
    blocks += figure(
        lambda: objective_figure(data, "wall"),
        "training_vs_wall",
        f"The same vs training wall time (mean over the seeds, exact evaluations "
        f"excluded): {band}.",
    )
    return blocks


def _case_bullets(data: TrainingData) -> list[str]:
    try:
        cfg = tomllib.loads(data.meta["case"].get("content") or "")
    except tomllib.TOMLDecodeError:
        cfg = {}
    out = []
    for table in ("data", "model", "compare"):
        if isinstance(cfg.get(table), dict):
            items = ", ".join(f"{k} = {v}" for k, v in cfg[table].items())
            out.append(f"{table}: {items}")
    env = data.meta.get("environment", {})
    git = env.get("git") or {}
    commit = (git.get("commit") or "unknown")[:12] + (
        " (uncommitted changes)" if git.get("dirty") else ""
    )
    out.append(
        f"estbench {env.get('estbench_version')} at commit {commit}; torch "
        f"{env.get('torch_version')}, Python {env.get('python_version')}, "
        f"{env.get('num_threads')} threads; case file {data.meta['case'].get('path')}"
    )
    return out


def render_training_report(directory: str | Path, *, svg: bool = False, log: Any = None) -> Any:
    """The report of a case directory that holds a training comparison and no measurement
    (``render.render_report`` calls this for it): report.md, report.html and figures/."""
    from ..results import atomic_write
    from .document import to_html, to_markdown
    from .render import Image, ReportFiles, _Figure, _render_figures, _resolve

    root = Path(directory)
    data = load_training_data(root)
    jobs: list[_Figure] = []

    def figure(build: Any, name: str, caption: str) -> list[Any]:
        jobs.append(_Figure(build, name, caption))
        return [jobs[-1]]

    doc: list[Any] = [Heading(1, f"estbench report: {data.case_name}")]
    if data.meta["case"].get("description"):
        doc.append(Para(data.meta["case"]["description"]))
    doc += [Heading(2, "Case"), Bullets(_case_bullets(data))]
    doc += training_blocks(root, figure)
    pngs = _render_figures(jobs, root / "figures", svg)
    written = [p for p in pngs if p is not None]
    if log:
        for png in written:
            log(f"  {png}")
    images = {
        id(job): Image(png.relative_to(root).as_posix(), job.caption, job.caption)
        for job, png in zip(jobs, pngs, strict=True)
        if png is not None
    }
    final: list[Block] = _resolve(doc, images)
    atomic_write(root / "report.md", to_markdown(final))
    atomic_write(root / "report.html", to_html(f"estbench report: {data.case_name}", final, root))
    keep = {q for p in written for q in ((p, p.with_suffix(".svg")) if svg else (p,))}
    for old in (root / "figures").glob("*"):
        if old.suffix in (".png", ".svg") and old not in keep:
            old.unlink()
    return ReportFiles(root / "report.md", root / "report.html", tuple(written))
