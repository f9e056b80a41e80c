"""Property tests: any mutation of a valid case file or checkpoint either works or fails with a
one-line ``estbench: error:`` and exit code 1, never a traceback.

A case is mutated as a TOML document (a key deleted, a value replaced by one of another type or
out of range, an unknown key added, a table replaced), written back with a minimal TOML writer
and run with ``estbench run`` in-process; a checkpoint is mutated as the arrays of its ``.npz``
(a key dropped, a shape, dtype or value changed, NaN/inf inserted, extra keys) and read with
``estbench exact``. Sizes are mutated to huge values too: a case too large for the memory budget
must be refused before any work, with the budget low (``--memory-budget 64MiB``) so that a
refusal is cheap.

Any traceback fails. ``KNOWN`` can hold the signature of a traceback whose defect is open (with
an xfail test naming its input), so that the property tests keep checking everything else while
it is fixed; it is empty: the defects these tests found (sizes built before the budget check,
seeds out of range, a key with a newline, complex arrays) are fixed and tested below.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re
import tempfile
import tomllib
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from estbench.cli import main
from estbench.kinds.sbn.checkpoint import save_checkpoint
from estbench.kinds.sbn.model import random_sbn
from estbench.results import load_results

# ---- a minimal TOML writer (tomli_w is not a dependency) ------------------------------------

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else toml_string(key)


def toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {type(value).__name__}")


def toml_dumps(doc: dict[str, Any]) -> str:
    """Top-level scalars, then one ``[table]`` per table; deeper tables inline."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_key(name)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN (for the writer's round trip)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_the_toml_writer_round_trips():
    doc = {
        "a": 1,
        "f": [math.nan, -math.inf, 1e308, -0.0, 2**64],
        "s": 'q"\\\x00\x7f\n é \U0001f600',
        "t": {"k y": {"n": [True, {"x": []}]}, "e": []},
    }
    assert same(tomllib.loads(toml_dumps(doc)), doc)


# ---- what the command line may do ---------------------------------------------------------


@dataclass(frozen=True)
class Known:
    """A known traceback: its exception type, message and where it is raised."""

    name: str
    types: tuple[type[BaseException], ...]
    message: str  # a regex the message must match
    frames: tuple[str, ...]  # "file.py:function", one of which is in the traceback

    def matches(self, e: BaseException) -> bool:
        tb = traceback.extract_tb(e.__traceback__)
        frames = {f"{Path(f.filename).name}:{f.name}" for f in tb}
        return (
            isinstance(e, self.types)
            and re.search(self.message, str(e)) is not None
            and bool(frames & set(self.frames))
        )


KNOWN: tuple[Known, ...] = ()  # tracebacks still tolerated (none: each was fixed)


@dataclass
class Outcome:
    code: int | None
    out: str
    err: str
    known: str | None = None  # a KNOWN traceback, tolerated


def run_cli(argv: list[str]) -> Outcome:
    """``estbench.cli.main`` in-process; an exception out of it is a traceback at the command
    line (reported unless it is ``KNOWN``)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: int | None = main(argv)
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 1
        except Exception as e:  # noqa: BLE001
            for known in KNOWN:
                if known.matches(e):
                    return Outcome(None, out.getvalue(), err.getvalue(), known.name)
            raise AssertionError(
                f"estbench {' '.join(argv)}: traceback\n{traceback.format_exc()}\nstderr:\n"
                f"{err.getvalue()}"
            ) from e
    return Outcome(code, out.getvalue(), err.getvalue())


def check_error_line(outcome: Outcome, what: str) -> None:
    """Exit 1 with the error as the last stderr line: one line, no traceback."""
    assert outcome.code == 1, f"{what}: exit {outcome.code}\n{outcome.err}"
    assert "Traceback" not in outcome.err, f"{what}:\n{outcome.err}"
    last = outcome.err.rstrip("\n").rpartition("\n")[2]
    assert last.startswith("estbench: error:"), f"{what}: stderr\n{outcome.err}"


# ---- case files ---------------------------------------------------------------------------

CASE: dict[str, Any] = {
    "schema_version": 1,
    "description": "property-test case",
    "data": {"kind": "xor", "n": 6, "seed": 3, "noise": 0.1},
    "model": {
        "width": 2,
        "depth": 1,
        "coding": "pm1",
        "head": "logistic",
        "init": "random",
        "scale": 1.3,
        "seed": 0,
    },
    "training": {"epochs": 1, "batch_size": 3, "lr": 0.1, "seed": 0},
    "sweep": {"seed": [0]},
    "measure": {
        "estimators": ["st", "reinforce"],
        "draws": 40,
        "M": [1, 2],
        "bootstrap": 4,
        "exact_moments": True,
        "max_paths": 64,
        "quick_draws": 20,
    },
}
# Values that would run for long rather than take memory are kept small (at most 3 epochs).
TIME_BOUND = {("training", "epochs"), ("training", "measure_at"), ("sweep", "checkpoint")}
# Huge sizes fail to allocate at once if something builds them before the budget refuses them
# (2^31 would not: a 2^31-wide layer is 16 GiB, allocated and filled).
HUGE = [2**40, 2**62, 2**63 - 1, 2**64, 10**15, 10**30]
NAMES = [  # strings the schema knows, to get past one check and into the next
    *["st", "reinforce", "concrete", "concrete(tau=0.5)", "weight-st", "psa", "exact", "nope("],
    *["st-gs", "weight-reinforce", "arm(tau=1)", "rebar", "muprop", "st,psa", "ST"],
    *["two-class", "moons", "xor", "blobs", "npz", "01", "pm1", "softmax", "mse", "ap2"],
    *["uniform", "random", "bernoulli", "sign", "gaussian", "cuda", "cpu", "float32", "adam"],
    *["real", "stochastic", "logistic", "probit", "sgd", "rel_bias", "snr", "missing.npz", ""],
]
INTS = st.one_of(st.integers(-2, 8), st.sampled_from([0, -1, 1000, 10**5, *HUGE, -(2**64)]))
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.5, 1e-300, 1e308, 0.5, 0.999, 1.0, math.nan, math.inf]),
)
STRINGS = st.one_of(st.sampled_from(NAMES), st.text(max_size=6))
# Keys of added tables: no control characters (a newline in a key is a known defect, tested
# below by test_an_unknown_key_with_a_newline_is_one_error_line).
KEYS_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=4)
values = st.recursive(
    st.one_of(INTS, FLOATS, STRINGS, st.booleans()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(KEYS_TEXT, inner, max_size=2)
    ),
    max_leaves=4,
)
# Keys the valid case leaves out, with a value of their type.
OPTIONAL: dict[tuple[str, ...], Any] = {
    ("name",): "mutant",
    ("model", "widths"): [3, 2],
    ("model", "outputs"): 2,
    ("model", "weights"): "bernoulli",
    ("model", "first_layer"): "bernoulli",
    ("model", "activation"): "sign",
    ("model", "eta_scale"): 1.0,
    ("model", "weight_noise"): "gaussian",
    ("model", "noise"): "probit",
    ("model", "checkpoint"): "missing.npz",
    ("data", "classes"): 3,
    ("data", "dim"): 3,
    ("data", "path"): "missing.npz",
    ("training", "method"): "exact",
    ("training", "optimizer"): "adam",
    ("training", "momentum"): 0.5,
    ("training", "measure_at"): [0, 1],
    ("sweep", "depth"): [1, 2],
    ("sweep", "width"): [2, 3],
    ("sweep", "tau"): [0.5, 1.0],
    ("sweep", "checkpoint"): [0, 1],
    ("measure", "metrics"): ["rel_bias", "snr"],
    ("measure", "device"): "cpu",
    ("measure", "dtype"): "float32",
    **{(table, "extra"): 1 for table in ("data", "model", "training", "sweep", "measure")},
    ("extra",): {"a": 1},
}


# In-range alternatives, so that a mutant often gets past validation and runs.
PLAUSIBLE: dict[tuple[str, ...], list[Any]] = {
    ("data", "kind"): ["two-class", "moons", "blobs"],
    ("data", "n"): [2, 3, 40],
    ("data", "classes"): [2, 4],
    ("data", "dim"): [3],
    ("model", "width"): [1, 3],
    ("model", "depth"): [2, 3],
    ("model", "widths"): [[1], [3, 1]],
    ("model", "coding"): ["01"],
    ("model", "head"): ["softmax", "mse"],
    ("model", "outputs"): [1, 3],
    ("model", "init"): ["ap2", "uniform"],
    ("model", "noise"): ["gaussian", "uniform"],
    ("model", "scale"): [1e-9, 50.0],
    ("training", "method"): ["exact", "st", "arm"],
    ("training", "optimizer"): ["adam"],
    ("training", "lr"): [1e-9, 1e3],
    ("training", "batch_size"): [1, 100],
    ("training", "measure_at"): [[0], [0, 1]],
    ("sweep", "seed"): [[0, 1], [5]],
    ("sweep", "depth"): [[1, 2]],
    ("sweep", "width"): [[1, 2]],
    ("sweep", "tau"): [[0.5], [0.1, 2.0]],
    ("measure", "estimators"): [["st"], ["concrete", "st-gs"], ["psa", "arm", "muprop"]],
    ("measure", "draws"): [10, 11, 100],
    ("measure", "M"): [[1], [1, 10]],
    ("measure", "bootstrap"): [0, 1],
    ("measure", "exact_moments"): [False],
    ("measure", "max_paths"): [1],
    ("measure", "metrics"): [["rel_bias"], ["snr", "cos_mean"]],
    ("measure", "dtype"): ["float32"],
}


def like(template: Any) -> st.SearchStrategy[Any]:
    """Values of the template's type (in range or not), to get past the type checks."""
    if isinstance(template, bool):
        return st.booleans()
    if isinstance(template, int):
        return INTS
    if isinstance(template, float):
        return FLOATS
    if isinstance(template, str):
        return STRINGS
    if isinstance(template, list):
        return st.lists(like(template[0]) if template else values, max_size=4)
    return values


def bounded(path: tuple[str, ...], value: Any) -> Any:
    if path[:2] not in TIME_BOUND:
        return value
    if isinstance(value, list):
        return [bounded(path, v) for v in value]
    return min(value, 3) if isinstance(value, int) and not isinstance(value, bool) else value


def lookup(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for key in path:
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def key_paths(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    """Every key of the document, and every element of its lists, as a path."""
    paths: list[tuple[str, ...]] = []
    for k, v in doc.items():
        paths.append((k,))
        if isinstance(v, dict):
            paths += [(k, *p) for p in key_paths(v)]
        elif isinstance(v, list):
            paths += [(k, str(i)) for i in range(len(v))]
    return paths


Mutation = tuple[str, tuple[str, ...], Any]


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    """Delete a key, replace a value (mostly by one of its type, or in range), or add a key."""
    kinds = ["delete", "replace", "replace", "add", "plausible", "plausible"]
    kind = draw(st.sampled_from(kinds))
    if kind == "plausible":
        path = draw(st.sampled_from(sorted(PLAUSIBLE)))
        return "replace", path, draw(st.sampled_from(PLAUSIBLE[path]))
    if kind == "delete":
        return kind, draw(st.sampled_from(key_paths(CASE))), None
    if kind == "add":
        path = draw(st.sampled_from(sorted(OPTIONAL)))
        template = OPTIONAL[path]
    else:
        path = draw(st.sampled_from(key_paths(CASE)))
        template = lookup(CASE, path)
    value = draw(like(template) if draw(st.integers(0, 3)) else values)
    return kind, path, bounded(path, value)


def mutate(doc: dict[str, Any], muts: list[Mutation]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for kind, path, value in muts:
        node: Any = doc
        for key in path[:-1]:
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                break  # an earlier mutation removed or replaced the way there
        else:
            last = path[-1]
            if isinstance(node, list) and last.isdigit() and int(last) < len(node):
                if kind == "delete":
                    del node[int(last)]
                else:
                    node[int(last)] = value
            elif isinstance(node, dict):
                if kind == "delete":
                    node.pop(last, None)
                else:
                    node[last] = value
    return doc


def run_case_text(text: str, budget: str = "64MiB") -> Outcome:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutant.toml"
        path.write_text(text)
        out = Path(tmp) / "out"
        argv = ["run", str(path), "--out", str(out), "--no-progress", "--no-report"]
        outcome = run_cli([*argv, "--memory-budget", budget])
        if outcome.code in (0, 2):  # a run that ran has its results pair
            meta, rows = load_results(out / "mutant")
            failed = [r for r in rows if r["error"]]
            assert (outcome.code == 2) == bool(failed), (outcome.code, failed[:1], outcome.err)
            if failed:
                assert "estimator failures (see the error column)" in outcome.err
        return outcome


def check_case(doc: dict[str, Any], what: str) -> Outcome:
    text = toml_dumps(doc)
    assert same(tomllib.loads(text), doc), text  # the file says what the mutation meant
    outcome = run_case_text(text)
    what = f"{what}\n--- mutant.toml ---\n{text}"
    if outcome.known is None and outcome.code not in (0, 2):
        check_error_line(outcome, what)
    return outcome


def test_the_unmutated_case_runs():
    outcome = check_case(CASE, "the valid case")
    assert outcome.code == 0, outcome.err


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(mutations(), min_size=1, max_size=3))
def test_a_mutated_case_runs_or_fails_with_one_error_line(muts):
    check_case(mutate(CASE, muts), f"mutations: {muts}")


@pytest.mark.parametrize(
    "key, value",
    [
        (("measure", "draws"), 10**12),
        (("measure", "bootstrap"), 10**12),
        (("model", "depth"), 10**4),
        (("model", "width"), 60),
    ],
)
def test_a_case_over_the_memory_budget_is_refused_before_any_work(key, value):
    outcome = check_case(mutate(CASE, [("replace", key, value)]), f"{key} = {value}")
    assert outcome.known is None and outcome.code == 1
    assert "over the memory budget of 64.00 MiB" in outcome.err.splitlines()[-1], outcome.err
    assert "computed" not in outcome.out  # refused by the plan, before any point ran


@pytest.mark.parametrize(
    "key, value",
    [
        (("data", "n"), 10**15),
        (("model", "width"), 10**15),
        (("model", "outputs"), 10**15),
        (("model", "depth"), 10**15),
        (("model", "width"), 2**63 - 1),
        (("model", "width"), 2**64),
        (("model", "depth"), 10**30),
    ],
    ids=lambda v: v if isinstance(v, int) else ".".join(v),
)
def test_a_huge_size_is_refused_by_the_memory_budget_before_anything_is_built(key, value):
    outcome = check_case(mutate(CASE, [("replace", key, value)]), f"{key} = {value}")
    assert outcome.known is None, f"traceback ({outcome.known})"
    assert outcome.code == 1
    assert "over the memory budget of 64.00 MiB" in outcome.err.splitlines()[-1], outcome.err


@pytest.mark.parametrize(
    "key, value",
    [
        (("data", "seed"), 2**64),
        (("sweep", "seed"), [-(2**64)]),
        (("model", "seed"), 2**64),
        (("training", "seed"), 2**64),
    ],
    ids=["data.seed", "sweep.seed", "model.seed", "training.seed"],
)
def test_a_seed_out_of_range_is_one_error_line(key, value):
    outcome = check_case(mutate(CASE, [("replace", key, value)]), f"{key} = {value}")
    assert outcome.known is None, f"traceback ({outcome.known})"
    assert outcome.code == 1


def test_an_unknown_key_with_a_newline_is_one_error_line():
    outcome = run_case_text(toml_dumps({**CASE, "data": {**CASE["data"], "a\nb": 1}}))
    assert outcome.code == 1
    assert outcome.err.count("\n") == 1 and outcome.err.startswith("estbench: error:"), outcome.err


# ---- checkpoints --------------------------------------------------------------------------


def valid_checkpoint(path: Path) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(0)
    model = random_sbn(2, (3, 2), 1, generator=g, scale=1.3)
    X = torch.randn(5, 2, generator=g, dtype=torch.float64)
    Y = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    save_checkpoint(path, model, X, Y)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


with tempfile.TemporaryDirectory() as _tmp:
    ARRAYS = valid_checkpoint(Path(_tmp) / "valid.npz")
KEYS = sorted(ARRAYS)


def reject_constant(name: str) -> Any:
    raise AssertionError(f"--json printed {name}, which is not JSON")


def check_exact(path: Path, what: str) -> list[Outcome]:
    """``estbench exact`` and ``estbench exact --json``: exit 0 with the gradient (valid JSON
    without NaN or Infinity), or exit 1 with one error line."""
    outcomes = []
    for extra in ([], ["--json"]):
        outcome = run_cli(["exact", "--checkpoint", str(path), *extra])
        label = f"{what} (estbench exact {' '.join(extra)})"
        if outcome.known is None and outcome.code != 0:
            check_error_line(outcome, label)
        if outcome.code == 0 and extra:  # valid, finite JSON
            try:
                payload = json.loads(outcome.out, parse_constant=reject_constant)
            except AssertionError as e:
                raise AssertionError(f"{label}: {e}") from None
            assert set(payload) >= {"loss", "grad"}, label
        if outcome.code == 0 and not extra:
            assert "exact objective" in outcome.out, label
        outcomes.append(outcome)
    return outcomes


def _set_value(a: np.ndarray, v: float) -> np.ndarray:
    a = a.astype(np.float64, copy=True)
    if a.size:
        a.flat[0] = v
    return a


CHANGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "nan": lambda a: _set_value(a, math.nan),
    "inf": lambda a: _set_value(a, math.inf),
    "huge": lambda a: _set_value(a, 1e308),
    "empty rows": lambda a: a[:0],
    "transpose": lambda a: a.T,
    "add axis": lambda a: a[None],
    "scalar": lambda a: np.asarray(a.flat[0] if a.size else 0.0),
    "drop column": lambda a: a[..., :-1],
    "extra column": lambda a: np.concatenate([a, a[..., :1]], axis=-1) if a.ndim else a,
    "int": lambda a: a.astype(np.int64),
    "bool": lambda a: a.astype(bool),
    "float32": lambda a: a.astype(np.float32),
    "complex": lambda a: a.astype(np.complex128),
    "string": lambda a: a.astype(str),
    "bytes": lambda a: np.frombuffer(a.tobytes(), dtype=np.uint8),
}


@st.composite
def checkpoint_mutations(draw: st.DrawFn) -> tuple[str, str, str]:
    kind = draw(st.sampled_from(["change", "change", "change", "drop", "extra"]))
    key = draw(st.sampled_from(KEYS))
    if kind == "change":
        return kind, key, draw(st.sampled_from(sorted(CHANGES)))
    if kind == "extra":
        return kind, draw(st.sampled_from(["W9", "b2x", "w0", "x", "estbench_model", "notes"])), key
    return kind, key, ""


def mutate_checkpoint(muts: list[tuple[str, str, str]]) -> dict[str, np.ndarray]:
    arrays = dict(ARRAYS)
    for kind, key, arg in muts:
        if kind == "drop":
            arrays.pop(key, None)
        elif kind == "extra":
            arrays[key] = ARRAYS[arg]
        elif key in arrays:
            with warnings.catch_warnings():  # e.g. complex -> float32 after a "complex"
                warnings.simplefilter("ignore")
                # (a change that does not apply to what earlier ones made is left out)
                with contextlib.suppress(IndexError, ValueError, TypeError):
                    arrays[key] = CHANGES[arg](arrays[key])
    return arrays


def test_the_unmutated_checkpoint_gives_its_exact_gradient(tmp_path):
    path = tmp_path / "ckpt.npz"
    np.savez(path, **ARRAYS)
    assert [o.code for o in check_exact(path, "the valid checkpoint")] == [0, 0]


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(checkpoint_mutations(), min_size=1, max_size=3))
def test_a_mutated_checkpoint_gives_its_gradient_or_one_error_line(muts):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt.npz"
        np.savez(path, **mutate_checkpoint(muts))
        check_exact(path, f"checkpoint mutations: {muts}")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not an npz",
        pytest.param(
            b"PK\x03\x04truncated zip",
            # numpy.load leaves the file open when the zip is corrupt (its own leak; estbench's
            # message is one line): the ResourceWarning is not estbench's to fix here.
            marks=pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
            id="truncated-zip",
        ),
        b"\x93NUMPY\x01\x00garbage",
    ],
    ids=["empty", "text", "truncated-zip", "npy-header"],
)
def test_a_file_that_is_not_an_npz_is_one_error_line(tmp_path, content):
    path = tmp_path / "ckpt.npz"
    path.write_bytes(content)
    check_exact(path, f"a file holding {content!r}")


def test_an_npy_file_is_one_error_line(tmp_path):
    path = tmp_path / "ckpt.npz"
    with open(path, "wb") as f:
        np.save(f, ARRAYS["W0"])
    check_exact(path, "an .npy file named .npz")


def mutated_checkpoint(tmp_path: Path, change: Callable[[dict[str, np.ndarray]], None]) -> Path:
    arrays = {k: v.copy() for k, v in ARRAYS.items()}
    change(arrays)
    path = tmp_path / "ckpt.npz"
    np.savez(path, **arrays)
    return path


def check_refused_or_finite(path: Path, what: str, *, refused: bool = False) -> None:
    """No known defect: exit 1 with one error line (``refused``: only that), or exit 0 with a
    finite gradient."""
    for outcome in check_exact(path, what):
        assert outcome.known is None, f"{what}: {outcome.known}\n{outcome.out[:200]}"
        assert outcome.code == 1 if refused else outcome.code in (0, 1), (outcome.code, what)


def _set(key: str, index: tuple[int, ...], value: float) -> Callable[[dict[str, np.ndarray]], None]:
    return lambda a: a[key].__setitem__(index, value)


def _astype(*keys: str, dtype: Any) -> Callable[[dict[str, np.ndarray]], None]:
    return lambda a: a.update({k: a[k].astype(dtype) for k in keys})


def test_a_checkpoint_whose_objective_overflows_is_refused_or_finite(tmp_path):
    """A finite but huge head bias overflows the exact objective: --json must not print
    Infinity (which is not JSON)."""
    check_refused_or_finite(mutated_checkpoint(tmp_path, _set("b2", (0,), 1e308)), "b2[0] = 1e308")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_astype("X", dtype=str), id="X-strings"),
        pytest.param(_astype("Y", dtype=str), id="Y-strings"),
        pytest.param(_set("X", (0, 0), math.nan), id="X-nan"),
        pytest.param(_set("X", (1, 1), -math.inf), id="X-inf"),
        pytest.param(_set("Y", (0,), math.nan), id="Y-nan"),
        pytest.param(lambda a: a.update(X=a["X"][:0], Y=a["Y"][:0]), id="zero-points"),
    ],
)
def test_a_checkpoint_with_bad_data_is_refused_in_one_line(tmp_path, change, request):
    what = request.node.callspec.id
    check_refused_or_finite(mutated_checkpoint(tmp_path, change), what, refused=True)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_astype("W0", dtype=complex), id="W0-complex"),
        pytest.param(_astype("X", dtype=complex), id="X-complex"),
    ],
)
def test_a_checkpoint_with_complex_arrays_is_refused_in_one_line(tmp_path, change, request):
    what = request.node.callspec.id
    check_refused_or_finite(mutated_checkpoint(tmp_path, change), what, refused=True)
