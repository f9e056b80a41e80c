"""Names and parsers the command line needs before any work starts, without importing torch.

``estbench --help``, ``list`` and ``cases`` build their parser from these; the modules that do
the work (model, device, exact, estimators.registry) use the same names and parsers, and
tests/test_cli.py checks that the names agree with theirs.
"""

from __future__ import annotations

import os
import re

CODING_NAMES = ("pm1", "01")  # estbench.kinds.sbn.model.CODINGS
NOISE_NAMES = ("logistic", "gaussian", "uniform")  # estbench.kinds.sbn.model.NOISES
HEAD_NAMES = ("logistic", "softmax", "mse")  # estbench.kinds.sbn.model.HEADS
DEVICE_NAMES = ("cpu", "cuda")  # estbench.device.DEVICES
DTYPE_NAMES = ("float64", "float32")  # estbench.device.DTYPES

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 10**6,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 10**9,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tib": 1 << 40,
}


def parse_bytes(text: str | int) -> int:
    """'512MiB', '2GiB', '1.5G' or a plain integer -> bytes."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(
            f"cannot read {text!r} as a size in bytes (examples: 2GiB, 512MiB, 1000000)"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def split_specs(text: str) -> list[str]:
    """'st,psa,concrete(tau=0.1)' -> ['st', 'psa', 'concrete(tau=0.1)'] (commas inside () kept)."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes; override with ESTBENCH_MEMORY_BUDGET or the argument


def default_memory_budget() -> int:
    """The memory budget: ESTBENCH_MEMORY_BUDGET (e.g. 4G) or 1 GiB."""
    env = os.environ.get("ESTBENCH_MEMORY_BUDGET")
    return parse_bytes(env) if env else DEFAULT_MEMORY_BUDGET
