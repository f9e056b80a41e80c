"""One registry for built-in and third-party estimators.

Third parties declare an entry point in the group ``estbench.estimators`` whose name is the
estimator's registry name and whose object is an ``Estimator`` subclass::

    [project.entry-points."estbench.estimators"]
    my-estimator = "my_package.module:MyEstimator"

Plugins are discovered without importing, sorted, then loaded one by one (as flake8 does): a plugin
that fails to import, or whose class breaks the contract's metadata (not an ``Estimator`` subclass,
a badly formed ``name``, an unknown ``family`` or ``problem``, malformed ``hyperparameters``,
abstract methods left, a constructor that fails with the defaults, an ``unbiased`` claim outside
``CLAIMS`` and its kind's ``claims``, an override of ``unbiased_layers`` instead of ``claim``,
``evals_per_draw`` or ``claim`` failing on the reference network, a ``verified`` that is not a
string or ``tests`` that are not a tuple of strings) or takes a name that is already
registered, is reported with its package name in ``Registry.problems`` and skipped; everything else
keeps working. Two plugins claiming one name are both skipped, so that a name never means a
different estimator depending on what happens to be installed; a built-in keeps its name.
``Registry.register`` called directly raises instead (``EstimatorError``;
``DuplicateEstimatorError`` for a taken name). ``ESTBENCH_DISABLE_PLUGINS=1`` turns plugins off.

Users spell an estimator as ``name`` or ``name(key=value, ...)``, e.g. ``concrete(tau=0.1)``,
``rloo(k=4)``, ``reinforce(baseline=frozen)``; lists are comma-separated:
``st,psa,concrete(tau=0.1)``.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .._version import __version__
from ..options import split_specs
from ..problem import kinds, plugins_disabled
from .base import FAMILIES, Estimator, EstimatorError, Hyper, known_claims

GROUP = "estbench.estimators"
NAME = re.compile(r"[a-z][a-z0-9-]*")
_SPEC = re.compile(r"\s*([A-Za-z0-9_-]+)\s*(?:\((.*)\))?\s*", re.DOTALL)


class DuplicateEstimatorError(EstimatorError):
    """Two sources register the same estimator name."""


@dataclass(frozen=True)
class Entry:
    cls: type[Estimator]
    source: str  # distribution name ("estbench" for built-ins)
    version: str


def _parse_value(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """'concrete(tau=0.1)' -> ('concrete', {'tau': 0.1})."""
    m = _SPEC.fullmatch(text)
    if not m:
        raise EstimatorError(f"cannot read estimator {text!r}; write name or name(key=value, ...)")
    params: dict[str, Any] = {}
    for item in split_specs(m.group(2) or ""):
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise EstimatorError(f"cannot read {item!r} in {text!r}; parameters are key=value")
        params[key.strip()] = _parse_value(value)
    return m.group(1), params


class Registry(Mapping[str, Entry]):
    """Estimator name -> Entry. A Mapping; ``create`` builds configured instances from specs."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self.problems: list[str] = []  # plugins that could not be loaded (reported, not fatal)

    def __getitem__(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self._unknown(name)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"unknown estimator {name!r}{hint} (`estbench list` shows them all)"

    def register(
        self, cls: type[Estimator], *, source: str = "estbench", version: str = __version__
    ) -> type[Estimator]:
        """Add ``cls`` under its ``name``; raises ``EstimatorError`` naming the class, its source
        and the faulty attribute when the class breaks the contract's metadata, and
        ``DuplicateEstimatorError`` when the name is taken."""
        fault = contract_fault(cls)
        if fault is not None:
            raise EstimatorError(f"estimator {_describe(cls)} from {source}: {fault}")
        name = cls.name
        if name in self._entries:
            other = self._entries[name]
            raise DuplicateEstimatorError(
                f"estimator name {name!r} is registered twice: by {other.source} "
                f"({_describe(other.cls)}) and by {source} ({_describe(cls)}); uninstall one, "
                f"or set ESTBENCH_DISABLE_PLUGINS=1"
            )
        self._entries[name] = Entry(cls, source, version)
        return cls

    def unregister(self, name: str) -> None:
        del self._entries[name]

    def create(self, spec: str | Estimator) -> Estimator:
        """A configured estimator from 'name' or 'name(key=value, ...)'."""
        if isinstance(spec, Estimator):
            return spec
        if not isinstance(spec, str):
            raise EstimatorError(
                f"an estimator is a name such as 'concrete(tau=0.1)' or an Estimator instance, "
                f"got {type(spec).__name__} {spec!r}"
            )
        name, params = parse_spec(spec)
        if name not in self._entries:
            raise EstimatorError(self._unknown(name))
        entry = self._entries[name]
        cls = entry.cls
        unknown = [k for k in params if k not in cls.hyperparameters]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(cls.hyperparameters), n=2)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            allowed = ", ".join(f"{k}={v.default}" for k, v in cls.hyperparameters.items())
            raise EstimatorError(
                f"{name}: unknown parameter {unknown[0]!r}{hint} (parameters: {allowed or 'none'})"
            )
        try:
            return cls(**params)
        except EstimatorError:
            raise
        except Exception as e:  # the estimator's own constructor failed: say whose it is
            raise EstimatorError(
                f"{name} (from {entry.source}): creating it with {params or 'the defaults'} "
                f"failed: {type(e).__name__}: {e}"
            ) from e

    def create_all(self, specs: str) -> list[Estimator]:
        return [self.create(s) for s in split_specs(specs)]

    def load_plugins(self, group: str = GROUP) -> None:
        """Register every entry point of ``group``; a plugin that fails to import, breaks the
        contract's metadata or takes a registered name goes to ``self.problems`` (module
        docstring) and is skipped."""
        seen: set[tuple[str, str]] = set()
        found = []
        for ep in importlib.metadata.entry_points(group=group):
            dist = ep.dist.name if ep.dist is not None else "<unknown package>"
            if (dist, ep.name) in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add((dist, ep.name))
            found.append((dist, ep))
        contested: dict[str, list[str]] = {}  # name -> the plugins that claimed it, skipped
        for dist, ep in sorted(found, key=lambda item: (item[0], item[1].name)):
            version = ep.dist.version if ep.dist is not None else "?"
            plugin = f"plugin {ep.name!r} from package {dist} {version}"
            try:
                obj = ep.load()
            except Exception as e:  # any failure inside a plugin's import is the plugin's
                self.problems.append(
                    f"{plugin} failed to import ({ep.value}): {type(e).__name__}: {e}"
                )
                continue
            plugin += f" ({ep.value})"
            fault = contract_fault(obj)
            if fault is None and getattr(obj, "name", None) != ep.name:
                fault = f"the entry point name differs from the estimator's name {obj.name!r}"
            if fault is not None:
                self.problems.append(f"{plugin} is skipped: {fault}")
                continue
            if ep.name in contested:
                contested[ep.name].append(plugin)
                continue
            if ep.name in self._entries:
                other = self._entries[ep.name]
                if other.source == "estbench":
                    self.problems.append(
                        f"{plugin} is skipped: the name {ep.name!r} belongs to estbench's "
                        f"built-in {_describe(other.cls)}; rename the plugin's estimator"
                    )
                    continue
                self.unregister(ep.name)
                contested[ep.name] = [f"package {other.source} {other.version}", plugin]
                continue
            self.register(obj, source=dist, version=version)
        for name, claims in contested.items():
            self.problems.append(
                f"estimator name {name!r} is claimed by several plugins ({'; '.join(claims)}); "
                f"none of them is loaded; uninstall all but one"
            )


def _describe(obj: object) -> str:
    """module.QualName of a class (or the repr of anything else), for messages."""
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    return repr(obj)


def _hyper_fault(key: object, spec: object, name: str) -> str | None:
    if not isinstance(key, str) or not key.isidentifier():
        return f"hyperparameter name {key!r} must be a Python identifier"
    if not isinstance(spec, Hyper):
        return f"hyperparameter {key!r} must be an estbench Hyper, got {spec!r}"
    if not isinstance(spec.kind, type):
        return f"hyperparameter {key!r}: kind {spec.kind!r} must be a type"
    if spec.choices is not None and not isinstance(spec.choices, tuple | list):
        return f"hyperparameter {key!r}: choices {spec.choices!r} must be a tuple"
    try:
        spec.check(name, key, spec.default)
    except Exception as e:  # an EstimatorError, or a TypeError from e.g. a str minimum
        return f"hyperparameter {key!r}: its default {spec.default!r} is invalid ({e})"
    return None


def contract_fault(cls: object) -> str | None:
    """What is wrong with ``cls`` as an estimator class (first fault found), or None. Checks
    the metadata every command relies on; drawing is left to ``estbench check``."""
    if not (isinstance(cls, type) and issubclass(cls, Estimator)):
        return f"{_describe(cls)} is not an estbench Estimator subclass"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return f"name {name!r} must match {NAME.pattern}"
    family = getattr(cls, "family", None)
    if family not in FAMILIES:
        return f"family {family!r} must be one of {', '.join(FAMILIES)}"
    problem = getattr(cls, "problem", None)
    known = kinds().kinds
    if problem not in known:
        return f"problem {problem!r} must be one of {', '.join(sorted(known))} (the problem kinds)"
    for attr in ("unbiased", "reference"):
        value = getattr(cls, attr, None)
        if not isinstance(value, str):
            return f"{attr} {value!r} must be a string"
    claims = known_claims(str(problem))
    if cls.unbiased not in claims:
        return f"unbiased {cls.unbiased!r} must be one of {', '.join(map(repr, claims))}"
    if cls.unbiased_layers is not Estimator.unbiased_layers:
        return "overrides unbiased_layers; override claim(model) instead (the layers follow)"
    verified = getattr(cls, "verified", None)
    if not isinstance(verified, str):
        return f"verified {verified!r} must be a string (what confirms the implementation)"
    tests = getattr(cls, "tests", None)
    if not (isinstance(tests, tuple | list) and all(isinstance(t, str) for t in tests)):
        return f"tests {tests!r} must be a tuple of test-file paths (strings)"
    if not isinstance(getattr(cls, "stochastic", None), bool):
        return f"stochastic {getattr(cls, 'stochastic', None)!r} must be True or False"
    hypers = getattr(cls, "hyperparameters", None)
    if not isinstance(hypers, Mapping):
        return f"hyperparameters {hypers!r} must be a dict of name -> Hyper"
    for key, spec in hypers.items():
        fault = _hyper_fault(key, spec, name)
        if fault is not None:
            return fault
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        return f"abstract methods not implemented: {missing}"
    try:
        est = cls()  # estbench list, check and run build every estimator with its defaults
        _ = est.spec
    except Exception as e:
        return f"cannot be created with its default parameters: {type(e).__name__}: {e}"
    model = reference_models()[str(problem)]  # what estbench list states costs on
    try:
        evals = float(est.evals_per_draw(model))
        claim = est.claim(model)
    except Exception as e:
        return (
            f"evals_per_draw or claim fails on the kind's reference network: "
            f"{type(e).__name__}: {e}"
        )
    if claim not in claims:
        return f"claim gives {claim!r}, expected one of {', '.join(map(repr, claims))}"
    layers = set(est.unbiased_layers(model))
    if not (math.isfinite(evals) and evals >= 0):
        return f"evals_per_draw gives {evals!r} on the reference network, expected a number >= 0"
    if not all(isinstance(k, int) and 0 <= k <= model.depth for k in layers):
        return f"unbiased_layers gives {layers!r}, expected layer indices 0..{model.depth}"
    return None


def reference_models() -> dict[str, Any]:
    """Per problem kind, the network on which ``estbench list`` states costs and
    ``contract_fault`` tries ``evals_per_draw`` and ``claim``."""
    return _reference_models(tuple(sorted(kinds().kinds)))


@lru_cache(maxsize=2)
def _reference_models(names: tuple[str, ...]) -> dict[str, Any]:
    found = kinds().kinds
    return {name: found[name].reference_network() for name in names}


def build_registry(*, plugins: bool | None = None) -> Registry:
    """Every problem kind's own estimators (``ProblemKind.estimators``), then the plugins of
    ``estbench.estimators``; plugins (kinds and estimators) unless ``plugins=False`` or
    ``ESTBENCH_DISABLE_PLUGINS=1``."""
    use_plugins = not plugins_disabled() if plugins is None else plugins
    found = kinds(plugins=use_plugins)
    registry = Registry()
    registry.problems += found.problems
    for name, kind in found.kinds.items():
        source, version = found.sources[name], found.versions[name]
        for cls in kind.estimators():
            if source == "estbench":
                registry.register(cls)
                continue
            try:  # a plugin kind's estimator that cannot be registered is reported, skipped
                registry.register(cls, source=source, version=version)
            except EstimatorError as e:
                registry.problems.append(f"problem kind {name!r} from package {source}: {e}")
    if use_plugins:
        registry.load_plugins()
    return registry


@lru_cache(maxsize=1)
def _default_registry(disabled: bool) -> Registry:
    return build_registry(plugins=not disabled)


def default_registry() -> Registry:
    """The process-wide registry: built-ins plus plugins (unless ESTBENCH_DISABLE_PLUGINS=1)."""
    return _default_registry(plugins_disabled())


def get_estimator(spec: str | Estimator) -> Estimator:
    """Shortcut: ``default_registry().create(spec)``."""
    return default_registry().create(spec)
