"""Case files: one TOML file per case, validated strictly before any work starts.

A case names its data, its model (or a checkpoint), optional training to checkpoints, a sweep
(cartesian product of depth, width, checkpoint, tau and seed), and what to measure. Every problem
is reported as ``FILE: key.path: expected ..., got ...``. The case name is the file's stem. Every
key is declared once (``estbench.schema.Key``, by table in ``SCHEMA``; a problem kind's own
``[model]`` keys by ``ProblemKind.model_keys()``), a ``Table`` reads only declared keys, and the
docs' docs/generated/case-keys.md is generated from the declarations; docs/running.md ("Case
files") has the annotated example; ``schema_version = 2``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .device import DEVICES, DTYPES
from .errors import EstbenchError
from .mcref import REFERENCE_KEYS, ReferenceSpec
from .mcref import read_spec as read_reference_spec
from .problem import ProblemKind, get_kind, kinds
from .results import METRICS
from .schema import Key
from .shipped import cases_dir, checkpoint_stem, is_shipped_name, shipped_case_path

SCHEMA_VERSION = 2
# The installed case files (estbench.shipped.cases_dir: importlib.resources, so a wheel finds them).
CASES_DIR = cases_dir()
DEFAULT_M = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
SEED_STUDY_M = tuple(
    list(range(1, 10))
    + list(range(10, 100, 10))
    + list(range(100, 1000, 100))
    + list(range(1000, 10000, 1000))
)


class CaseError(EstbenchError):
    """A case file that cannot be used, with the file, the key path and what was expected."""


@dataclass(frozen=True)
class DataSpec:
    kind: str = "two-class"
    n: int = 200
    seed: int = 0
    path: Path | None = None
    noise: float = 0.1
    classes: int = 3
    dim: int = 2


@dataclass(frozen=True)
class ModelSpec:
    """The ``[model]`` keys every problem kind has: its ``kind``, the hidden widths (``widths``,
    or ``width`` and ``depth``, which a sweep may vary), a seed and a checkpoint to measure
    instead of a new network. A kind's ``parse_model`` returns a subclass with its own keys."""

    kind: str = "sbn"
    widths: tuple[int, ...] | None = None
    width: int | None = None
    depth: int | None = None
    seed: int = 0
    checkpoint: Path | None = None


@dataclass(frozen=True)
class TrainingSpec:
    method: str = "reinforce"
    optimizer: str = "sgd"
    lr: float = 0.03
    momentum: float = 0.9
    batch_size: int = 10
    epochs: int = 100
    measure_at: tuple[int, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class MeasureSpec:
    estimators: tuple[str, ...] = ()
    draws: int = 10000
    M: tuple[int, ...] = DEFAULT_M
    metrics: tuple[str, ...] | None = None
    exact_moments: bool = True
    max_paths: int = 1 << 16
    bootstrap: int = 200
    quick_draws: int = 500
    device: str = "cpu"  # cpu | cuda: exact gradient and draws (training stays on the CPU)
    dtype: str = "float64"  # float64 | float32: the draws only, never the exact reference
    reference: ReferenceSpec = ReferenceSpec()  # exact | mc | auto, and the mc settings


@dataclass(frozen=True)
class Case:
    name: str
    path: Path | None
    text: str
    data: DataSpec
    model: ModelSpec
    training: TrainingSpec | None
    sweep: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    measure: MeasureSpec = MeasureSpec()
    description: str = ""
    compare: CompareSpec | None = None  # [compare]: training outcome per estimator (compare.py)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def record(self) -> dict[str, Any]:
        """The ``case`` section of results.json and training.json: what the case was."""
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "content": self.text,
            "description": self.description,
            "checkpoint": str(self.model.checkpoint) if self.model.checkpoint else None,
        }

    def points(self) -> list[dict[str, Any]]:
        """The sweep's case points (tau is an estimator variant, not a point): dicts with the
        swept values among depth, width, checkpoint, seed, in a fixed order."""
        keys = [k.name for k in SWEEP_KEYS if k.name in self.sweep and k.name != "tau"]
        return [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*(self.sweep[k] for k in keys))
        ]

    def widths_at(self, point: dict[str, Any]) -> tuple[int, ...]:
        m = self.model
        if "depth" in point or "width" in point:
            width = point.get("width", m.width)
            depth = point.get("depth", m.depth)
            return (int(width),) * int(depth)  # type: ignore[arg-type]
        if m.widths is not None:
            return m.widths
        return (int(m.width),) * int(m.depth)  # type: ignore[arg-type]


# ---- validation helpers -------------------------------------------------------------------


class Table:
    """Reads one TOML table by its declared keys (``keys``: ``estbench.schema.Key``), recording
    which were used; unknown keys are errors."""

    def __init__(self, file: str, path: str, raw: Any, keys: tuple[Key, ...] = ()) -> None:
        self.file, self.path = file, path
        if not isinstance(raw, dict):
            self.fail(path, "a table", raw)
        self.raw: dict[str, Any] = raw
        self.keys = keys
        self.used: set[str] = set()

    def fail(self, key: str, expected: str, got: Any) -> None:
        raise CaseError(f"{self.file}: {key}: expected {expected}, got {got!r}")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(
        self,
        name: str,
        *,
        type: str | None = None,
        default: Any = ...,
        required: bool | None = None,
        check: Callable[[Any], bool] | None = None,
        expected: str | None = None,
    ) -> Any:
        """The value of the declared key ``name`` (``self.keys``); ``type``, ``default``,
        ``required``, ``check`` and ``expected`` replace the declared ones where they depend on
        other keys."""
        key = next((k for k in self.keys if k.name == name), None)
        if key is None:
            raise AssertionError(f"{self.key(name)}: read but not declared (estbench.schema.Key)")
        self.used.add(name)
        kind = type or key.type
        expected = expected or key.expected
        if name not in self.raw:
            if key.required if required is None else required:
                raise CaseError(
                    f"{self.file}: {self.key(name)}: required key is missing (expected {expected})"
                )
            return key.default if default is ... else default
        value = self.raw[name]
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value),
            "str": isinstance(value, str),
            "bool": isinstance(value, bool),
            "int-list": isinstance(value, list)
            and bool(value)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
            "float-list": isinstance(value, list)
            and bool(value)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value),
            "str-list": isinstance(value, list)
            and bool(value)
            and all(isinstance(v, str) for v in value),
        }[kind]
        check = check or key.check
        if key.choices and check is None:
            check = key.choices.__contains__
        if not ok or (check is not None and not check(value)):
            self.fail(self.key(name), expected, value)
        return float(value) if kind == "float" else value

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        """A key whose choices are known only when it is read (e.g. the registered kinds)."""
        return self.get(
            name,
            check=lambda v: v in choices,
            expected="one of " + ", ".join(repr(c) for c in choices),
        )

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            allowed = ", ".join(sorted(self.used))
            name = self.key(unknown[0])
            name = name if name.isprintable() else repr(name)  # e.g. a key with a newline
            raise CaseError(f"{self.file}: {name}: unknown key (allowed here: {allowed})")


# Seeds feed torch.Generator.manual_seed (a 64-bit seed) after a sweep's seed is added to the
# data, model and training seeds: each is kept below 2^62 so their sums stay in range.
SEED_RANGE = "integer in 0..2^62"


def _seed(v: Any) -> bool:
    return 0 <= v < 2**62


def _positive(v: Any) -> bool:
    return v > 0


def _nonneg(v: Any) -> bool:
    return v >= 0


def _all(pred: Callable[[Any], bool]) -> Callable[[list[Any]], bool]:
    return lambda values: all(pred(v) for v in values)


# ---- the declared keys (estbench.schema.Key): what the readers below read, and the docs list --

_POSITIVE = "a positive integer"
_POSITIVE_LIST = "a non-empty list of positive integers"

TOP_KEYS = (
    Key(
        "schema_version",
        "int",
        required=True,
        accepts=f"{SCHEMA_VERSION}",
        help="the case-file format; version 1 files still read",
    ),
    Key("name", "str", help="the case name, if given: must be the file's stem"),
    Key("description", "str", "", help="what the case measures (its first line: `estbench cases`)"),
)

DATA_KEYS = (
    Key(
        "kind",
        "str",
        "two-class",
        choices=("two-class", "moons", "xor", "blobs", "npz"),
        help="a synthetic data set (two-class: the seed study's), or npz: a file",
    ),
    Key(
        "n",
        "int",
        200,
        check=lambda v: v >= 2,
        accepts="an integer >= 2",
        help="number of points (synthetic data)",
    ),
    Key("seed", "int", 0, check=_seed, accepts=SEED_RANGE, help="seed of the synthetic data"),
    Key(
        "path",
        "str",
        accepts="a path to an .npz file with X and Y",
        default_text='required with kind = "npz"',
        help="the data file, relative to the case file; X, Y as stored",
    ),
    Key(
        "noise",
        "float",
        0.1,
        check=_nonneg,
        accepts="a number >= 0",
        help="noise of the moons and xor data",
    ),
    Key(
        "classes",
        "int",
        3,
        check=lambda v: v >= 2,
        accepts="an integer >= 2",
        help="classes of the blobs data",
    ),
    Key(
        "dim",
        "int",
        2,
        check=lambda v: v >= 2,
        accepts="an integer >= 2",
        help="input dimension of the blobs data",
    ),
)

MODEL_KEYS = (  # every problem kind's; a kind declares its own with ProblemKind.model_keys()
    Key(
        "kind",
        "str",
        "sbn",
        accepts="a registered problem kind",
        help="the problem kind, which reads the other [model] keys",
    ),
    Key(
        "widths",
        "int-list",
        check=_all(_positive),
        accepts=_POSITIVE_LIST,
        help="hidden widths (or width and depth)",
    ),
    Key(
        "width",
        "int",
        check=_positive,
        accepts=_POSITIVE,
        help="hidden width of every layer, with depth (or swept)",
    ),
    Key(
        "depth",
        "int",
        check=_positive,
        accepts=_POSITIVE,
        help="number of hidden layers, with width (or swept)",
    ),
    Key("seed", "int", 0, check=_seed, accepts=SEED_RANGE, help="seed of the initialisation"),
    Key(
        "checkpoint",
        "str",
        help='a stored network to measure, relative to the case file, or a shipped "seed:NAME"',
    ),
)

TRAINING_KEYS = (
    Key(
        "epochs",
        "int",
        required=True,
        check=_positive,
        accepts=_POSITIVE,
        help="epochs of training",
    ),
    Key(
        "method",
        "str",
        default_text="the kind's default training estimator",
        help='an estimator spec of the model\'s kind, or "exact"',
    ),
    Key("optimizer", "str", "sgd", choices=("sgd", "adam"), help="sgd (with momentum) or adam"),
    Key("lr", "float", 0.03, check=_positive, accepts="a number > 0", help="learning rate"),
    Key(
        "momentum",
        "float",
        0.9,
        check=lambda v: 0 <= v < 1,
        accepts="a number in [0, 1)",
        help="SGD momentum",
    ),
    Key("batch_size", "int", 10, check=_positive, accepts=_POSITIVE, help="minibatch size"),
    Key(
        "measure_at",
        "int-list",
        accepts="a list of epochs in 0..epochs",
        default_text="[epochs]",
        help="epochs whose networks are measured (0: the initial network)",
    ),
    Key("seed", "int", 0, check=_seed, accepts=SEED_RANGE, help="seed of the training"),
)

SWEEP_KEYS = (
    Key(
        "depth",
        "int-list",
        check=_all(_positive),
        accepts=_POSITIVE_LIST,
        help="values of model.depth",
    ),
    Key(
        "width",
        "int-list",
        check=_all(_positive),
        accepts=_POSITIVE_LIST,
        help="values of model.width",
    ),
    Key(
        "checkpoint",
        "int-list",
        check=_all(_nonneg),
        accepts="a non-empty list of epochs >= 0",
        default_text="training.measure_at",
        help="training epochs to measure (needs [training])",
    ),
    Key(
        "tau",
        "float-list",
        check=_all(_positive),
        accepts="a non-empty list of numbers > 0",
        help="temperatures, applied to the estimators with a tau parameter",
    ),
    Key(
        "seed",
        "int-list",
        check=_all(_seed),
        accepts=f"a non-empty list of {SEED_RANGE}s",
        help="added to the data, model and training seeds: replicates the whole pipeline",
    ),
)

MEASURE_KEYS = (
    Key(
        "estimators",
        "str-list",
        required=True,
        accepts="a non-empty list of estimator names",
        help="estimator specs of the model's kind, each once",
    ),
    Key(
        "metrics",
        "str-list",
        check=lambda v: all(x in METRICS for x in v),
        accepts="metric names among " + ", ".join(METRICS),
        default_text="all",
        help="the metrics reported",
    ),
    Key(
        "draws",
        "int",
        10000,
        check=lambda v: v >= 10,
        accepts="an integer >= 10",
        help="estimator draws per point",
    ),
    Key(
        "M",
        "int-list",
        DEFAULT_M,
        check=_all(_positive),
        accepts=_POSITIVE_LIST,
        default_text=f"{list(DEFAULT_M)} up to draws",
        help="sample sizes of the M-draw mean",
    ),
    Key("exact_moments", "bool", True, help="exact moments where an estimator has them"),
    Key(
        "max_paths",
        "int",
        1 << 16,
        check=_positive,
        accepts=_POSITIVE,
        help="the most paths for exact path moments",
    ),
    Key(
        "bootstrap",
        "int",
        200,
        check=_nonneg,
        accepts="an integer >= 0",
        help="bootstrap resamples of the confidence intervals",
    ),
    Key(
        "quick_draws",
        "int",
        500,
        check=lambda v: v >= 10,
        accepts="an integer >= 10",
        help="draws with --quick",
    ),
    Key(
        "device",
        "str",
        "cpu",
        choices=DEVICES,
        help="device of the exact gradient and the draws (training stays on the CPU)",
    ),
    Key(
        "dtype",
        "str",
        "float64",
        choices=tuple(DTYPES),
        help="dtype of the draws only, never the exact reference",
    ),
    *REFERENCE_KEYS,
)

COMPARE_KEYS = (
    Key(
        "estimators",
        "str-list",
        required=True,
        accepts='a non-empty list of estimator names or "exact"',
        help='estimator specs of the model\'s kind, or "exact", each once',
    ),
    Key(
        "seeds",
        "int",
        3,
        check=lambda v: 1 <= v <= 1000,
        accepts="an integer in 1..1000 (that many seeds, 0..n-1) or a list of seeds",
        help="training runs per estimator",
    ),
    Key(
        "steps",
        "int",
        check=_positive,
        accepts=_POSITIVE,
        help="training steps (exactly one of steps and epochs)",
    ),
    Key(
        "epochs",
        "int",
        check=_positive,
        accepts=_POSITIVE,
        help="training epochs (exactly one of steps and epochs)",
    ),
    Key(
        "record_every",
        "int",
        check=_positive,
        accepts="a positive integer (steps)",
        default_text="about 20 records",
        help="steps between records of the exact objective",
    ),
    Key("optimizer", "str", "adam", choices=("adam", "sgd"), help="adam or sgd (with momentum)"),
    Key("lr", "float", 0.01, check=_positive, accepts="a number > 0", help="learning rate"),
    Key(
        "momentum",
        "float",
        0.9,
        check=lambda v: 0 <= v < 1,
        accepts="a number in [0, 1)",
        help='SGD momentum (optimizer = "sgd" only)',
    ),
    Key(
        "batch_size",
        "int",
        check=_positive,
        accepts=_POSITIVE,
        default_text="the whole data set",
        help="minibatch size",
    ),
    Key(
        "quick_steps",
        "int",
        50,
        check=_positive,
        accepts="a positive integer (steps)",
        help="steps with --quick",
    ),
)

# The declared keys by table ("" is the top level); [model] adds its kind's model_keys().
SCHEMA: dict[str, tuple[Key, ...]] = {
    "": TOP_KEYS,
    "data": DATA_KEYS,
    "model": MODEL_KEYS,
    "training": TRAINING_KEYS,
    "sweep": SWEEP_KEYS,
    "measure": MEASURE_KEYS,
    "compare": COMPARE_KEYS,
}


def _resolve(base: Path | None, value: str | None) -> Path | None:
    """A file named in a case, relative to the case file; a shipped network's ``seed:`` name is
    kept as it is (the loaders resolve it to the installed file), never joined to the case's
    folder."""
    if value is None:
        return None
    p = Path(value)
    if is_shipped_name(value):
        return p
    return p if p.is_absolute() or base is None else (base / p)


def _other_kinds_keys(table: Table, kind: str) -> None:
    """An unknown ``[model]`` key that another problem kind reads is named with that kind, so
    that ``activation`` in an SBN case says where it belongs instead of only being unknown."""
    unknown = sorted(set(table.raw) - table.used)
    if not unknown:
        return
    for name, other in sorted(kinds().kinds.items()):
        if name == kind:
            continue
        if unknown[0] in {k.name for k in other.model_keys()}:
            raise CaseError(
                f"{table.file}: {table.key(unknown[0])}: a key of problem kind {name!r} "
                f"({other.description}), not of {kind!r}; set model.kind = {name!r} or remove "
                f"the key (allowed here: {', '.join(sorted(table.used))})"
            )


def _upgrade_v1(raw: dict[str, Any]) -> dict[str, Any]:
    """A version-1 case in version 2's terms: version 1 had no ``model.kind`` and marked a
    Bernoulli-weight model with ``model.weights = "bernoulli"``, which version 2 spells
    ``model.kind = "weights"`` (any other value is left for the kind's parser to refuse)."""
    model = raw.get("model")
    if isinstance(model, dict) and "kind" not in model and "weights" in model:
        if model["weights"] != "bernoulli":
            raise CaseError(
                f"model.weights: expected one of 'bernoulli', got {model['weights']!r} (schema "
                'version 1; version 2 writes model.kind = "weights")'
            )
        model = {k: v for k, v in model.items() if k != "weights"}
        raw = {**raw, "model": {"kind": "weights", **model}}
    return raw


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys, e.g. {"measure.draws": 1000, "model.widths": [3, 3]}, in a parsed case."""
    for dotted, value in overrides.items():
        *tables, key = dotted.split(".")
        node = raw
        for t in tables:
            node = node.setdefault(t, {})
            if not isinstance(node, dict):
                raise CaseError(f"override {dotted}: {t} is not a table")
        node[key] = value
    return raw


def parse_case(
    text: str, *, name: str, path: Path | None = None, overrides: dict[str, Any] | None = None
) -> Case:
    """Validate a case's TOML text (``path`` names it in errors and anchors relative paths);
    ``overrides`` set dotted keys before validation and are recorded with the text."""
    file = str(path) if path else f"<case {name}>"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CaseError(f"{file}: not valid TOML: {e}") from None
    if overrides:
        raw = apply_overrides(raw, overrides)
        text += "\n# overrides: " + json.dumps(overrides, sort_keys=True, default=str) + "\n"
    base = path.parent if path else None
    top = Table(file, "", raw, TOP_KEYS)
    version = top.get("schema_version")
    if version == 1:
        try:
            raw = _upgrade_v1(raw)
        except CaseError as e:
            raise CaseError(f"{file}: {e}") from None
    elif version != SCHEMA_VERSION:
        raise CaseError(
            f"{file}: schema_version: this estbench reads versions 1 and {SCHEMA_VERSION}, "
            f"the file has {version}"
        )
    declared = top.get("name")
    if declared is not None and declared != name:
        raise CaseError(f"{file}: name: expected {name!r} (the file name), got {declared!r}")
    description = top.get("description")

    from .estimators.registry import default_registry  # estimators import torch: only here

    registry = default_registry()
    data = _read_data(file, top, raw, base)
    kind, model = _read_model(file, top, raw, base)
    training = _read_training(file, top, raw, kind, model, registry)
    sweep = _read_sweep(file, top, raw, training)
    _check_architecture(file, model, sweep)
    compare = _read_compare(file, top, raw, model, registry)
    # A [compare] case needs no [measure]: it may compare by training outcome alone.
    measure = (
        _read_measure(file, top, raw, model, sweep, registry)
        if compare is None or "measure" in raw
        else MeasureSpec()
    )
    top.done()
    case = Case(name, path, text, data, model, training, sweep, measure, description, compare)
    kind.check_case(case)
    return case


def _read_data(file: str, top: Table, raw: dict[str, Any], base: Path | None) -> DataSpec:
    """``[data]``: a synthetic data set (two-class, moons, xor, blobs) or an npz file."""
    d = Table(file, "data", raw.get("data", {}), DATA_KEYS)
    top.used.add("data")
    data_kind = d.get("kind")
    data = DataSpec(
        kind=data_kind,
        n=d.get("n"),
        seed=d.get("seed"),
        path=_resolve(base, d.get("path", required=data_kind == "npz")),
        noise=d.get("noise"),
        classes=d.get("classes"),
        dim=d.get("dim"),
    )
    d.done()
    return data


def _read_model(
    file: str, top: Table, raw: dict[str, Any], base: Path | None
) -> tuple[ProblemKind[Any, Any], ModelSpec]:
    """``[model]``: the keys every kind has, then the kind's own (``ProblemKind.parse_model``)."""
    m = Table(file, "model", raw.get("model", {}), MODEL_KEYS)
    top.used.add("model")
    kind = get_kind(m.choice("kind", tuple(kinds().kinds)), file)
    m.keys = MODEL_KEYS + kind.model_keys()
    common = {
        "kind": kind.name,
        "widths": tuple(w) if (w := m.get("widths")) else None,
        "width": m.get("width"),
        "depth": m.get("depth"),
        "seed": m.get("seed"),
        "checkpoint": _resolve(base, m.get("checkpoint")),
    }
    model = kind.parse_model(m, common)
    _other_kinds_keys(m, kind.name)
    m.done()
    return kind, model


def _read_training(
    file: str,
    top: Table,
    raw: dict[str, Any],
    kind: ProblemKind[Any, Any],
    model: ModelSpec,
    registry: Any,
) -> TrainingSpec | None:
    """``[training]`` (optional): the method (an estimator of the model's kind, or "exact"),
    the optimiser and the epochs to measure at."""
    training = None
    if "training" in raw:
        t = Table(file, "training", raw["training"], TRAINING_KEYS)
        top.used.add("training")
        epochs = t.get("epochs")
        # "exact" or an estimator of the model's kind; the kind's default (REINFORCE for SBNs,
        # as in the seed study) when not given.
        method = t.get("method", default=kind.default_training)
        if method != "exact":
            est = _check_estimator_spec(file, "training.method", method, registry)
            check_problem_kind(f"{file}: training.method", est, model)
        training = TrainingSpec(
            method=method,
            optimizer=t.get("optimizer"),
            lr=t.get("lr"),
            momentum=t.get("momentum"),
            batch_size=t.get("batch_size"),
            epochs=epochs,
            measure_at=tuple(
                t.get(
                    "measure_at",
                    default=[epochs],
                    check=_all(lambda v: 0 <= v <= epochs),
                    expected=f"a list of epochs in 0..{epochs}",
                )
            ),
            seed=t.get("seed"),
        )
        t.done()
    return training


def _read_sweep(
    file: str, top: Table, raw: dict[str, Any], training: TrainingSpec | None
) -> dict[str, tuple[Any, ...]]:
    """``[sweep]``: the values of depth, width, checkpoint (default: the training's
    ``measure_at``), tau and seed whose cartesian product makes the case's points."""
    s = Table(file, "sweep", raw.get("sweep", {}), SWEEP_KEYS)
    top.used.add("sweep")
    sweep: dict[str, tuple[Any, ...]] = {}
    for key in ("depth", "width"):
        values = s.get(key)
        if values is not None:
            sweep[key] = tuple(values)
    ckpts = s.get("checkpoint")
    if ckpts is not None:
        if training is None:
            raise CaseError(f"{file}: sweep.checkpoint: needs a [training] table")
        if max(ckpts) > training.epochs:
            raise CaseError(
                f"{file}: sweep.checkpoint: expected epochs in 0..{training.epochs}, got {ckpts!r}"
            )
        sweep["checkpoint"] = tuple(ckpts)
    elif training is not None:
        sweep["checkpoint"] = training.measure_at
    taus = s.get("tau")
    if taus is not None:
        sweep["tau"] = tuple(float(v) for v in taus)
    seeds = s.get("seed")
    if seeds is not None:
        sweep["seed"] = tuple(seeds)
    s.done()
    return sweep


def _check_architecture(file: str, model: ModelSpec, sweep: dict[str, tuple[Any, ...]]) -> None:
    """The hidden widths come from ``model.widths``, or ``width`` and ``depth`` (each given or
    swept), or a checkpoint."""
    if ("depth" in sweep or "width" in sweep) and model.widths is not None:
        raise CaseError(
            f"{file}: model.widths: a sweep over depth or width needs model.width "
            f"and model.depth instead of model.widths"
        )
    need_width = "width" not in sweep and model.widths is None
    need_depth = "depth" not in sweep and model.widths is None
    if model.checkpoint is None:
        if need_width and model.width is None:
            raise CaseError(
                f"{file}: model.widths: required key is missing (or give model.width "
                f"and model.depth, or a sweep over them)"
            )
        if need_depth and model.depth is None:
            raise CaseError(
                f"{file}: model.depth: required key is missing (expected a positive "
                f"integer, or a sweep over depth)"
            )


def _read_measure(
    file: str,
    top: Table,
    raw: dict[str, Any],
    model: ModelSpec,
    sweep: dict[str, tuple[Any, ...]],
    registry: Any,
) -> MeasureSpec:
    """``[measure]``: the estimators (each of the model's kind, each once), draws, M and the
    measurement options."""
    ms = Table(file, "measure", raw.get("measure", {}), MEASURE_KEYS)
    top.used.add("measure")
    estimators = tuple(ms.get("estimators"))
    specs: dict[str, int] = {}
    takes_tau = False
    for i, spec in enumerate(estimators):
        est = _check_estimator_spec(file, f"measure.estimators[{i}]", spec, registry)
        check_problem_kind(f"{file}: measure.estimators[{i}]", est, model)
        if est.spec in specs:
            raise CaseError(
                f"{file}: measure.estimators[{i}]: {spec!r} is listed twice (as "
                f"measure.estimators[{specs[est.spec]}]); expected each estimator once"
            )
        specs[est.spec] = i
        takes_tau |= "tau" in est.hyperparameters
    if "tau" in sweep and not takes_tau:
        raise CaseError(
            f"{file}: sweep.tau: none of measure.estimators has a tau parameter; expected at "
            f"least one that does (e.g. concrete, st-gs, gumbel-rao), or no tau sweep"
        )
    metrics = ms.get("metrics")
    measure = MeasureSpec(
        estimators=estimators,
        draws=ms.get("draws"),
        M=tuple(sorted(set(ms.get("M")))),
        metrics=tuple(metrics) if metrics else None,
        exact_moments=ms.get("exact_moments"),
        max_paths=ms.get("max_paths"),
        bootstrap=ms.get("bootstrap"),
        quick_draws=ms.get("quick_draws"),
        device=ms.get("device"),
        dtype=ms.get("dtype"),
        reference=read_reference_spec(ms, file, registry, model),
    )
    ms.done()
    if "M" not in ms.raw:  # the default M values up to the draws
        measure = replace(measure, M=tuple(m for m in DEFAULT_M if m <= measure.draws))
    elif max(measure.M) > measure.draws:
        raise CaseError(
            f"{file}: measure.M: expected values <= measure.draws ({measure.draws}), got "
            f"{max(measure.M)}"
        )
    return measure


def _check_estimator_spec(file: str, key: str, spec: str, registry: Any) -> Any:
    try:
        return registry.create(spec)
    except EstbenchError as e:
        raise CaseError(f"{file}: {key}: {e}") from None


def check_problem_kind(where: str, est: Any, model: ModelSpec) -> None:
    """An estimator must handle the case's problem kind (``Estimator.problem``) and not be one
    the kind refuses (``ProblemKind.refusals``: the reason is stated)."""
    handles = getattr(est, "problem", "sbn")
    kind = get_kind(model.kind, where)
    reason = kind.refusals().get(getattr(est, "name", ""))
    if reason is not None:
        raise CaseError(
            f"{where}: estimator {est.spec!r} is refused for problem kind {model.kind!r} "
            f"({kind.description}): {reason}"
        )
    if handles != model.kind:
        registry = kinds()
        theirs = registry.kinds[handles].description if handles in registry.kinds else handles
        raise CaseError(
            f"{where}: estimator {est.spec!r} handles {theirs} (problem = {handles!r}), but the "
            f"case's model is {registry.get(model.kind).description}; expected an estimator "
            f"with problem = {model.kind!r} (`estbench list` shows the problem column)"
        )


def find_case(name_or_path: str) -> Path:
    """A case by file path, or by name among the shipped cases (those of the installed package,
    found with importlib.resources; ``estbench cases`` lists them)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.exists():
            raise CaseError(f"{p}: no such case file")
        return p
    try:
        return shipped_case_path(name_or_path)
    except EstbenchError as e:
        raise CaseError(str(e)) from None


def load_case(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Case:
    path = find_case(str(name_or_path))
    try:
        text = path.read_text()
    except OSError as e:
        raise CaseError(f"{path}: cannot read: {e}") from None
    return parse_case(text, name=path.stem, path=path, overrides=overrides)


def with_overrides(
    case: Case, *, checkpoint: Path | None = None, estimators: tuple[str, ...] | None = None
) -> Case:
    """The case with the CLI's --checkpoint and --estimators applied.

    A checkpoint override renames the case ``<case>@<checkpoint stem>``, so its results go to
    their own directory and never mix with (or resume from) the case's own network; a ``seed:``
    name gives its file's stem (``seed:chk-100`` -> ``psa_5-5-5_chk-100``).
    """
    if checkpoint is not None:
        # The stored network fixes the architecture: no depth, width or training sweep is left.
        sweep = {k: v for k, v in case.sweep.items() if k not in ("checkpoint", "depth", "width")}
        case = replace(
            case,
            name=f"{case.name}@{checkpoint_stem(checkpoint)}",
            model=replace(case.model, checkpoint=checkpoint),
            training=None,
            sweep=sweep,
        )
    if estimators is not None:
        case = replace(case, measure=replace(case.measure, estimators=estimators))
    return case


# ---- [compare]: estimators compared by training outcome (estbench.compare) -----------------


EXACT_METHOD = "exact"  # training with the exact gradient, in [compare] and [training]


@dataclass(frozen=True)
class CompareSpec:
    """``[compare]``: train the case's model once per (estimator, seed) and record the exact
    objective along the way (``estbench.compare``). ``estimators`` as written ("exact" or a
    registered spec); the length is ``steps`` or ``epochs`` (one of the two: epochs become steps
    once the data size is known); the exact objective is recorded every ``record_every`` steps
    (None: about 20 records); ``batch_size`` None is the whole data set."""

    estimators: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int | None = None
    epochs: int | None = None
    record_every: int | None = None
    optimizer: str = "adam"
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int | None = None
    quick_steps: int = 50


def _read_compare(
    file: str, top: Table, raw: dict[str, Any], model: ModelSpec, registry: Any
) -> CompareSpec | None:
    """``[compare]`` (optional): the estimators (each of the model's kind, or "exact"; each
    once), the seeds (a count n, meaning 0..n-1, or a list), steps or epochs, the optimiser and
    how often the exact objective is recorded. A comparison trains the case's one model, so a
    ``[sweep]`` is refused with it, and so is a ``[training]`` that nothing would measure."""
    if "compare" not in raw:
        return None
    c = Table(file, "compare", raw["compare"], COMPARE_KEYS)
    top.used.add("compare")
    names = c.get("estimators")
    seen: dict[str, int] = {}
    for i, spec in enumerate(names):
        key = f"compare.estimators[{i}]"
        label = spec
        if spec != EXACT_METHOD:
            est = _check_estimator_spec(file, key, spec, registry)
            check_problem_kind(f"{file}: {key}", est, model)
            label = est.spec
        if label in seen:
            raise CaseError(
                f"{file}: {key}: {spec!r} is listed twice (as compare.estimators[{seen[label]}]); "
                f"expected each estimator once"
            )
        seen[label] = i
    if isinstance(c.raw.get("seeds"), list):
        seeds = tuple(
            c.get("seeds", type="int-list", check=_all(_seed), expected=f"a list of {SEED_RANGE}s")
        )
        if len(set(seeds)) != len(seeds):
            c.fail("compare.seeds", "distinct seeds", list(seeds))
    else:
        count = c.get("seeds")
        seeds = tuple(range(count))
    if ("steps" in c.raw) == ("epochs" in c.raw):
        raise CaseError(
            f"{file}: compare.steps: expected exactly one of compare.steps and compare.epochs, got "
            f"{'both' if 'steps' in c.raw else 'neither'}"
        )
    steps = c.get("steps")
    epochs = c.get("epochs")
    optimizer = c.get("optimizer")
    if optimizer != "sgd" and "momentum" in c.raw:
        c.fail(
            "compare.momentum",
            "no momentum with optimizer = 'adam' (it is SGD's)",
            c.raw["momentum"],
        )
    spec = CompareSpec(
        estimators=tuple(names),
        seeds=seeds,
        steps=steps,
        epochs=epochs,
        record_every=c.get("record_every"),
        optimizer=optimizer,
        lr=c.get("lr"),
        momentum=c.get("momentum"),
        batch_size=c.get("batch_size"),
        quick_steps=c.get("quick_steps"),
    )
    c.done()
    if steps is not None and spec.record_every is not None and spec.record_every > steps:
        c.fail("compare.record_every", f"at most compare.steps ({steps})", spec.record_every)
    if isinstance(raw.get("sweep"), dict) and raw["sweep"]:
        raise CaseError(
            f"{file}: sweep: a case with [compare] trains its one model; expected no [sweep] "
            f"(compare several models with one case each)"
        )
    if "training" in raw and "measure" not in raw:
        raise CaseError(
            f"{file}: training: [compare] trains by its own keys and there is no [measure] to use "
            f"[training]'s networks; expected no [training] (or a [measure] table)"
        )
    return spec
