"""The committed reports stay small: git tracks what a reader opens on the repository page
(``report.md`` and its PNG figures, ``reports/README.md``), at most 15 MB in all, and ignores
what ``bash scripts/make_reports.sh`` recreates (results, ``report.html``, SVG twins, ``points/``,
``checkpoints/``). The PNGs are palette images (``estbench.report.render.palette_png``)."""

from __future__ import annotations

import io
import posixpath
import re
import subprocess
from pathlib import PurePosixPath

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from estbench.report.render import DPI, palette_png

from .conftest import ROOT

MAX_BYTES = 15_000_000
# What a local run writes into reports/<case>/ and git must neither track nor pick up.
GENERATED = (
    "report.html",
    "results.csv",
    "results.json",
    "figures/vs_depth.svg",
    "points/depth=1.json",
    "checkpoints/w4-4-4_seed0_epoch50.npz",
    "training.csv",
    "training.json",
    "runs/exact_seed0.json",
    "compare-run.json",
)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=check
    )


@pytest.fixture(scope="module")
def tracked() -> dict[str, int]:
    """Path -> size in bytes of every file under reports/ in git's index (what a commit holds)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (the size limit is about the repository)")
    out = _git("ls-files", "-s", "-z", "--", "reports").stdout
    entries = [e.split("\t", 1) for e in out.split("\0") if e]
    blobs = [info.split()[1] for info, _ in entries]
    sizes = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "--batch-check=%(objectsize)"],
        input="\n".join(blobs) + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {path: int(size) for (_, path), size in zip(entries, sizes, strict=True)}


def test_tracked_reports_fit_in_15_mb(tracked):
    total = sum(tracked.values())
    largest = sorted(tracked.items(), key=lambda kv: -kv[1])[:5]
    assert 0 < total <= MAX_BYTES, f"reports/ holds {total / 1e6:.1f} MB in git; {largest}"


def test_only_markdown_and_png_are_tracked(tracked):
    reports = [p for p in tracked if p.endswith("/report.md")]
    assert len(reports) >= 10  # every shipped case keeps its report
    for path in tracked:
        p = PurePosixPath(path)
        assert p.suffix in (".md", ".png") or p.name == ".gitignore", path
        assert "points" not in p.parts and "checkpoints" not in p.parts, path
        if p.suffix == ".png":
            assert p.parent.name == "figures", path


def test_generated_files_are_ignored_in_every_report(tracked):
    cases = sorted({PurePosixPath(p).parent for p in tracked if p.endswith("/report.md")})
    paths = [str(case / name) for case in cases for name in GENERATED]
    ignored = _git("check-ignore", "--no-index", *paths, check=False).stdout.split()
    assert sorted(ignored) == sorted(paths)
    # ...and not what the repository page shows.
    kept = [str(case / name) for case in cases for name in ("report.md", "figures/cos-a.png")]
    assert _git("check-ignore", "--no-index", *kept, check=False).stdout.split() == []


def test_report_links_point_at_tracked_files(tracked):
    """The Markdown a reader opens on the repository page links only to committed files."""
    for path in tracked:
        if not path.endswith(".md"):
            continue
        base = PurePosixPath(path).parent
        links = _LINK.findall((ROOT / path).read_text(encoding="utf-8"))
        assert links, path
        for link in links:
            if "://" in link:
                continue
            target = posixpath.normpath(str(base / link.split("#")[0]))
            assert target in tracked, f"{path} links to {link}, which git does not track"


def _figure_png() -> bytes:
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    x = np.linspace(0, 1, 50)
    for k, color in enumerate(("#0173b2", "#de8f05", "#029e73")):
        ax.plot(x, x**k, color=color, marker="o", label=f"line {k}")
        ax.fill_between(x, x**k * 0.9, x**k * 1.1, color=color, alpha=0.2)
    ax.imshow(np.outer(x, x), extent=(0.6, 1, 0, 0.4), cmap="viridis")
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def test_palette_png_is_small_faithful_and_reproducible():
    raw = _figure_png()
    out = palette_png(raw)
    assert out == palette_png(raw)  # same pixels, same bytes
    assert out[:8] == b"\x89PNG\r\n\x1a\n" and len(out) < len(raw) / 2
    with Image.open(io.BytesIO(out)) as small, Image.open(io.BytesIO(raw)) as big:
        assert small.mode == "P" and small.size == big.size
        assert set(small.info) <= {"dpi", "transparency"}  # no software or date stamp
        a = np.asarray(small.convert("RGB"), dtype=int)
        b = np.asarray(big.convert("RGB"), dtype=int)
    assert len(np.unique(a.reshape(-1, 3), axis=0)) <= 256
    err = np.abs(a - b)
    assert err.mean() < 1.0 and np.percentile(err, 99.9) <= 24
    # The estimator colours themselves survive (within a step of the palette).
    for hex_color in ("#0173b2", "#de8f05", "#029e73"):
        rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
        assert np.abs(a - rgb).sum(axis=-1).min() <= 12, hex_color
