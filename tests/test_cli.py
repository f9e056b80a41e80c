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
    assert usage.returncode == 2 and "invalid choice: 'cauchy'" in usage.stderr
