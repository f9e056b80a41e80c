"""One colour and one marker per estimator, in every figure of every report.

The style comes from the estimator's *name*, never from its position in a run: built-ins have a
fixed slot in ``SLOTS`` (the seed study's seven first, so they get the most distinct colours), an
unknown name (a plugin) gets a slot from a hash of the name. A slot is a (colour, marker) pair of
seaborn's colour-blind-safe palette and ten markers; the first ten slots differ in both.
Parameters of a configured variant (``concrete(tau=0.1)``) keep the family's colour and marker and
get their own line style, so the seed study's two Concretes stay apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import seaborn as sns

from ..estimators.registry import parse_spec

# Never reorder: a slot is an estimator's identity across reports. New built-ins go at the end.
SLOTS = (
    "reinforce",
    "arm",
    "concrete",
    "mean-field",
    "st",
    "psa",
    "sa",
    "rloo",
    "disarm",
    "arms",
    "muprop",
    "rebar",
    "tokui-sato",
    "leg",
    "st-gs",
    "gumbel-rao",
    "st-identity",
    "st-hardtanh",
    "st-tanh",
    "st-slope",
    "darn",
    "weight-reinforce",
    "weight-st",
    "binaryconnect",
    "weight-arm",
    "weight-disarm",
    "weight-concrete",
    "weight-st-gs",
    "weight-gumbel-rao",
)
PALETTE = tuple(sns.color_palette("colorblind", 10).as_hex())
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))
N_SLOTS = len(PALETTE) * len(MARKERS)


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    linestyle: Any

    def line(self) -> dict[str, Any]:
        """Keyword arguments for ``Axes.plot``."""
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle}


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def slot(name: str) -> int:
    """The slot of an estimator family name (built-in order, else a stable hash)."""
    if name in SLOTS:
        return SLOTS.index(name)
    return len(SLOTS) + _digest(name) % (N_SLOTS - len(SLOTS))


def estimator_style(label: str) -> Style:
    """The style of an estimator label as it appears in results (``name`` or ``name(k=v)``)."""
    try:
        name, params = parse_spec(label)
    except Exception:  # a label we cannot parse still gets a stable style
        name, params = label, {}
    i = slot(name)
    color = PALETTE[i % len(PALETTE)]
    # Shift the marker by one per round of colours so no two slots share both.
    marker = MARKERS[(i + i // len(PALETTE)) % len(MARKERS)]
    if not params:
        return Style(color, marker, "-")
    text = ",".join(f"{k}={params[k]}" for k in sorted(params))
    return Style(color, marker, LINESTYLES[_digest(text) % len(LINESTYLES)])


def strip_param(label: str, key: str) -> str:
    """``concrete(tau=0.1, hard=True)`` without ``tau`` -> ``concrete(hard=True)``."""
    name, params = parse_spec(label)
    rest = [f"{k}={v}" for k, v in params.items() if k != key]
    return f"{name}({', '.join(rest)})" if rest else name
