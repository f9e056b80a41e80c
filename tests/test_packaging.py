"""The package is self-contained: nothing reads the folder the seed networks came from, the
wheel carries the seed networks and the case files, and pyproject.toml's explicit package list
misses no package."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("estbench", "tests", "cases", "benchmarks", "scripts", "docs")
# The folder beside the checkout that the seed networks came from, spelled in pieces so that this
# file names it nowhere (the scan skips nothing, this file included).
SHARED = "/".join(("..", "shared"))
FORBIDDEN = re.compile(re.escape(SHARED) + "|" + re.escape("shared/seed" + "-nets"))


def _scanned_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in SCANNED:
        files += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.is_file()
            and not {"__pycache__", "_build", "generated"} & set(p.parts)
            and p.suffix not in (".npz", ".png")
        ]
    return files


def _offenders() -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for path in _scanned_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:  # binary data (figures, archives): no paths to read
            continue
        lines = [i for i, line in enumerate(text.splitlines(), 1) if FORBIDDEN.search(line)]
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    return found


def test_nothing_reads_the_shared_folder():
    """CI runs in a fresh clone where that folder may exist read-only beside it: only this test,
    not luck, keeps the package, its tests, cases, benchmarks, scripts and README from depending
    on it."""
    offenders = _offenders()
    assert offenders == {}, f"files that refer to {SHARED} (file: lines): {offenders}"


def test_the_scan_sees_a_reference(tmp_path, monkeypatch):
    """Negative control: a file under a scanned folder that names the folder is found."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "README.md").write_text("ok\n")
    for folder in SCANNED:
        (tmp_path / folder).mkdir()
    (tmp_path / "benchmarks" / "x.py").write_text(f'P = "a"\nQ = "{SHARED}/seed-nets/n.npz"\n')
    assert _offenders() == {"benchmarks/x.py": [2]}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_package_list_names_every_package():
    """The list is explicit (cases/ is mapped to estbench.case_files), so a new subpackage must
    be added to it by hand; this fails when one is forgotten."""
    setuptools = _pyproject()["tool"]["setuptools"]
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "estbench").rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == on_disk | {"estbench.case_files"}
    assert setuptools["package-dir"] == {"estbench.case_files": "cases"}
    assert "ruff" in " ".join(_pyproject()["project"]["optional-dependencies"]["test"])


def _git_files(folder: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [line for line in out.stdout.splitlines() if line]


def test_the_wheel_carries_the_seed_nets_and_every_case_file(tmp_path):
    """Build a wheel from a copy of the tracked sources (so the checkout gets no build/) and look
    inside: every tracked file of cases/ and estbench/seed_nets/ must be in it."""
    files = [
        f
        for f in _git_files("estbench") + _git_files("cases") + ["pyproject.toml", "README.md"]
        if (ROOT / f).is_file()
    ]
    for f in files:
        (tmp_path / "src" / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, tmp_path / "src" / f)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]  # isolated, as pip install
    built = subprocess.run(
        [*cmd, "-w", str(tmp_path / "dist"), str(tmp_path / "src")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("estbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "estbench/case_files/" + Path(f).relative_to("cases").as_posix()
        for f in _git_files("cases")
    } | {f for f in _git_files("estbench/seed_nets") + _git_files("estbench/kinds/sbvae")}
    assert expected <= names, sorted(expected - names)
    assert {
        "estbench/seed_nets/psa_5-5-5_chk-1.npz",
        "estbench/seed_nets/psa_5-5-5_chk-100.npz",
        "estbench/seed_nets/README.md",
        "estbench/kinds/sbvae/digits.npz",
        "estbench/kinds/sbvae/README.md",
        "estbench/case_files/bernoulli-toy.npz",
        "estbench/case_files/psa-5-5-5.toml",
        "estbench/shipped.py",
    } <= names
    assert not any(n.startswith("cases/") for n in names)  # only inside the package
