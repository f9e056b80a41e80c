"""One registry for built-in and third-party estimators.

Third parties declare an entry point in the group ``estbench.estimators`` whose name is the
estimator's registry name and whose object is an ``Estimator`` subclass::

    [project.entry-points."estbench.estimators"]
    my-estimator = "my_package.module:MyEstimator"

Plugins are discovered without importing, sorted, then loaded one by one (as flake8 does): a plugin
that fails to import is reported with its package name and everything else keeps working; a
duplicate name is an error naming both sources. ``ESTBENCH_DISABLE_PLUGINS=1`` turns plugins off.

Users spell an estimator as ``name`` or ``name(key=value, ...)``, e.g. ``concrete(tau=0.1)``,
``rloo(k=4)``, ``reinforce(baseline=frozen)``; lists are comma-separated:
``st,psa,concrete(tau=0.1)``.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .._version import __version__
from .base import FAMILIES, PROBLEM_KINDS, Estimator, EstimatorError

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


def split_specs(text: str) -> list[str]:
    """'st,psa,concrete(tau=0.1)' -> ['st', 'psa', 'concrete(tau=0.1)'] (commas inside () kept)."""
    parts, depth, current = [], 0, []
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
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise EstimatorError(
                f"estimator {cls.__qualname__} from {source}: name {name!r} must match "
                f"{NAME.pattern}"
            )
        if name in self._entries:
            other = self._entries[name]
            raise DuplicateEstimatorError(
                f"estimator name {name!r} is registered twice: by {other.source} "
                f"({other.cls.__module__}.{other.cls.__qualname__}) and by {source} "
                f"({cls.__module__}.{cls.__qualname__}); uninstall one, or set "
                f"ESTBENCH_DISABLE_PLUGINS=1"
            )
        if getattr(cls, "family", None) not in FAMILIES:
            raise EstimatorError(
                f"estimator {name!r} from {source}: family {getattr(cls, 'family', None)!r} "
                f"must be one of {', '.join(FAMILIES)}"
            )
        if getattr(cls, "problem", None) not in PROBLEM_KINDS:
            raise EstimatorError(
                f"estimator {name!r} from {source}: problem {getattr(cls, 'problem', None)!r} "
                f"must be one of {', '.join(PROBLEM_KINDS)}"
            )
        self._entries[name] = Entry(cls, source, version)
        return cls

    def unregister(self, name: str) -> None:
        del self._entries[name]

    def create(self, spec: str | Estimator) -> Estimator:
        """A configured estimator from 'name' or 'name(key=value, ...)'."""
        if isinstance(spec, Estimator):
            return spec
        name, params = parse_spec(spec)
        if name not in self._entries:
            raise EstimatorError(self._unknown(name))
        cls = self._entries[name].cls
        unknown = [k for k in params if k not in cls.hyperparameters]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(cls.hyperparameters), n=2)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            allowed = ", ".join(f"{k}={v.default}" for k, v in cls.hyperparameters.items())
            raise EstimatorError(
                f"{name}: unknown parameter {unknown[0]!r}{hint} (parameters: {allowed or 'none'})"
            )
        return cls(**params)

    def create_all(self, specs: str) -> list[Estimator]:
        return [self.create(s) for s in split_specs(specs)]

    def load_plugins(self, group: str = GROUP) -> None:
        """Register every entry point of ``group``; import failures go to ``self.problems``."""
        seen: set[tuple[str, str]] = set()
        found = []
        for ep in importlib.metadata.entry_points(group=group):
            dist = ep.dist.name if ep.dist is not None else "<unknown package>"
            if (dist, ep.name) in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add((dist, ep.name))
            found.append((dist, ep))
        for dist, ep in sorted(found, key=lambda item: (item[0], item[1].name)):
            version = ep.dist.version if ep.dist is not None else "?"
            try:
                obj = ep.load()
            except Exception as e:  # any failure inside a plugin's import is the plugin's
                self.problems.append(
                    f"plugin {ep.name!r} from package {dist} {version} failed to import "
                    f"({ep.value}): {type(e).__name__}: {e}"
                )
                continue
            if not (isinstance(obj, type) and issubclass(obj, Estimator)):
                self.problems.append(
                    f"plugin {ep.name!r} from package {dist} {version}: {ep.value} is not an "
                    f"estbench Estimator subclass"
                )
                continue
            if obj.name != ep.name:
                self.problems.append(
                    f"plugin {ep.name!r} from package {dist} {version}: the entry point name "
                    f"differs from the estimator's name {obj.name!r}"
                )
                continue
            self.register(obj, source=dist, version=version)


def builtin_estimators() -> list[type[Estimator]]:
    from ..weights import estimators as weights
    from . import path_analytic, relaxed, score, straight_through

    return [
        *score.ESTIMATORS,
        *relaxed.ESTIMATORS,
        *straight_through.ESTIMATORS,
        *path_analytic.ESTIMATORS,
        *weights.ESTIMATORS,  # problem = "weights": SBNs with Bernoulli weights
    ]


def plugins_disabled() -> bool:
    return os.environ.get("ESTBENCH_DISABLE_PLUGINS", "").strip() not in ("", "0")


def build_registry(*, plugins: bool | None = None) -> Registry:
    registry = Registry()
    for cls in builtin_estimators():
        registry.register(cls)
    if plugins if plugins is not None else not plugins_disabled():
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
