"""Shipped package data: the seed networks by ``seed:`` name everywhere a checkpoint is accepted,
``estbench checkpoints``, and the case files (``find_case``, ``estbench cases [--copy]``)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from estbench import load_checkpoint
from estbench.cases import find_case, load_case, parse_case, with_overrides
from estbench.checkpoint import checkpoint_kind, load_data
from estbench.cli import main
from estbench.errors import CheckpointError, EstbenchError
from estbench.kinds.sbn.checkpoint import save_checkpoint
from estbench.kinds.weights import load_weight_checkpoint
from estbench.shipped import (
    SEED_CHECKPOINTS,
    cases_dir,
    checkpoint_stem,
    copy_case,
    resolve_checkpoint,
    seed_nets_dir,
    shipped_cases,
)

ROOT = Path(__file__).resolve().parents[1]
# The exported files as committed; a re-export or a damaged copy changes these.
SHA256 = {
    "psa_5-5-5_chk-1.npz": "82c8b76f43c4723a00f9694e6fc447992bd97554db6a7bc2c0b6ec473c892bdb",
    "psa_5-5-5_chk-100.npz": "f3412bf61982f88e2823dea101491b8834546f8a9dcf2552cca58f45474b008a",
}
EXACT_LOSS = {"seed:chk-1": 0.7209702952557941, "seed:chk-100": 0.6838682289076938}


def _one_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("estbench: error: ") and err.count("\n") == 1, err
    return err


# ---- seed networks ------------------------------------------------------------------------


def test_the_catalogue_matches_the_shipped_files():
    assert [c.name for c in SEED_CHECKPOINTS] == ["seed:chk-1", "seed:chk-100"]
    for c in SEED_CHECKPOINTS:
        assert c.path.parent == seed_nets_dir() and c.path.is_file()
        digest = hashlib.sha256(c.path.read_bytes()).hexdigest()
        assert digest == SHA256[c.file], f"{c.file}: {digest}"
        ckpt = load_checkpoint(c.name)
        widths = [ckpt.weights[0].shape[1], *(W.shape[0] for W in ckpt.weights)]
        assert c.architecture.startswith("-".join(map(str, widths)) + ",")  # 2-5-5-5-1
        assert ckpt.X is not None and f"{ckpt.X.shape[0]} points" in c.architecture
    assert (seed_nets_dir() / "README.md").read_text().count("shekhovt/PSA-Neurips2020") == 1


@pytest.mark.parametrize("name", list(EXACT_LOSS))
def test_python_loaders_accept_seed_names(name):
    entry = next(c for c in SEED_CHECKPOINTS if c.name == name)
    by_name, by_path = load_checkpoint(name), load_checkpoint(entry.path)
    assert by_name.path == entry.path  # errors and records name the real file
    assert all(np.array_equal(a, b) for a, b in zip(by_name.weights, by_path.weights, strict=True))
    assert float(by_name.extra["exact_loss"]) == EXACT_LOSS[name]
    assert checkpoint_kind(name) == "sbn"
    X, Y = load_data(name)
    assert X.shape == (200, 2) and torch.equal(Y, torch.as_tensor(by_path.Y))
    assert resolve_checkpoint(name) == entry.path
    assert checkpoint_stem(name) == Path(entry.file).stem
    with pytest.raises(CheckpointError, match=f"{entry.path}: not a stochastic-binary-weight"):
        load_weight_checkpoint(name)


def test_unknown_names_list_the_known_ones(capsys):
    for load in (load_checkpoint, checkpoint_kind, load_data, load_weight_checkpoint):
        with pytest.raises(CheckpointError, match=r"'seed:chk-2000'; expected one of seed:chk-1,"):
            load("seed:chk-2000")
    err = _one_error(capsys, ["exact", "--checkpoint", "seed:chk-2000"])
    assert "expected one of seed:chk-1, seed:chk-100 (`estbench checkpoints` lists them)" in err


def test_a_seed_name_is_never_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="seed:chk-1: a shipped checkpoint's name"):
        save_checkpoint("seed:chk-1", load_checkpoint("seed:chk-1").model())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", list(EXACT_LOSS))
def test_exact_by_name(capsys, name):
    assert main(["exact", "--checkpoint", name, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["loss"] == pytest.approx(EXACT_LOSS[name], rel=1e-12)
    assert main(["exact", "--checkpoint", "seed:chk-100", "--data", name, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["grad"]) == 4


def test_checkpoints_command(capsys):
    assert main(["checkpoints", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["file"]) for r in rows] == [
        ("seed:chk-1", "psa_5-5-5_chk-1.npz"),
        ("seed:chk-100", "psa_5-5-5_chk-100.npz"),
    ]
    assert all(Path(r["path"]).is_file() and "2-5-5-5-1" in r["architecture"] for r in rows)
    assert "100 epochs" in rows[1]["description"]
    assert main(["checkpoints"]) == 0
    out = capsys.readouterr().out
    assert "seed:chk-1  psa_5-5-5_chk-1.npz\n" in out and "seed:chk-100  psa_5-5-5_chk-100" in out


def test_a_case_file_names_a_seed_network(tmp_path):
    """``model.checkpoint = "seed:chk-100"`` is not joined to the case file's folder (a path
    would be), and measures the shipped network."""
    from estbench.runner import case_checkpoint

    text = """schema_version = 1
[model]
checkpoint = "{}"
[measure]
estimators = ["st"]
"""
    case = parse_case(text.format("seed:chk-100"), name="c", path=tmp_path / "c.toml")
    assert case.model.checkpoint == Path("seed:chk-100")
    model, data = case_checkpoint(case)
    assert model.widths == (5, 5, 5) and data is not None and data[0].shape == (200, 2)
    relative = parse_case(text.format("net.npz"), name="c", path=tmp_path / "c.toml")
    assert relative.model.checkpoint == tmp_path / "net.npz"
    with pytest.raises(CheckpointError, match="unknown shipped checkpoint 'seed:nope'"):
        case_checkpoint(parse_case(text.format("seed:nope"), name="c", path=tmp_path / "c.toml"))


def test_a_case_data_set_by_seed_name(tmp_path):
    from estbench.data import load_dataset

    text = 'schema_version = 1\n[data]\nkind = "npz"\npath = "seed:chk-1"\n[model]\nwidths = [2]\n'
    case = parse_case(text + '[measure]\nestimators = ["st"]\n', name="c", path=tmp_path / "c.toml")
    assert case.data.path == Path("seed:chk-1")
    X, Y = load_dataset(case.data.path)
    assert X.shape == (200, 2) and set(Y.flatten().tolist()) == {-1.0, 1.0}


def test_run_with_an_unknown_seed_name_is_one_line(tmp_path, capsys):
    argv = ["run", "psa-5-5-5", "--checkpoint", "seed:chk-2", "--out", str(tmp_path)]
    err = _one_error(capsys, argv)
    assert (
        "unknown shipped checkpoint 'seed:chk-2'; expected one of seed:chk-1, seed:chk-100" in err
    )
    assert list(tmp_path.iterdir()) == []


def test_a_run_on_a_seed_name_is_named_after_the_file():
    case = with_overrides(load_case("psa-5-5-5"), checkpoint=Path("seed:chk-100"))
    assert case.name == "psa-5-5-5@psa_5-5-5_chk-100"
    assert case.training is None and "checkpoint" not in case.sweep


# ---- case files ---------------------------------------------------------------------------


def test_shipped_cases_are_the_cases_folder():
    names = [c.name for c in shipped_cases()]
    assert names == sorted(p.stem for p in (ROOT / "cases").glob("*.toml"))
    toy = next(c for c in shipped_cases() if c.name == "bernoulli-toy")
    assert toy.summary.startswith("Single Bernoulli toy: E (b - t)^2")
    assert find_case("default") == cases_dir() / "default.toml"


def test_find_case_resolves_names_through_the_installed_package(tmp_path, monkeypatch):
    """A stand-in package ``estbench.case_files`` elsewhere: names resolve there, not in the
    source tree (as in an installed wheel, where no source tree exists)."""
    pkg = tmp_path / "installed"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "only-here.toml").write_text('schema_version = 1\ndescription = "x"\n')
    spec = importlib.util.spec_from_file_location(
        "estbench.case_files", pkg / "__init__.py", submodule_search_locations=[str(pkg)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "estbench.case_files", module)
    assert cases_dir() == pkg
    assert find_case("only-here") == pkg / "only-here.toml"
    with pytest.raises(EstbenchError, match="unknown case 'default'; shipped cases: only-here"):
        find_case("default")


def test_cases_command_lists_every_case(capsys):
    assert main(["cases"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for case in shipped_cases():
        assert any(line.startswith(case.name + " ") for line in lines), case.name
    assert "psa-5-5-5" in out and "Seed study: 5-5-5 SBN" in out
    assert max(len(line) for line in lines[: len(shipped_cases())]) <= 100


def test_copy_a_case_with_its_data_file_and_run_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["cases", "--copy", "bernoulli-toy"]) == 0
    assert "wrote bernoulli-toy.toml\nwrote bernoulli-toy.npz\n" in capsys.readouterr().out
    source = cases_dir()
    for name in ("bernoulli-toy.toml", "bernoulli-toy.npz"):
        assert (tmp_path / name).read_bytes() == (source / name).read_bytes()
    case = load_case("bernoulli-toy.toml")  # the copy, resolving its data next to it
    assert case.model.checkpoint == Path("bernoulli-toy.npz")
    from estbench.runner import case_checkpoint

    model, _ = case_checkpoint(case)
    assert model.widths == (1,)
    written = copy_case("psa-5-5-5", tmp_path / "sub" / "mine.toml")
    assert written == [tmp_path / "sub" / "mine.toml"]
    assert load_case(written[0]).name == "mine"


def test_copy_never_overwrites(tmp_path, capsys):
    (tmp_path / "bernoulli-toy.npz").write_text("mine")
    err = _one_error(capsys, ["cases", "--copy", "bernoulli-toy", str(tmp_path)])
    assert f"{tmp_path / 'bernoulli-toy.npz'}: already exists" in err
    assert not (tmp_path / "bernoulli-toy.toml").exists()  # nothing copied at all
    assert (tmp_path / "bernoulli-toy.npz").read_text() == "mine"


def test_copy_and_cases_errors(tmp_path, capsys):
    err = _one_error(capsys, ["cases", "--copy", "nope", str(tmp_path)])
    assert "unknown case 'nope'; shipped cases: bernoulli-toy, default," in err
    err = _one_error(capsys, ["cases", "default"])
    assert (
        "cases: unexpected argument 'default'; expected none (to list the cases) or --copy" in err
    )
