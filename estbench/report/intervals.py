"""What a saved number may be shown as: exact, measured, or only bounded from above.

A Monte Carlo relative bias comes from B^ = ||mean - g||^2 - T^/S, an unbiased but noisy estimate
of the squared bias. For an unbiased estimator B^ scatters around 0, and its square root (0 when
B^ < 0) is a positive number of any size: REINFORCE at depth 12 reads 179 with a 95 % interval
[0, 365]. Shown as a point, that number says "REINFORCE is very biased", the opposite of the
truth. So figures, tables and findings classify every value here, once, the same way:

- ``exact``: enumerated over paths (``method`` "exact"), no sampling error;
- ``measured``: Monte Carlo whose 95 % interval excludes 0 (and, on a log axis, lies above the
  axis floor): a value with an interval;
- ``bound``: Monte Carlo whose interval reaches 0 (or the floor): only its upper end says
  anything -- the value is "<= upper end, consistent with 0". An interval of zero width is no
  bound: the draws did not vary (a deterministic estimator's variance is 0, known exactly).
  A bias whose run's unbiasedness test did not reject zero is a bound too, even where its 95 %
  interval excludes 0: among hundreds of intervals some exclude 0 by chance, and heavy-tailed
  draws (MuProp at depth 12: 235 [17, 332]) make the normal interval too short, while the test
  is corrected for multiplicity; a reader must not see a bias the data do not establish;
- ``bare``: Monte Carlo without an interval (a run without bootstrap, say): no claim either way,
  never drawn or ranked like a measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

EXACT_ZERO = 1e-9  # an exact value this small is 0 up to round-off (the runner's exact test)
KINDS = ("exact", "measured", "bound", "bare")


@dataclass(frozen=True)
class Reading:
    kind: str  # one of KINDS
    value: float  # the point estimate (the exact value for "exact")
    low: float  # the interval's ends; both equal ``value`` for "exact", NaN for "bare"
    high: float

    @property
    def top(self) -> float:
        """Where the value is drawn: the upper end of a bound, the value otherwise."""
        return self.high if self.kind == "bound" else self.value

    @property
    def exact_zero(self) -> bool:
        return self.kind == "exact" and abs(self.value) <= EXACT_ZERO


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def classify(
    method: str, value: float, low: float | None, high: float | None, floor: float = 0.0
) -> Reading | None:
    """The reading of one number; None when there is no number (a failed estimator).

    ``floor``: the smallest value an axis shows (0 for text). An interval reaching it cannot be
    told from one reaching 0 there, so it is a bound too."""
    if not _finite(value):
        return None
    if method == "exact":
        return Reading("exact", value, value, value)
    if not (_finite(low) and _finite(high)):
        return Reading("bare", value, math.nan, math.nan)
    assert low is not None and high is not None  # for mypy: _finite checked both
    if low <= max(floor, 0.0) and high > low:
        return Reading("bound", value, low, high)
    return Reading("measured", value, low, high)


BIAS_METRICS = ("rel_bias", "bias_sq")


def from_row(row: Any, floor: float = 0.0) -> Reading | None:
    """The reading of a results row (a mapping with value, ci_low, ci_high, method, and, from
    the report loader, ``zero_bias_kept``: the run's unbiasedness test did not reject zero)."""
    if row is None:
        return None
    reading = classify(str(row["method"]), row["value"], row["ci_low"], row["ci_high"], floor)
    kept = bool(row.get("zero_bias_kept", False)) and row.get("metric") in BIAS_METRICS
    if reading is not None and reading.kind == "measured" and kept and reading.high > 0:
        return Reading("bound", reading.value, min(reading.low, 0.0), reading.high)
    return reading


def scaled(row: Any, transform: Any, floor: float = 0.0) -> Reading | None:
    """The reading of ``transform(x)`` for a row of x, transform monotone increasing (the
    relative sd sqrt(max(T, 0)) / ||g|| from the total variance T and its interval)."""
    if row is None:
        return None

    def t(v: Any) -> float | None:
        return float(transform(v)) if _finite(v) else None

    value = t(row["value"])
    return classify(
        str(row["method"]),
        math.nan if value is None else value,
        t(row["ci_low"]),
        t(row["ci_high"]),
        floor,
    )
