"""README.md, the front door, and the documentation pages under docs/: the Python examples of the
docs run as written, unchanged (the exact-gradient API on a shipped seed network by its ``seed:``
name, and the stochastic-weights API, in a scratch directory); every built-in estimator has a
row in the docs' "How each estimator is verified" tables; README's Quickstart commands and its
"Status" counts match the code and the registry. The site itself is built by ``.ci/run``
(``sphinx-build -W``), which fails on a broken cross-reference."""

from __future__ import annotations

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


def test_every_built_in_estimator_has_a_verification_row():
    """The docstrings keep formula, claim, cost and reference; what verifies each built-in
    estimator (oracle, closed form, statistical test, negative control, test file) is a row of
    the docs' "How each (weight) estimator is verified" tables (docs/estimators.md and the
    problem kinds' pages), naming test files that exist."""
    from estbench.estimators.registry import build_registry

    text = "\n\n".join(page.read_text() for page in PAGES)
    tables = [t for t in text.split("\n\n") if t.startswith("| estimator | checked against")]
    assert len(tables) == 3  # core, weights, sbvae
    rows = [line.split(" | ") for t in tables for line in t.splitlines()[2:]]
    names = {row[0].removeprefix("| `").removesuffix("`") for row in rows}
    registry = build_registry(plugins=False)
    built_in = [name for name in registry if registry[name].source == "estbench"]
    assert built_in
    assert [name for name in built_in if name not in names] == []
    for row in rows:
        files = re.findall(r"`(tests/[^`]+)`", row[-1])
        assert files, row[0]
        for path in files:
            assert (ROOT / path).exists(), path


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
