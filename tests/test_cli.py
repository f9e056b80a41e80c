"""The command line: exact values as JSON, human output, and errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from estbench import __version__
from estbench.cli import main

from .conftest import seed_net_path

CHK100 = "psa_5-5-5_chk-100.npz"


def test_exact_json_matches_the_authors(capsys):
    path = seed_net_path(CHK100)
    assert main(["exact", "--checkpoint", str(path), "--coding", "01", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = np.load(path)
    assert out["loss"] == pytest.approx(float(ref["exact_loss"]), rel=1e-10)
    assert list(out["grad"]) == ["layer0", "layer1", "layer2", "layer3"]
    for k in range(4):
        got, want = np.array(out["grad"][f"layer{k}"]), ref[f"exact_grad_layer{k}"]
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-10


def test_exact_human_output(capsys):
    assert main(["exact", "--checkpoint", str(seed_net_path(CHK100))]) == 0
    out = capsys.readouterr().out
    assert "SBN 2-5-5-5-1, coding 01, noise logistic, head logistic; 200 data points" in out
    assert "exact objective  0.68386822890769" in out
    assert "layer3  dW [1, 5]  db [1]  |g| = 5.327141e-02" in out


def test_data_from_another_file(tmp_path, capsys):
    ref = np.load(seed_net_path(CHK100))
    data = tmp_path / "data.npz"
    np.savez(data, X=ref["X"][:10], Y=ref["Y"][:10])
    assert (
        main(["exact", "--checkpoint", str(seed_net_path(CHK100)), "--data", str(data), "--json"])
        == 0
    )
    expected = float(np.mean(ref["exact_loss_per_point"][:10]))
    assert json.loads(capsys.readouterr().out)["loss"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--memory-budget", "10KiB"], "over the memory budget of 10.00 KiB"),
        (["--head", "softmax"], "softmax head needs at least 2 outputs"),
    ],
)
def test_errors_are_one_line(capsys, extra, message):
    assert main(["exact", "--checkpoint", str(seed_net_path(CHK100)), *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("estbench: error: ") and message in err and "Traceback" not in err


def test_module_entry_point_and_bad_file(tmp_path):
    run = [sys.executable, "-m", "estbench"]
    version = subprocess.run([*run, "--version"], capture_output=True, text=True, check=True)
    lines = version.stdout.splitlines()
    assert lines[0] == f"estbench {__version__}"
    assert "plugin estbench-example-plugin 0.1.0" in lines[1:]
    missing = subprocess.run(
        [*run, "exact", "--checkpoint", str(tmp_path / "x.npz")], capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert missing.stderr == f"estbench: error: {tmp_path / 'x.npz'}: no such checkpoint file\n"
    usage = subprocess.run(
        [*run, "exact", "--checkpoint", "a.npz", "--noise", "cauchy"],
        capture_output=True,
        text=True,
    )
    assert usage.returncode == 1 and "invalid choice: 'cauchy'" in usage.stderr
    assert usage.stderr.count("\n") == 1 and usage.stderr.startswith("estbench: error:")


def _weight_checkpoint(tmp_path):
    import torch

    from estbench.kinds.weights import random_weight_sbn, save_weight_checkpoint

    g = torch.Generator().manual_seed(4)
    model = random_weight_sbn(
        2, (3, 2), 1, generator=g, kinds=("real", "bernoulli", "real"), coding="pm1"
    )
    X = torch.randn(6, 2, generator=g, dtype=torch.float64)
    Y = torch.tensor([1.0, -1, 1, 1, -1, -1], dtype=torch.float64)
    path = tmp_path / "w.npz"
    save_weight_checkpoint(path, model, X, Y)
    return path, model, X, Y


def test_exact_reads_a_weight_checkpoint(tmp_path, capsys):
    """A stochastic-weight checkpoint gets the weight solver with its stored settings: the
    JSON equals exact_gradient wrt eta and mu; the human output names d eta and d mu."""
    from estbench.kinds.weights import exact_gradient as weight_exact_gradient

    path, model, X, Y = _weight_checkpoint(tmp_path)
    ref = weight_exact_gradient(model, X, Y)
    assert main(["exact", "--checkpoint", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["loss"] == pytest.approx(float(ref.loss), rel=1e-14)
    for wrt, key in (("eta", "grad"), ("mu", "grad_mu")):
        got = np.concatenate([out[key][f"layer{k}"] for k in range(3)])
        assert np.allclose(got, ref.flat(wrt).numpy(), rtol=1e-13, atol=1e-16)
    assert not np.allclose(out["grad"]["layer1"], out["grad_mu"]["layer1"])
    assert main(["exact", "--checkpoint", str(path)]) == 0
    text = capsys.readouterr().out
    assert (
        "coding pm1" in text
        and "layer1  d eta [2, 3]  d mu [2, 3]  db [2]" in text
        and "d mu = " in text
    )


def test_exact_refuses_options_that_contradict_a_weight_checkpoint(tmp_path, capsys):
    path, *_ = _weight_checkpoint(tmp_path)
    assert main(["exact", "--checkpoint", str(path), "--coding", "01"]) == 1
    err = capsys.readouterr().err
    assert "--coding 01 contradicts the weight checkpoint, which stores 'pm1'" in err
    assert main(["exact", "--checkpoint", str(path), "--coding", "pm1"]) == 0


def test_parser_names_agree_with_the_modules():
    from estbench import device, options
    from estbench.kinds.sbn import model

    assert options.CODING_NAMES == model.CODINGS
    assert tuple(model.NOISES) == options.NOISE_NAMES
    assert tuple(model.HEADS) == options.HEAD_NAMES
    assert options.DEVICE_NAMES == device.DEVICES
    assert tuple(device.DTYPES) == options.DTYPE_NAMES


@pytest.mark.parametrize("args", [["--help"], ["cases"], ["checkpoints"]])
def test_commands_that_compute_nothing_do_not_import_torch(args):
    code = (
        "import runpy, sys; sys.argv = ['estbench', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('estbench', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True)


def test_lazy_package_attributes():
    import estbench

    for name in estbench.__all__:
        assert getattr(estbench, name) is not None
    assert set(estbench.__all__) <= set(dir(estbench))
    with pytest.raises(AttributeError, match="no_such_name"):
        estbench.no_such_name  # noqa: B018


def _run_list(env: dict[str, str]) -> tuple[str, bool]:
    """``estbench list --json`` in a new interpreter: its output, and whether it imported torch."""
    code = (
        "import runpy, sys; sys.argv = ['estbench', 'list', '--json']\n"
        "try:\n    runpy.run_module('estbench', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    return done.stdout, done.stderr.splitlines()[-1] == "torch imported: True"


def test_list_is_cached_and_a_warm_list_imports_no_torch(tmp_path):
    import os

    env = {**os.environ, "ESTBENCH_CACHE_DIR": str(tmp_path / "cache")}
    cold, cold_torch = _run_list(env)
    warm, warm_torch = _run_list(env)
    assert cold_torch and not warm_torch
    assert warm == cold and json.loads(warm)[0]["name"]
    # a damaged cache is rebuilt, not trusted
    (tmp_path / "cache" / "catalogue.json").write_text("{not json", encoding="utf-8")
    again, again_torch = _run_list(env)
    assert again == cold and again_torch
    assert json.loads((tmp_path / "cache" / "catalogue.json").read_text())["catalogue"]["rows"]


def test_the_catalogue_fingerprint_follows_the_code(tmp_path, monkeypatch):
    from estbench import catalogue

    package = tmp_path / "fakepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "est.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class EP:
        name, value, dist = "fake", "fakepkg.est:X", None

    monkeypatch.setattr(catalogue.importlib.metadata, "entry_points", lambda group: [EP()])
    first = catalogue.fingerprint(True)
    assert catalogue.fingerprint(True) == first
    assert catalogue.fingerprint(False) != first  # plugins on and off list different rows
    (package / "est.py").write_text("X = 22\n")  # an edit changes size (and mtime)
    assert catalogue.fingerprint(True) != first
    second = catalogue.fingerprint(True)
    (package / "sub").mkdir()
    (package / "sub" / "more.py").write_text("")
    assert catalogue.fingerprint(True) != second  # a new module


def test_list_works_when_the_cache_cannot_be_written(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("ESTBENCH_CACHE_DIR", str(blocker / "cache"))  # under a file: unwritable
    assert main(["list"]) == 0
    assert "reinforce" in capsys.readouterr().out
