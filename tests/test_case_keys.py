"""The case-file keys are declared once (``estbench.schema.Key``): the parser reads only declared
keys, and the docs' case-file reference (``docs/generated/case-keys.md``) is generated from the
same declarations, so it lists every key, also those no shipped case uses."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

from estbench.cases import CASES_DIR, SCHEMA, CaseError, Table, parse_case
from estbench.problem import kinds

ROOT = Path(__file__).resolve().parents[1]


def _page() -> str:
    spec = importlib.util.spec_from_file_location(
        "estbench_docs", ROOT / "docs" / "_ext" / "estbench_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.case_keys_page())


def _declared() -> dict[str, set[str]]:
    """The declared keys by table; ``model:KIND`` for a kind's own ``[model]`` keys."""
    declared = {table: {k.name for k in keys} for table, keys in SCHEMA.items()}
    for name, kind in kinds(plugins=False).kinds.items():
        declared[f"model:{name}"] = {k.name for k in kind.model_keys()}
    return declared


def test_a_key_read_but_not_declared_is_a_programming_error():
    table = Table("f.toml", "data", {"n": 3}, SCHEMA["data"])
    assert table.get("n") == 3
    with pytest.raises(AssertionError, match="data.undeclared: read but not declared"):
        table.get("undeclared")


def test_a_key_not_declared_is_refused_in_a_case():
    text = (
        'schema_version = 2\n[model]\nwidths = [2]\nflavour = "x"\n[measure]\nestimators = ["st"]\n'
    )
    with pytest.raises(CaseError, match=r"model\.flavour: unknown key \(allowed here: "):
        parse_case(text, name="t")


def test_the_page_lists_every_declared_key():
    page = _page()
    sections = page.split("\n## ")
    for table, names in _declared().items():
        base, _, kind = table.partition(":")
        title = "top level" if not base else f"`[{base}]`"
        (section,) = [s for s in sections if s.startswith(title)]
        if kind:
            section = section.split(f'### `[model]` with `kind = "{kind}"`')[1].split("###")[0]
        for name in names:
            assert f"| `{name}` |" in section, (table, name)


def test_the_page_lists_keys_no_shipped_case_uses():
    used: set[tuple[str, str]] = set()
    for path in CASES_DIR.glob("*.toml"):
        raw = tomllib.loads(path.read_text())
        for key, value in raw.items():
            if isinstance(value, dict):
                used |= {(key, k) for k in value}
            else:
                used.add(("", key))
    unused = {
        (table.partition(":")[0], name)
        for table, names in _declared().items()
        for name in names
        if (table.partition(":")[0], name) not in used
    }
    # e.g. data.classes, measure.reference_pilot_draws, compare.quick_steps
    assert len(unused) >= 3, unused
    page = _page()
    for _, name in unused:
        assert f"| `{name}` |" in page
