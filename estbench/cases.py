"""Case files: one TOML file per case, validated strictly before any work starts.

A case names its data, its model (or a checkpoint), optional training to checkpoints, a sweep
(cartesian product of depth, width, checkpoint, tau and seed), and what to measure. Every problem
is reported as ``FILE: key.path: expected ..., got ...``. The case name is the file's stem. The
schema is documented in docs/running.md ("Case files") and, generated
from this parser, docs/generated/case-keys.md; ``schema_version = 2``.
"""

from __future__ import annotations

import contextlib
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
from .mcref import ReferenceSpec
from .mcref import read_spec as read_reference_spec
from .problem import ProblemKind, get_kind, kinds
from .shipped import cases_dir, checkpoint_stem, is_shipped_name, shipped_case_path

SCHEMA_VERSION = 2
# The installed case files (estbench.shipped.cases_dir: importlib.resources, so a wheel finds them).
CASES_DIR = cases_dir()
SWEEP_KEYS = ("depth", "width", "checkpoint", "tau", "seed")
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

    def points(self) -> list[dict[str, Any]]:
        """The sweep's case points (tau is an estimator variant, not a point): dicts with the
        swept values among depth, width, checkpoint, seed, in a fixed order."""
        keys = [k for k in SWEEP_KEYS if k in self.sweep and k != "tau"]
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
    """Reads one TOML table, recording which keys were used; unknown keys are errors."""

    def __init__(self, file: str, path: str, raw: Any) -> None:
        self.file, self.path = file, path
        if not isinstance(raw, dict):
            self.fail(path, "a table", raw)
        self.raw: dict[str, Any] = raw
        self.used: set[str] = set()

    def fail(self, key: str, expected: str, got: Any) -> None:
        raise CaseError(f"{self.file}: {key}: expected {expected}, got {got!r}")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(
        self,
        name: str,
        kind: str,
        default: Any = None,
        *,
        required: bool = False,
        check: Callable[[Any], bool] | None = None,
        expected: str = "",
    ) -> Any:
        self.used.add(name)
        if name not in self.raw:
            if required:
                raise CaseError(
                    f"{self.file}: {self.key(name)}: required key is missing "
                    f"(expected {expected or kind})"
                )
            return default
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
        if not ok or (check is not None and not check(value)):
            self.fail(self.key(name), expected or kind, value)
        return float(value) if kind == "float" else value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        return self.get(
            name,
            "str",
            default,
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
        probe = Table(table.file, table.path, dict(table.raw))
        # a value the other kind refuses still shows which keys it reads
        with contextlib.suppress(Exception):
            other.parse_model(probe, {})
        if unknown[0] in probe.used:
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
    top = Table(file, "", raw)
    version = top.get("schema_version", "int", required=True, expected=f"{SCHEMA_VERSION}")
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
    declared = top.get("name", "str")
    if declared is not None and declared != name:
        raise CaseError(f"{file}: name: expected {name!r} (the file name), got {declared!r}")
    description = top.get("description", "str", "")

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
    d = Table(file, "data", raw.get("data", {}))
    top.used.add("data")
    data_kind = d.choice("kind", ("two-class", "moons", "xor", "blobs", "npz"), "two-class")
    data = DataSpec(
        kind=data_kind,
        n=d.get("n", "int", 200, check=lambda v: v >= 2, expected="an integer >= 2"),
        seed=d.get("seed", "int", 0, check=_seed, expected=SEED_RANGE),
        path=_resolve(
            base,
            d.get(
                "path",
                "str",
                required=data_kind == "npz",
                expected="a path to an .npz file with X and Y",
            ),
        ),
        noise=d.get("noise", "float", 0.1, check=_nonneg, expected="a number >= 0"),
        classes=d.get("classes", "int", 3, check=lambda v: v >= 2, expected="an integer >= 2"),
        dim=d.get("dim", "int", 2, check=lambda v: v >= 2, expected="an integer >= 2"),
    )
    d.done()
    return data


def _read_model(
    file: str, top: Table, raw: dict[str, Any], base: Path | None
) -> tuple[ProblemKind[Any, Any], ModelSpec]:
    """``[model]``: the keys every kind has, then the kind's own (``ProblemKind.parse_model``)."""
    m = Table(file, "model", raw.get("model", {}))
    top.used.add("model")
    kind = get_kind(m.choice("kind", tuple(kinds().kinds), "sbn"), file)
    common = {
        "kind": kind.name,
        "widths": (
            tuple(w)
            if (
                w := m.get(
                    "widths",
                    "int-list",
                    None,
                    check=_all(_positive),
                    expected="a non-empty list of positive integers",
                )
            )
            else None
        ),
        "width": m.get("width", "int", None, check=_positive, expected="a positive integer"),
        "depth": m.get("depth", "int", None, check=_positive, expected="a positive integer"),
        "seed": m.get("seed", "int", 0, check=_seed, expected=SEED_RANGE),
        "checkpoint": _resolve(base, m.get("checkpoint", "str")),
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
        t = Table(file, "training", raw["training"])
        top.used.add("training")
        epochs = t.get(
            "epochs", "int", required=True, check=_positive, expected="a positive integer"
        )
        # "exact" or an estimator of the model's kind; the kind's default (REINFORCE for SBNs,
        # as in the seed study) when not given.
        method = t.get("method", "str", kind.default_training)
        if method != "exact":
            est = _check_estimator_spec(file, "training.method", method, registry)
            check_problem_kind(f"{file}: training.method", est, model)
        training = TrainingSpec(
            method=method,
            optimizer=t.choice("optimizer", ("sgd", "adam"), "sgd"),
            lr=t.get("lr", "float", 0.03, check=_positive, expected="a number > 0"),
            momentum=t.get(
                "momentum", "float", 0.9, check=lambda v: 0 <= v < 1, expected="a number in [0, 1)"
            ),
            batch_size=t.get(
                "batch_size", "int", 10, check=_positive, expected="a positive integer"
            ),
            epochs=epochs,
            measure_at=tuple(
                t.get(
                    "measure_at",
                    "int-list",
                    [epochs],
                    check=_all(lambda v: 0 <= v <= epochs),
                    expected=f"a list of epochs in 0..{epochs}",
                )
            ),
            seed=t.get("seed", "int", 0, check=_seed, expected=SEED_RANGE),
        )
        t.done()
    return training


def _read_sweep(
    file: str, top: Table, raw: dict[str, Any], training: TrainingSpec | None
) -> dict[str, tuple[Any, ...]]:
    """``[sweep]``: the values of depth, width, checkpoint (default: the training's
    ``measure_at``), tau and seed whose cartesian product makes the case's points."""
    s = Table(file, "sweep", raw.get("sweep", {}))
    top.used.add("sweep")
    sweep: dict[str, tuple[Any, ...]] = {}
    for key in ("depth", "width"):
        values = s.get(
            key,
            "int-list",
            None,
            check=_all(_positive),
            expected="a non-empty list of positive integers",
        )
        if values is not None:
            sweep[key] = tuple(values)
    ckpts = s.get(
        "checkpoint",
        "int-list",
        None,
        check=_all(_nonneg),
        expected="a non-empty list of epochs >= 0",
    )
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
    taus = s.get(
        "tau", "float-list", None, check=_all(_positive), expected="a non-empty list of numbers > 0"
    )
    if taus is not None:
        sweep["tau"] = tuple(float(v) for v in taus)
    seeds = s.get(
        "seed", "int-list", None, check=_all(_seed), expected=f"a non-empty list of {SEED_RANGE}s"
    )
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
    from .results import METRICS

    ms = Table(file, "measure", raw.get("measure", {}))
    top.used.add("measure")
    estimators = tuple(
        ms.get(
            "estimators", "str-list", required=True, expected="a non-empty list of estimator names"
        )
    )
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
    metrics = ms.get(
        "metrics",
        "str-list",
        None,
        check=lambda v: all(x in METRICS for x in v),
        expected="metric names among " + ", ".join(METRICS),
    )
    measure = MeasureSpec(
        estimators=estimators,
        draws=ms.get("draws", "int", 10000, check=lambda v: v >= 10, expected="an integer >= 10"),
        M=tuple(
            sorted(
                set(
                    ms.get(
                        "M",
                        "int-list",
                        list(DEFAULT_M),
                        check=_all(_positive),
                        expected="a non-empty list of positive integers",
                    )
                )
            )
        ),
        metrics=tuple(metrics) if metrics else None,
        exact_moments=ms.get("exact_moments", "bool", True),
        max_paths=ms.get(
            "max_paths", "int", 1 << 16, check=_positive, expected="a positive integer"
        ),
        bootstrap=ms.get("bootstrap", "int", 200, check=_nonneg, expected="an integer >= 0"),
        quick_draws=ms.get(
            "quick_draws", "int", 500, check=lambda v: v >= 10, expected="an integer >= 10"
        ),
        device=ms.choice("device", DEVICES, "cpu"),
        dtype=ms.choice("dtype", tuple(DTYPES), "float64"),
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
    c = Table(file, "compare", raw["compare"])
    top.used.add("compare")
    names = c.get(
        "estimators",
        "str-list",
        required=True,
        expected='a non-empty list of estimator names or "exact"',
    )
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
            c.get("seeds", "int-list", check=_all(_seed), expected=f"a list of {SEED_RANGE}s")
        )
        if len(set(seeds)) != len(seeds):
            c.fail("compare.seeds", "distinct seeds", list(seeds))
    else:
        count = c.get(
            "seeds",
            "int",
            3,
            check=lambda v: 1 <= v <= 1000,
            expected="an integer in 1..1000 (that many seeds, 0..n-1) or a list of seeds",
        )
        seeds = tuple(range(count))
    if ("steps" in c.raw) == ("epochs" in c.raw):
        raise CaseError(
            f"{file}: compare.steps: expected exactly one of compare.steps and compare.epochs, got "
            f"{'both' if 'steps' in c.raw else 'neither'}"
        )
    steps = c.get("steps", "int", None, check=_positive, expected="a positive integer")
    epochs = c.get("epochs", "int", None, check=_positive, expected="a positive integer")
    optimizer = c.choice("optimizer", ("adam", "sgd"), "adam")
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
        record_every=c.get(
            "record_every", "int", None, check=_positive, expected="a positive integer (steps)"
        ),
        optimizer=optimizer,
        lr=c.get("lr", "float", 0.01, check=_positive, expected="a number > 0"),
        momentum=c.get(
            "momentum", "float", 0.9, check=lambda v: 0 <= v < 1, expected="a number in [0, 1)"
        ),
        batch_size=c.get("batch_size", "int", None, check=_positive, expected="a positive integer"),
        quick_steps=c.get(
            "quick_steps", "int", 50, check=_positive, expected="a positive integer (steps)"
        ),
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
