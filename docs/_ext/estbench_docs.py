"""Sphinx extension: pages generated from the code at build time, so they cannot drift.

* ``generated/catalogue.md``: the estimator catalogue from the registry's metadata, the rows
  ``estbench list`` prints (``estbench.catalogue.catalogue``, built-in estimators only: the
  example plugins are not part of estbench) and each kind's refusals with their reasons;
* ``generated/case-keys.md``: every key of a case file, with its type, default, what it accepts
  and a line of help, from the declarations the parser reads by (``estbench.cases.SCHEMA``, the
  ``[model]`` keys of every built-in kind from ``ProblemKind.model_keys()``; a ``Table`` reads
  only declared keys, so a key the parser accepts is listed whether or not a case uses it);
* ``generated/overview-<kind>.md``, one per built-in problem kind: its estimators at a glance
  (family, name, parameters with defaults, claim, evaluations per draw), the catalogue's rows;
* ``generated/verified-<kind>.md``, one per built-in problem kind: the "How each estimator is
  verified" table, each estimator's ``verified`` text and ``tests`` files (the catalogue's
  rows, from the class attributes; "not stated by the plugin" where they are empty). These two
  are fragments, not pages: the kind's page includes its tables (``{include}``), and ``conf.py``
  excludes them as documents; ``tests/test_readme.py`` checks that every kind's is included.

All are written into the source tree (``docs/generated/``, ignored by git) when the builder
starts, and rewritten only when their text changes (so an incremental build stays incremental).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
        "draw there. What verifies each estimator (its `verified` and `tests`, generated as",
        "well) is in {doc}`../estimators` and the problem kinds' pages.",
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


NOT_STATED = "not stated by the plugin"


def _defaults(h: dict[str, Any]) -> str:
    """Hyperparameters as `key` = default (choices), compactly."""
    parts = []
    for key, spec in h.items():
        choices = spec.get("choices")
        alt = " (" + " \\| ".join(str(c) for c in choices) + ")" if choices else ""
        parts.append(f"`{key}` = {spec['default']}{alt}")
    return ", ".join(parts)


def overview_table(rows: list[dict[str, Any]]) -> str:
    """A kind's estimators at a glance, by family (in ``FAMILIES`` order) and name: family,
    name, parameters with their defaults, the unbiasedness claim and the loss evaluations per
    draw on the kind's reference network (the catalogue's rows)."""
    from estbench.estimators.base import FAMILIES

    lines = [
        "| family | name | parameters (defaults) | claimed unbiased | evals/draw |",
        "| --- | --- | --- | --- | --- |",
    ]
    previous = None
    for r in sorted(rows, key=lambda r: (FAMILIES.index(r["family"]), r["name"])):
        family = "" if r["family"] == previous else _cell(r["family"])
        previous = r["family"]
        lines.append(
            f"| {family} | `{r['name']}` | {_defaults(r['hyperparameters'])} "
            f"| {_cell(r['unbiased'])} | {_cell(r['evals_per_draw_5_5_5'])} |"
        )
    return "\n".join([*lines, ""])


def verification_table(rows: list[dict[str, Any]]) -> str:
    """The "How each estimator is verified" table of catalogue rows (one problem kind's), by
    family (in ``FAMILIES`` order) and name: the estimator, its ``verified`` text (Markdown, as
    written) and its ``tests`` files."""
    from estbench.estimators.base import FAMILIES

    lines = ["| estimator | checked against | tests |", "| --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (FAMILIES.index(r["family"]), r["name"])):
        tests = ", ".join(f"`{t}`" for t in r["tests"]) or "—"
        lines.append(f"| `{r['name']}` | {_cell(r['verified']) or NOT_STATED} | {_cell(tests)} |")
    return "\n".join([*lines, ""])


def kind_tables() -> dict[str, str]:
    """File name -> fragment, for every built-in kind (the example plugins are not part of
    estbench): ``overview-<kind>.md`` (``overview_table``) and ``verified-<kind>.md``
    (``verification_table``)."""
    from estbench.catalogue import catalogue

    cat = catalogue(plugins=False)
    out = {}
    for kind in cat["kinds"]:
        rows = [r for r in cat["rows"] if r["problem"] == kind]
        out[f"overview-{kind}.md"] = overview_table(rows)
        out[f"verified-{kind}.md"] = verification_table(rows)
    return out


def _keys_table(keys: tuple[Any, ...]) -> list[str]:
    lines = ["| key | type | default | accepts | meaning |", "| --- | --- | --- | --- | --- |"]
    for k in keys:
        accepts = k.expected if k.choices or k.accepts else ""
        lines.append(
            f"| `{k.name}` | {k.type} | {_cell(k.shown_default)} | {_cell(accepts)} "
            f"| {_cell(k.help)} |"
        )
    return [*lines, ""]


def case_keys_page() -> str:
    from estbench import cases
    from estbench.problem import kinds

    titles = {"": "top level"}
    lines = [
        "# Case-file keys (generated)",
        "",
        "Generated at build time from the declarations the case-file parser reads by",
        f"(`estbench.cases.SCHEMA`, schema version {cases.SCHEMA_VERSION}; the `[model]` keys of",
        "each problem kind from its `ProblemKind.model_keys()`): every key a case file may have,",
        "by table, with its type, default, what it accepts and what it is for. The parser reads",
        "only keys declared here, and any other key is an error naming the keys allowed. The",
        "annotated example and the meaning of each table are in {doc}`../running`.",
        "",
    ]
    for table, keys in cases.SCHEMA.items():
        lines += [f"## {titles.get(table, f'`[{table}]`')}", ""]
        if table == "model":
            lines += ["Every problem kind's keys; each kind's own follow.", ""]
        lines += _keys_table(keys)
        if table == "model":
            for name, kind in sorted(kinds(plugins=False).kinds.items()):
                lines += [
                    f'### `[model]` with `kind = "{name}"`',
                    "",
                    f"Its own keys ({kind.description}).",
                    "",
                ]
                keys = kind.model_keys()
                lines += _keys_table(keys) if keys else ["No keys of its own.", ""]
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate(app: Sphinx) -> None:
    out = Path(app.srcdir) / "generated"
    _write(out / "catalogue.md", catalogue_page())
    _write(out / "case-keys.md", case_keys_page())
    for name, table in kind_tables().items():
        _write(out / name, table)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
