"""One colour and one marker per estimator, in every figure of every report.

The style comes from the estimator's *name*, never from its position in a run: built-ins have a
fixed slot in ``SLOTS`` (the seed study's seven first, so they get the most distinct colours), an
unknown name (a plugin) gets a slot from a hash of the name. A slot is a (colour, marker, line
style) triple: a colour-blind-safe palette of ten colours (seaborn's "colorblind", written
out), ten markers and, per round of ten slots, a line style (solid, dashed, long-dashed), so the
first ten slots differ in colour and marker and no two slots share a triple. A configured
variant (``concrete(tau=0.1)``) keeps its family's colour and marker and gets another line
style, so the seed study's two Concretes stay apart. ``figure_styles`` makes the triples of
one figure unique.

What the styles must never look like: the marks of ``figures`` for Monte Carlo values that are
only upper bounds -- an open down-pointing triangle joined by a faint dotted line. So no
estimator has a down-pointing triangle or a dotted line style.

The ``sbvae`` kind's built-ins are named after their ``sbn`` counterparts with the prefix ``vae-``
and styled as those counterparts (``style_name``): the same estimator looks the same in both
kinds' reports, and a figure never shows two kinds' estimators. Three of them take instead the
first-round slots of sbn estimators that kind lacks (``mean-field``) or refuses (``psa``, ``sa``),
so that a VAE figure's ten first-round styles, ten colours, go to ``vae-reinforce``, ``-arm``,
``-concrete``, ``-muprop``, ``-st``, ``-gumbel-rao``, ``-rebar``, ``-rloo``, ``-disarm`` and
``-arms``: every family the shipped VAE cases measure has its own colour.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
    "vae-reinforce",
    "vae-rloo",
    "vae-arm",
    "vae-disarm",
    "reinmax",
    "gst",
    "zgr",
    "carms",
    "vae-muprop",
    "vae-rebar",
    "vae-st",
    "vae-st-identity",
    "vae-st-hardtanh",
    "vae-st-tanh",
    "vae-st-slope",
    "vae-darn",
    "vae-concrete",
    "vae-st-gs",
    "vae-gumbel-rao",
    "relax",
    "dcv",
    "rodeo",
    "weight-arms",
    "weight-carms",
    "weight-reinmax",
    "weight-gst",
    "weight-dcv",
    "weight-rodeo",
)
# The VAE kind's styles (module docstring): "vae-" + an sbn name is styled as that name, except
# these, which take the first-round slots of sbn estimators the kind lacks or refuses. The "vae-"
# names in SLOTS are no longer read; they keep their places so that the slots after them stay.
COUNTERPART_PREFIX = "vae-"
MOVED = {"vae-muprop": "mean-field", "vae-gumbel-rao": "psa", "vae-rebar": "sa"}
# seaborn's colour-blind-safe palette ("colorblind", 10 colours), written out: seaborn imported
# pyplot and scipy, a second of the report's start-up.
PALETTE = (
    "#0173b2",
    "#de8f05",
    "#029e73",
    "#d55e00",
    "#cc78bc",
    "#ca9161",
    "#fbafe4",
    "#949494",
    "#ece133",
    "#56b4e9",
)
# No "v": an open down-pointing triangle is the mark of an upper bound (figures.BOUND_MARKER).
MARKERS = ("o", "s", "^", "D", "P", "X", "*", "h", "<", ">")
# Dashes only, never dots: a dotted line joins upper bounds. The first three are the rounds of
# built-in slots; the rest are for variants and for keeping a figure's triples unique.
LINESTYLES: tuple[Any, ...] = (
    "-",
    (0, (4.0, 1.6)),  # dashed
    (0, (9.0, 2.5)),  # long dashes
    (0, (6.0, 1.8, 2.2, 1.8)),  # dash, short dash
    (0, (9.0, 2.0, 3.0, 2.0, 3.0, 2.0)),  # long, short, short
)
N_SLOTS = len(PALETTE) * len(MARKERS)
_SPEC = re.compile(r"\s*([A-Za-z0-9_-]+)\s*(?:\((.*)\))?\s*", re.DOTALL)


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    linestyle: Any

    def key(self) -> tuple[str, str, str]:
        return (self.color, self.marker, repr(self.linestyle))

    def line(self) -> dict[str, Any]:
        """Keyword arguments for ``Axes.plot``."""
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle}


def parse_label(text: str) -> tuple[str, dict[str, str]]:
    """``concrete(tau=0.1, hard=True)`` -> ``("concrete", {"tau": "0.1", "hard": "True"})``.

    The estimator registry's ``parse_spec`` without its value conversion (values stay text) and
    without importing the registry (which imports torch): a report draws from saved labels."""
    from ..options import split_specs

    m = _SPEC.fullmatch(text)
    if not m:
        raise ValueError(f"cannot read estimator {text!r}")
    params: dict[str, str] = {}
    for item in split_specs(m.group(2) or ""):
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ValueError(f"cannot read {item!r} in {text!r}")
        params[key.strip()] = value.strip()
    return m.group(1), params


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def style_name(name: str) -> str:
    """The name whose slot styles the estimator family ``name``: the sbn counterpart of a VAE
    estimator (``MOVED``, or ``name`` without the prefix ``vae-`` where that is a built-in slot),
    else ``name`` itself."""
    if name in MOVED:
        return MOVED[name]
    base = name.removeprefix(COUNTERPART_PREFIX)
    return base if base != name and base in SLOTS else name


def slot(name: str) -> int:
    """The slot of an estimator family name (built-in order, else a stable hash)."""
    name = style_name(name)
    if name in SLOTS:
        return SLOTS.index(name)
    return len(SLOTS) + _digest(name) % (N_SLOTS - len(SLOTS))


def estimator_style(label: str) -> Style:
    """The style of an estimator label as it appears in results (``name`` or ``name(k=v)``)."""
    try:
        name, params = parse_label(label)
    except ValueError:  # a label we cannot parse still gets a stable style
        name, params = label, {}
    i = slot(name)
    rnd = i // len(PALETTE)
    color = PALETTE[i % len(PALETTE)]
    # Shift the marker by one per round of colours so no two slots share both.
    marker = MARKERS[(i + rnd) % len(MARKERS)]
    base = rnd % 3
    if not params:
        return Style(color, marker, LINESTYLES[base])
    text = ",".join(f"{k}={params[k]}" for k in sorted(params))
    shift = 1 + _digest(text) % (len(LINESTYLES) - 1)  # never the family's own line style
    return Style(color, marker, LINESTYLES[(base + shift) % len(LINESTYLES)])


def figure_styles(labels: Iterable[str]) -> dict[str, Style]:
    """The styles of the estimators drawn in one figure, every (colour, marker) pair unique
    (figures of markers alone, the bias-variance map, tell estimators apart by them), hence
    every (colour, marker, line style): each keeps its own style (``estimator_style``) unless an
    earlier label of the figure has its colour and marker (a variant of a drawn family, a
    plugin's hashed slot); then it takes the next free marker of its colour. Plain names come
    first, so a family keeps its own style. Same labels, same styles."""
    labels = list(labels)
    out: dict[str, Style] = {}
    pairs: set[tuple[str, str]] = set()
    taken: set[tuple[str, str, str]] = set()
    # Plain names first: a family keeps its own style, its variants move.
    for label in sorted(labels, key=lambda text: "(" in text):
        st = estimator_style(label)
        m0 = MARKERS.index(st.marker) if st.marker in MARKERS else 0
        l0 = LINESTYLES.index(st.linestyle) if st.linestyle in LINESTYLES else 0
        n = len(MARKERS)
        cands = [
            Style(st.color, MARKERS[(m0 + k) % n], LINESTYLES[(l0 + k // n) % len(LINESTYLES)])
            for k in range(n * len(LINESTYLES))
        ]
        free = [c for c in cands if (c.color, c.marker) not in pairs and c.key() not in taken]
        st = (free or [c for c in cands if c.key() not in taken] or [st])[0]
        pairs.add((st.color, st.marker))
        taken.add(st.key())
        out[label] = st
    return {label: out[label] for label in labels}


def strip_param(label: str, key: str) -> str:
    """``concrete(tau=0.1, hard=True)`` without ``tau`` -> ``concrete(hard=True)``."""
    name, params = parse_label(label)
    rest = [f"{k}={v}" for k, v in params.items() if k != key]
    return f"{name}({', '.join(rest)})" if rest else name
