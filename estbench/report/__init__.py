"""Standardized reports rendered from saved results: ``report.md``, ``report.html`` (figures
embedded, readable offline) and ``figures/`` (PNG + SVG, byte-reproducible).

    from estbench.report import render_report
    render_report("out/default")
"""

from .render import MAX_POINT_FIGURES, ReportFiles, render_report
from .style import estimator_style

__all__ = ["MAX_POINT_FIGURES", "ReportFiles", "estimator_style", "render_report"]
