"""What estbench ships as package data: the seed authors' networks and the case files.

* The two trained 5-5-5 networks of the PSA study (``estbench/seed_nets/``, provenance in its
  README.md) are addressed by short names, ``seed:chk-1`` and ``seed:chk-100``, wherever a
  checkpoint path is accepted: ``--checkpoint``, ``model.checkpoint`` and ``data.path`` in a case
  file, ``load_checkpoint``, ``load_data`` and the weight loader.
* The case files are the repository's top-level ``cases/`` folder, installed as the package
  ``estbench.case_files`` (``[tool.setuptools] package-dir`` in pyproject.toml), so a wheel carries
  them without a second copy in the source tree.

Why one module: the CLI (``estbench checkpoints``, ``estbench cases``), the case loader and the
Python loaders all resolve names here, so a name works everywhere or nowhere, and what
``estbench checkpoints`` lists is exactly what the loaders accept. Files are found with
``importlib.resources``, i.e. where the installed package lives, so an installed wheel works from
any working directory.
"""

from __future__ import annotations

import importlib.resources
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError, EstbenchError

SEED_PREFIX = "seed:"
SEED_NETS_PACKAGE = "estbench.seed_nets"
CASES_PACKAGE = "estbench.case_files"


@dataclass(frozen=True)
class ShippedCheckpoint:
    """One shipped network: its short name, its file in ``estbench/seed_nets/``, the architecture
    (input-hidden-output widths and the model conventions it must be read with) and what it is."""

    name: str
    file: str
    architecture: str
    description: str

    @property
    def path(self) -> Path:
        return seed_nets_dir() / self.file


_SEED_ARCH = "2-5-5-5-1, {0,1} states, logistic noise, logistic head; 200 points (X, Y)"
SEED_CHECKPOINTS: tuple[ShippedCheckpoint, ...] = (
    ShippedCheckpoint(
        "seed:chk-1",
        "psa_5-5-5_chk-1.npz",
        _SEED_ARCH,
        "PSA study (Shekhovtsov, Yanush & Flach, NeurIPS 2020): the authors' network after "
        "1 epoch of REINFORCE training, with their exact loss, gradients and expectations",
    ),
    ShippedCheckpoint(
        "seed:chk-100",
        "psa_5-5-5_chk-100.npz",
        _SEED_ARCH,
        "PSA study (Shekhovtsov, Yanush & Flach, NeurIPS 2020): the same run after 100 epochs "
        "(the study's chk-100 figures), with the authors' exact values",
    ),
)


def _on_disk(resource: Any, package: str) -> Path:
    """A package-data folder as a file-system path: the loaders, ``np.load`` and relative paths
    inside case files need real files, which every ordinary (unzipped) installation has."""
    if not isinstance(resource, Path):
        raise EstbenchError(
            f"{package}: package data is not on the file system ({resource}); expected estbench "
            "installed as files (pip install), not imported from a zip archive"
        )
    return resource


def seed_nets_dir() -> Path:
    """The installed folder of the seed networks."""
    return _on_disk(importlib.resources.files(SEED_NETS_PACKAGE), SEED_NETS_PACKAGE)


def is_shipped_name(value: str | Path) -> bool:
    """Whether ``value`` is a ``seed:`` name rather than a path (a name is never resolved
    relative to a case file or the working directory)."""
    return str(value).startswith(SEED_PREFIX)


def shipped_checkpoint(name: str) -> ShippedCheckpoint:
    """The catalogue entry of a ``seed:`` name; an unknown name lists the known ones."""
    for entry in SEED_CHECKPOINTS:
        if entry.name == name:
            return entry
    known = ", ".join(e.name for e in SEED_CHECKPOINTS)
    raise CheckpointError(
        f"unknown shipped checkpoint {name!r}; expected one of {known} "
        "(`estbench checkpoints` lists them), or a path to an .npz file"
    )


def resolve_checkpoint(value: str | Path) -> Path:
    """The file behind a checkpoint argument: a ``seed:`` name's installed file, else the path."""
    if is_shipped_name(value):
        return shipped_checkpoint(str(value)).path
    return Path(value)


def checkpoint_stem(value: str | Path) -> str:
    """The stem that names a run on this checkpoint (``<case>@<stem>``): a ``seed:`` name gives
    its file's stem, so ``seed:chk-100`` and the file's path name the same results directory."""
    if is_shipped_name(value):
        return Path(shipped_checkpoint(str(value)).file).stem
    return Path(value).stem


# ---- case files ---------------------------------------------------------------------------


def cases_dir() -> Path:
    """The installed folder of the shipped case files (package ``estbench.case_files``).

    Falls back to the ``cases/`` folder beside the package only when that package cannot be
    imported: a source checkout put on ``sys.path`` by hand (``PYTHONPATH=checkout``) without an
    installation that maps it. Installed estbench (wheel or editable) always takes the first
    branch, so the cases found are those of the installed package.
    """
    try:
        resource = importlib.resources.files(CASES_PACKAGE)
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "cases"
    return _on_disk(resource, CASES_PACKAGE)


@dataclass(frozen=True)
class ShippedCase:
    name: str
    path: Path
    summary: str  # the first line of the case's description


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise EstbenchError(f"{path}: cannot read the case file: {e}") from None


def shipped_cases() -> list[ShippedCase]:
    """Every shipped case, sorted by name, with the first line of its description."""
    out = []
    for path in sorted(cases_dir().glob("*.toml"), key=lambda p: p.stem):
        description = _read_toml(path).get("description", "")
        lines = str(description).strip().splitlines()
        out.append(ShippedCase(path.stem, path, lines[0].rstrip(" \\") if lines else ""))
    return out


def shipped_case_path(name: str) -> Path:
    """The file of a shipped case; an unknown name lists the shipped ones."""
    path = cases_dir() / f"{name}.toml"
    if not path.is_file():
        names = ", ".join(c.name for c in shipped_cases())
        raise EstbenchError(
            f"unknown case {name!r}; shipped cases: {names} (or give a path to a .toml file)"
        )
    return path


def _referenced_files(path: Path) -> list[str]:
    """Relative file paths a case refers to (``model.checkpoint``, ``data.path``): they are
    resolved next to the case file, so a copy of the case needs a copy of them."""
    raw = _read_toml(path)
    refs = []
    for table, key in (("model", "checkpoint"), ("data", "path")):
        value = raw.get(table, {}).get(key) if isinstance(raw.get(table), dict) else None
        if isinstance(value, str) and not is_shipped_name(value) and not Path(value).is_absolute():
            refs.append(value)
    return refs


def copy_case(name: str, dest: str | Path | None = None) -> list[Path]:
    """Copy shipped case ``name`` (and the data files it refers to by a relative path) to
    ``dest``: a folder (the file keeps its name; the default is the working directory) or a
    ``.toml`` path. Nothing is overwritten: if any target exists, nothing is copied.
    Returns the written paths, the case file first."""
    source = shipped_case_path(name)
    target = Path(dest) if dest is not None else Path()
    if target.suffix != ".toml" or target.is_dir():
        target = target / source.name
    pairs = [(source, target)]
    for ref in _referenced_files(source):
        data = source.parent / ref
        if not data.is_file():
            raise EstbenchError(f"{source}: refers to {ref}, which is not installed")
        pairs.append((data, target.parent / ref))
    for _, out in pairs:
        if out.exists():
            raise EstbenchError(
                f"{out}: already exists; expected a path that does not (not overwriting it)"
            )
    for src, out in pairs:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out)
    return [out for _, out in pairs]
