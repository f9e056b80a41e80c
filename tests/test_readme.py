"""The Python examples of README.md run as written, unchanged: the exact-gradient API on a
shipped seed network (by its ``seed:`` name) and the stochastic-weights API, in a scratch
directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
RUNNABLE = {
    "python-api": "from estbench import exact_gradient, load_checkpoint",
    "weights-api": "from estbench.kinds.weights import (",
}


def block(marker: str) -> str:
    found = [b for b in BLOCKS if marker in b]
    assert len(found) == 1, f"README.md: expected one python block with {marker!r}"
    return found[0]


@pytest.mark.parametrize("name", list(RUNNABLE))
def test_readme_example_runs(name, tmp_path, monkeypatch):
    code = block(RUNNABLE[name])
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(code, f"README.md[{name}]", "exec"), scope)  # noqa: S102
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
    README.md's "How each (weight) estimator is verified" tables and the VAE kind's, naming
    test files that exist."""
    from estbench.estimators.registry import build_registry

    tables = [
        t for t in README.read_text().split("\n\n") if t.startswith("| estimator | checked against")
    ]
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
            assert (README.parent / path).exists(), path
