"""The estimator catalogue that ``estbench list`` and ``--version`` print, cached without torch.

Every row states facts that only the estimator classes know (family, claim, hyperparameters, loss
evaluations per draw on the kind's reference network, what verifies it and the test files that
do: ``verified`` and ``tests``, empty where a plugin states none), so building the catalogue
imports every estimator module, built-in and plugin, and with them torch (about 1 s of a 1.3 s
``estbench list``). The rows depend on nothing but the code that defines them, so they are cached in
``catalogue.json`` under the cache directory (``ESTBENCH_CACHE_DIR``, else
``$XDG_CACHE_HOME/estbench``, else ``~/.cache/estbench``) together with a fingerprint of that code:

* every entry point of the groups ``estbench.estimators`` and ``estbench.problems`` (name, object,
  package and version), and whether plugins are disabled;
* for each package those entry points live in, the path, size and modification time of every
  ``.py`` file under it (an editable install changes no version when its code changes), found
  with ``importlib.util.find_spec`` on the top-level name, which imports nothing;
* the Python and estbench versions.

A catalogue is read from the cache only when its fingerprint equals the one computed now, so any
edit, install or uninstall rebuilds it; a cache that cannot be read or written is ignored (the
catalogue is then built every time, as before). Writes are atomic (a temporary file renamed).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._version import __version__

CACHE_ENV = "ESTBENCH_CACHE_DIR"
GROUPS = ("estbench.estimators", "estbench.problems")
FORMAT = 3  # bump when the cached layout changes


def cache_dir() -> Path:
    """Where estbench caches what it can rebuild (module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "estbench"


def _package_files(top: str) -> list[tuple[str, int, int]]:
    """(path, size, mtime in ns) of every ``.py`` file of the top-level package ``top``."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    roots = list(spec.submodule_search_locations or ())
    if not roots and spec.origin:
        roots = [spec.origin]
    out = []
    for root in roots:
        if os.path.isfile(root):
            st = os.stat(root)
            out.append((root, st.st_size, st.st_mtime_ns))
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    st = os.stat(path)
                    out.append((path, st.st_size, st.st_mtime_ns))
    return out


def fingerprint(plugins: bool) -> str:
    """A digest of everything the catalogue's rows depend on (module docstring)."""
    points = []
    tops = set()
    for group in GROUPS:
        for ep in importlib.metadata.entry_points(group=group):
            dist = getattr(ep, "dist", None)
            points.append(
                (
                    group,
                    ep.name,
                    ep.value,
                    dist.name if dist is not None else "",
                    dist.version if dist is not None else "",
                )
            )
            tops.add(ep.value.split(":")[0].split(".")[0])
    state = {
        "format": FORMAT,
        "python": sys.version,
        "estbench": __version__,
        "plugins": plugins,
        "entry_points": sorted(points),
        "files": {top: _package_files(top) for top in sorted(tops)},
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def _build(plugins: bool) -> dict[str, Any]:
    """The catalogue itself: one row per registered estimator, the kinds, the estimators each
    kind refuses with the reason (``ProblemKind.refusals``), and the warnings of plugins that were
    skipped. Imports every estimator module (and torch)."""
    from .estimators.registry import build_registry
    from .problem import kinds

    found = kinds(plugins=plugins)
    registry = build_registry(plugins=plugins)
    models = {name: kind.reference_network() for name, kind in found.kinds.items()}
    rows = []
    for name, entry in registry.items():
        cls = entry.cls
        est = cls()
        model = models[est.problem]
        doc = (cls.__doc__ or "").strip().splitlines()
        rows.append(
            {
                "name": name,
                "family": est.family,
                "problem": est.problem,
                "wrt": getattr(est, "wrt", None),
                "unbiased": est.claim(model),
                "path_estimator": found.kinds[est.problem].path_count(est, model) is not None,
                "evals_per_draw_5_5_5": est.evals_per_draw(model),
                "hyperparameters": {
                    k: {
                        "default": h.default,
                        "type": h.kind.__name__,
                        "choices": list(h.choices) if h.choices else None,
                        "help": h.help,
                    }
                    for k, h in cls.hyperparameters.items()
                },
                "reference": cls.reference,
                "summary": doc[0] if doc else "",
                "verified": cls.verified,
                "tests": list(cls.tests),
                "package": entry.source,
                "version": entry.version,
            }
        )
    return {
        "rows": rows,
        "kinds": {name: kind.description for name, kind in sorted(found.kinds.items())},
        "refusals": {
            name: dict(sorted(kind.refusals().items()))
            for name, kind in sorted(found.kinds.items())
            if kind.refusals()
        },
        "warnings": list(found.problems) + list(registry.problems),
    }


def catalogue(plugins: bool) -> dict[str, Any]:
    """The catalogue (``rows``, ``kinds``: name -> description, ``refusals``: kind -> estimator
    -> reason, ``warnings``), from the cache
    when its fingerprint matches, else built and cached."""
    key = fingerprint(plugins)
    path = cache_dir() / "catalogue.json"
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached, dict) and cached.get("fingerprint") == key:
            return dict(cached["catalogue"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent, unreadable or damaged: rebuild
    text = json.dumps({"fingerprint": key, "catalogue": _build(plugins)})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".catalogue-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass  # a read-only home: the catalogue is simply not cached
    # what the cache would give back (tuples as lists), so a cold and a warm list print the same
    return dict(json.loads(text)["catalogue"])
