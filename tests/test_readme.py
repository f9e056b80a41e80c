"""README.md, the front door, and the documentation pages under docs/: the Python examples of the
docs run as written, unchanged (the exact-gradient API on a shipped seed network by its ``seed:``
name, and the stochastic-weights API, in a scratch directory); every built-in estimator states
what verifies it and the test files that do (``Estimator.verified``, ``tests``: files that exist
and name it), and the docs' "How each estimator is verified" tables, generated from these, are
included by the kinds' pages; README's Quickstart commands and its
"Status" counts match the code and the registry. The site itself is built by ``.ci/run``
(``sphinx-build -W``), which fails on a broken cross-reference."""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(
    p for p in DOCS.rglob("*.md") if not {"_build", "generated"} & set(p.relative_to(DOCS).parts)
)
BLOCKS = [
    (page, b)
    for page in PAGES
    for b in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
]
RUNNABLE = {
    "python-api": "from estbench import exact_gradient, load_checkpoint",
    "weights-api": "from estbench.kinds.weights import (",
}
QUICKSTART = (
    "python3.11 -m venv .venv && .venv/bin/pip install torch==2.13.0 && .venv/bin/pip install "
    "-e . && .venv/bin/estbench run",
    "python3.11 -m venv .venv && .venv/bin/pip install torch==2.13.0 && .venv/bin/pip install "
    "-e '.[test]' -e examples/estbench-example-plugin -e examples/estbench-example-kind && "
    ".venv/bin/python -m pytest",
)


def block(marker: str) -> tuple[Path, str]:
    found = [(page, b) for page, b in BLOCKS if marker in b]
    assert len(found) == 1, f"docs/: expected one python block with {marker!r}"
    return found[0]


def test_docs_pages_exist():
    names = {str(p.relative_to(DOCS)) for p in PAGES}
    assert {"index.md", "tutorial.md", "estimators.md", "api.md", "kinds/weights.md"} <= names


@pytest.mark.parametrize("name", list(RUNNABLE))
def test_docs_example_runs(name, tmp_path, monkeypatch):
    page, code = block(RUNNABLE[name])
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(code, f"{page.relative_to(ROOT)}[{name}]", "exec"), scope)  # noqa: S102
    if name == "python-api":
        assert abs(float(scope["result"].loss) - 0.68386822890769394) < 1e-12
        assert (tmp_path / "net.npz").exists()
    else:
        assert scope["draws"].shape == (1000, 25)
        assert float(scope["bias"].norm()) < 0.05  # weight-st's bias at 1000 draws
        assert scope["net2"].describe() == scope["net"].describe()


def _docs_extension():  # noqa: ANN202
    """docs/_ext/estbench_docs.py, the Sphinx extension that generates the docs' tables."""
    spec = importlib.util.spec_from_file_location(
        "estbench_docs", DOCS / "_ext" / "estbench_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mentions(text: str, name: str, class_name: str) -> bool:
    """Whether ``text`` names the estimator: its registry name as a whole word (``st`` is not
    in ``st-gs`` nor in ``vae-st``), or its class name."""
    return bool(
        re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)
        or re.search(rf"\b{re.escape(class_name)}\b", text)
    )


def test_every_built_in_estimator_states_what_verifies_it():
    """Every built-in estimator, of every kind, states what verifies it (``Estimator.verified``:
    oracle, closed form, statistical test, negative control) and the test files that do it
    (``tests``): files under tests/ that exist and name the estimator (its registry name as a
    word, or its class name), so the docs' "How each estimator is verified" tables, generated
    from these, cannot name a file that does not test it."""
    from estbench.estimators.registry import build_registry
    from estbench.problem import kinds

    registry = build_registry(plugins=False)
    built_in = {name: e.cls for name, e in registry.items() if e.source == "estbench"}
    assert {cls.problem for cls in built_in.values()} == set(kinds(plugins=False).kinds)
    faults = []
    for name, cls in built_in.items():
        if not cls.verified.strip():
            faults.append(f"{name}: no `verified` text")
        if not cls.tests:
            faults.append(f"{name}: no `tests`")
        for path in cls.tests:
            file = ROOT / path
            if not (re.fullmatch(r"tests/test_\w+\.py", path) and file.is_file()):
                faults.append(f"{name}: {path} is not a test file under tests/")
            elif not _mentions(file.read_text(), name, cls.__name__):
                faults.append(f"{name}: {path} names neither {name} nor {cls.__name__}")
    assert faults == []


def test_every_kind_page_includes_its_generated_tables():
    """The docs' overview and verification tables are generated (docs/_ext/estbench_docs.py),
    one of each per built-in problem kind, each listing every built-in estimator of the kind
    once; one page includes each verification table and the sbn overview (``{include}``), and
    no hand-written table is left beside them."""
    from estbench.estimators.registry import build_registry

    tables = _docs_extension().kind_tables()
    registry = build_registry(plugins=False)
    texts = {page: page.read_text() for page in PAGES}
    kinds = sorted({e.cls.problem for e in registry.values()})
    assert sorted(tables) == sorted(f"{t}-{k}.md" for k in kinds for t in ("overview", "verified"))
    for file, table in tables.items():
        kind = file.removesuffix(".md").split("-", 1)[1]
        column = 0 if file.startswith("verified") else 1
        names = [line.split(" | ")[column].strip("| `") for line in table.splitlines()[2:] if line]
        expected = [
            n for n, e in registry.items() if e.source == "estbench" and e.cls.problem == kind
        ]
        assert sorted(names) == sorted(expected), file
        assert "not stated by the plugin" not in table
        if file.startswith("overview") and kind != "sbn":
            continue  # the other kinds' pages list theirs in prose; the catalogue has all
        target = DOCS / "generated" / file
        including = [
            page
            for page, text in texts.items()
            for path in re.findall(r"^```\{include\} (\S+)\n```$", text, flags=re.M)
            if (page.parent / path).resolve() == target.resolve()
        ]
        assert len(including) == 1, (file, including)
    assert [p for p, text in texts.items() if "| estimator | checked against" in text] == []
    assert [p for p, text in texts.items() if "| family | name | parameters" in text] == []


def test_an_estimator_that_states_nothing_reads_not_stated():
    """Plugins need not state ``verified`` and ``tests``: the generated table then says so."""
    row = {"name": "mine", "family": "score-function", "verified": "", "tests": []}
    table = _docs_extension().verification_table([row])
    assert table.splitlines()[2] == "| `mine` | not stated by the plugin | — |"
    stated = {**row, "verified": "exact: a | b", "tests": ["tests/test_mine.py"]}
    line = _docs_extension().verification_table([stated]).splitlines()[2]
    assert line == "| `mine` | exact: a \\| b | `tests/test_mine.py` |"


def test_readme_is_the_front_door():
    """At most about 150 lines, the two Quickstart commands exactly, and links into docs/ that
    resolve."""
    text = README.read_text()
    assert len(text.splitlines()) <= 160
    for command in QUICKSTART:
        assert f"```bash\n{command}\n```" in text, command
    links = re.findall(r"\]\(((?:docs|reports)/[^)#]+)(?:#[^)]*)?\)", text)
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        assert (ROOT / link).exists(), link


def test_readme_status_counts_match_the_registry():
    """README's "Status" paragraph names the number of estimators, per kind, and of shipped
    cases; they are the registry's and the package's."""
    from estbench.estimators.registry import build_registry
    from estbench.shipped import cases_dir

    status = README.read_text().split("## Status\n", 1)[1].split("\n## ", 1)[0]
    status = " ".join(status.split())
    registry = build_registry(plugins=False)
    per_kind = Counter(entry.cls.problem for entry in registry.values())
    total = re.search(r"(\d+) estimators are registered", status)
    assert total and int(total.group(1)) == len(registry), status
    stated = {kind: int(n) for n, kind in re.findall(r"(\d+) for the `(\w+)` kind", status)}
    assert stated == dict(per_kind), (stated, dict(per_kind))
    shipped = re.search(r"(\d+) cases ship with the package", status)
    assert shipped and int(shipped.group(1)) == len(list(cases_dir().glob("*.toml"))), status
