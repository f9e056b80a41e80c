"""Sphinx extension: pages generated from the code at build time, so they cannot drift.

* ``generated/catalogue.md``: the estimator catalogue from the registry's metadata, the rows
  ``estbench list`` prints (``estbench.catalogue.catalogue``, built-in estimators only: the
  example plugins are not part of estbench) and each kind's refusals with their reasons;
* ``generated/case-keys.md``: every key the case-file parser reads, with its type, default and
  what it accepts, recorded by parsing every shipped case file through ``estbench.cases`` with
  ``Table.get`` observed (so a key the parser reads is listed the moment it is read).

Both are written into the source tree (``docs/generated/``, ignored by git) when the builder
starts, and rewritten only when their text changes (so an incremental build stays incremental).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any
from unittest import mock

from sphinx.application import Sphinx


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _hyper(h: dict[str, Any]) -> str:
    parts = []
    for key, spec in h.items():
        choices = spec.get("choices")
        values = " | ".join(str(c) for c in choices) if choices else spec["type"]
        parts.append(f"`{key}` = {spec['default']!r} ({values})")
    return "; ".join(parts)


def catalogue_page() -> str:
    from estbench.catalogue import catalogue

    cat = catalogue(plugins=False)
    lines = [
        "# Estimator catalogue (generated)",
        "",
        "Generated at build time from the estimator registry's metadata, the same rows as",
        "`estbench list` (built-in estimators; `estbench list --json` adds the plugins installed",
        "beside estbench). *claim* is the estimator's own unbiasedness claim on the kind's",
        "reference network (per layer where it differs), *evals/draw* its loss evaluations per",
        "draw there. What verified each estimator is in {doc}`../estimators` and the problem",
        "kinds' pages.",
        "",
    ]
    for kind, description in cat["kinds"].items():
        rows = [r for r in cat["rows"] if r["problem"] == kind]
        lines += [f"## Kind `{kind}`", "", _cell(description), ""]
        if rows:
            lines += [
                "| name | family | claim | evals/draw | hyperparameters | reference | summary |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            for r in sorted(rows, key=lambda r: (r["family"], r["name"])):
                lines.append(
                    "| "
                    + " | ".join(
                        [
                            f"`{r['name']}`",
                            _cell(r["family"]),
                            _cell(r["unbiased"]),
                            _cell(r["evals_per_draw_5_5_5"]),
                            _cell(_hyper(r["hyperparameters"])),
                            _cell(r["reference"]),
                            _cell(r["summary"]),
                        ]
                    )
                    + " |"
                )
            lines.append("")
        refusals = cat["refusals"].get(kind, {})
        if refusals:
            lines += [f"Estimators the `{kind}` kind refuses, and why:", ""]
            lines += [f"- `{name}`: {_cell(why)}" for name, why in refusals.items()]
            lines.append("")
    return "\n".join(lines)


def case_keys_page() -> str:
    from estbench import cases
    from estbench.shipped import cases_dir

    seen: dict[tuple[str, str], dict[str, Any]] = {}
    original = cases.Table.get

    def observed(self: Any, name: str, kind: str, default: Any = None, **kw: Any) -> Any:
        entry = seen.setdefault(
            (self.path, name),
            {"kind": kind, "defaults": [], "required": False, "expected": "", "kinds": set()},
        )
        entry["kinds"].add(current[0])
        if default is not None and repr(default) not in entry["defaults"]:
            entry["defaults"].append(repr(default))
        entry["required"] |= bool(kw.get("required"))
        entry["expected"] = entry["expected"] or kw.get("expected", "")
        return original(self, name, kind, default, **kw)

    files = sorted(cases_dir().glob("*.toml"))
    current = [""]
    with mock.patch.object(cases.Table, "get", observed):
        for path in files:
            model = tomllib.loads(path.read_text()).get("model", {})
            current[0] = model.get("kind", "sbn") if isinstance(model, dict) else "sbn"
            cases.load_case(path)
    lines = [
        "# Case-file keys (generated)",
        "",
        "Generated at build time from the case-file parser (`estbench/cases.py`, schema version",
        f"{cases.SCHEMA_VERSION}): every key it reads while parsing the {len(files)} shipped case",
        "files, by table, with its type, default (several where the default depends on the kind)",
        "and what it accepts. A key a problem-kind plugin reads is listed when a shipped case uses",
        "that kind. The annotated example and the meaning of each table are in",
        "{doc}`../running`.",
        "",
    ]
    tables = sorted({table for table, _ in seen})
    for table in tables:
        lines += [
            f"## `[{table}]`" if table else "## top level",
            "",
            "| key | type | default | accepts | read for the kinds |",
            "| --- | --- | --- | --- | --- |",
        ]
        for (t, name), e in sorted(seen.items()):
            if t != table:
                continue
            default = "required" if e["required"] else ", ".join(f"`{d}`" for d in e["defaults"])
            used = ", ".join(f"`{k}`" for k in sorted(e["kinds"]))
            lines.append(
                f"| `{name}` | {e['kind']} | {_cell(default)} | {_cell(e['expected'])} | {used} |"
            )
        lines.append("")
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate(app: Sphinx) -> None:
    out = Path(app.srcdir) / "generated"
    _write(out / "catalogue.md", catalogue_page())
    _write(out / "case-keys.md", case_keys_page())


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
