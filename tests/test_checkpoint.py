"""Checkpoint files: round trip, and an error naming the key and shapes for each kind of mistake."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from estbench.errors import CheckpointError
from estbench.kinds.sbn.checkpoint import load_checkpoint, save_checkpoint
from estbench.kinds.sbn.exact import exact_gradient

from .conftest import random_problem


def _arrays(**changes):
    rng = np.random.default_rng(0)
    arrays = {
        "W0": rng.normal(size=(3, 2)),
        "b0": rng.normal(size=3),
        "W1": rng.normal(size=(4, 3)),
        "b1": rng.normal(size=4),
        "W2": rng.normal(size=(1, 4)),
        "b2": rng.normal(size=1),
        "X": rng.normal(size=(5, 2)),
        "Y": np.ones((5, 1)),
    }
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def _write(tmp_path, **changes):
    path = tmp_path / "net.npz"
    np.savez(path, **_arrays(**changes))
    return path


def test_round_trip_keeps_network_and_data(tmp_path):
    model, X, Y = random_problem((3, 2), seed=0, coding="01", head="softmax")
    path = tmp_path / "m.npz"
    save_checkpoint(path, model, X, Y)
    ckpt = load_checkpoint(path)
    again = ckpt.model(coding="01", head="softmax")
    assert all(torch.equal(a, b) for a, b in zip(again.weights, model.weights, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(again.biases, model.biases, strict=True))
    X2, Y2 = ckpt.data()
    assert torch.equal(X2, X) and torch.equal(Y2, Y)
    assert float(exact_gradient(again, X2, Y2).loss) == float(exact_gradient(model, X, Y).loss)
    assert not list(tmp_path.glob("*.tmp"))


def test_loads_a_well_formed_file(tmp_path):
    ckpt = load_checkpoint(_write(tmp_path, exact_loss=np.array(0.5)))
    assert [W.shape for W in ckpt.weights] == [(3, 2), (4, 3), (1, 4)]
    assert set(ckpt.extra) == {"exact_loss"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"b1": None}, r"missing key b1"),
        ({"W1": np.zeros((4, 5))}, r"key W1 has shape \[4, 5\], expected \[4, 3\]"),
        ({"b0": np.zeros(2)}, r"key b0 has shape \[2\], expected \[3\]"),
        ({"W2": np.zeros(4)}, r"key W2 has shape \[4\], expected a 2-d"),
        ({"X": np.zeros((5, 3))}, r"key X has shape \[5, 3\], expected \[N, 2\]"),
        ({"Y": np.zeros((4, 1))}, r"key Y has shape \[4, 1\], expected \[5\] or \[5, k\]"),
        ({"Y": None}, r"has X without Y"),
        ({"w3": np.zeros((1, 4))}, r"unexpected key 'w3'"),
        ({"W1": np.full((4, 3), np.nan)}, r"key W1 must hold finite numbers"),
    ],
)
def test_malformed_files_name_the_problem(tmp_path, changes, message):
    path = _write(tmp_path, **changes)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable .npz"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "absent.npz")
    no_params = tmp_path / "empty.npz"
    np.savez(no_params, X=np.zeros((2, 2)))
    with pytest.raises(CheckpointError, match="no parameters found"):
        load_checkpoint(no_params)


def test_head_must_fit_the_file(tmp_path):
    ckpt = load_checkpoint(_write(tmp_path))
    with pytest.raises(CheckpointError, match="softmax head needs at least 2 outputs"):
        ckpt.model(head="softmax")


# ---- unusable files and data: one-line errors through the command line ----------------------


def _cli_error(capsys, argv):
    """Run the CLI; it must fail with exit 1 and exactly one ``estbench: error:`` line."""
    from estbench.cli import main

    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("estbench: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "allow_pickle" not in err
    return err


def test_a_npy_file_is_not_a_checkpoint(tmp_path, capsys):
    path = tmp_path / "net.npy"
    np.save(path, np.zeros((3, 2)))
    err = _cli_error(capsys, ["exact", "--checkpoint", str(path)])
    assert f"{path}: a .npy file (one array); expected an .npz archive" in err


def test_a_text_file_is_not_a_checkpoint_and_no_pickle_advice(tmp_path, capsys):
    """numpy's own error for a non-zip file advises loading pickles unsafely; never shown."""
    path = tmp_path / "net.npz"
    path.write_text("W0 = 1, 2, 3\n")
    err = _cli_error(capsys, ["exact", "--checkpoint", str(path)])
    assert f"{path}: not a readable .npz file (it does not start like a zip archive)" in err
    with pytest.raises(CheckpointError, match="not a readable .npz"):
        load_checkpoint(path)


def test_an_object_array_is_refused_without_pickle_advice(tmp_path, capsys):
    path = _write(tmp_path, notes=np.array([{"a": 1}], dtype=object))
    err = _cli_error(capsys, ["exact", "--checkpoint", str(path)])
    assert "object (pickled) array" in err


def test_a_checkpoint_with_no_data_points(tmp_path, capsys):
    path = _write(tmp_path, X=np.zeros((0, 2)), Y=np.zeros((0, 1)))
    err = _cli_error(capsys, ["exact", "--checkpoint", str(path)])
    assert f"{path}: keys X, Y hold 0 data points (X has shape [0, 2]); expected at least 1" in err


@pytest.mark.parametrize(
    ("key", "index", "value", "shown"),
    [("X", (3, 1), np.nan, "nan at index [3, 1]"), ("Y", (2, 0), np.inf, "inf at index [2, 0]")],
)
def test_non_finite_data_is_refused_at_load(tmp_path, capsys, key, index, value, shown):
    """Before: `estbench exact` printed NaN gradients and --json wrote bare NaN (not JSON)."""
    arrays = _arrays()
    arrays[key][index] = value
    path = _write(tmp_path, **{key: arrays[key]})
    for argv in (
        ["exact", "--checkpoint", str(path)],
        ["exact", "--checkpoint", str(path), "--json"],
    ):
        err = _cli_error(capsys, argv)
        assert f"{path}: key {key}: expected finite numbers, found {shown}" in err
    with pytest.raises(CheckpointError, match=f"key {key}: expected finite numbers"):
        load_checkpoint(path)


def test_non_finite_data_of_a_data_file_is_refused(tmp_path, capsys):
    net = _write(tmp_path)
    data = tmp_path / "data.npz"
    X = np.zeros((4, 2))
    X[1, 0] = -np.inf
    np.savez(data, X=X, Y=np.ones(4))
    argv = ["exact", "--checkpoint", str(net), "--data", str(data), "--json"]
    err = _cli_error(capsys, argv)
    assert f"{data}: key X: expected finite numbers, found -inf at index [1, 0]" in err
    np.savez(data, X=np.zeros((0, 2)), Y=np.ones(0))
    assert f"{data}: keys X, Y hold 0 data points" in _cli_error(capsys, argv)


@pytest.mark.parametrize("data_file", [False, True])
def test_labels_that_do_not_fit_the_head_name_file_and_key(tmp_path, capsys, data_file):
    Y = np.ones((5, 1))
    Y[0, 0] = 7.0
    net = _write(tmp_path, **({} if data_file else {"Y": Y}))
    argv = ["exact", "--checkpoint", str(net)]
    source = net
    if data_file:
        source = tmp_path / "data.npz"
        np.savez(source, X=np.zeros((5, 2)), Y=Y)
        argv += ["--data", str(source)]
    err = _cli_error(capsys, argv)
    assert err == (
        f"estbench: error: {source}: key Y: the logistic head needs labels in {{-1, +1}}, "
        "found 7.0 at index 0\n"
    )


def test_data_of_the_wrong_width_names_file_and_key(tmp_path, capsys):
    net = _write(tmp_path)
    data = tmp_path / "data.npz"
    np.savez(data, X=np.zeros((4, 3)), Y=np.ones(4))
    err = _cli_error(capsys, ["exact", "--checkpoint", str(net), "--data", str(data)])
    assert f"{data}: key X has shape [4, 3], expected [N, 2] (the network's input width)" in err


def test_non_finite_parameters_name_the_first_bad_index(tmp_path):
    W1 = np.zeros((4, 3))
    W1[2, 1] = np.nan
    with pytest.raises(
        CheckpointError, match=r"key W1 must hold finite numbers, found nan at index \[2, 1\]"
    ):
        load_checkpoint(_write(tmp_path, W1=W1))


def test_weight_checkpoints_refuse_bad_files_and_data(tmp_path, capsys):
    from estbench.kinds.weights import (
        load_weight_checkpoint,
        random_weight_sbn,
        save_weight_checkpoint,
    )

    g = torch.Generator().manual_seed(4)
    model = random_weight_sbn(2, (3, 2), 1, generator=g, kinds=("real", "bernoulli", "real"))
    X = torch.randn(6, 2, generator=g, dtype=torch.float64)
    Y = torch.tensor([1.0, -1, 1, 1, -1, -1], dtype=torch.float64)
    path = tmp_path / "w.npz"
    X[4, 1] = float("nan")
    save_weight_checkpoint(path, model, X, Y)
    with pytest.raises(
        CheckpointError, match=r"key X: expected finite numbers, found nan at index \[4, 1\]"
    ):
        load_weight_checkpoint(path)
    assert f"{path}: key X: expected finite" in _cli_error(
        capsys, ["exact", "--checkpoint", str(path)]
    )
    X[4, 1] = 0.0
    save_weight_checkpoint(path, model, X[:0], Y[:0])
    assert "0 data points" in _cli_error(capsys, ["exact", "--checkpoint", str(path)])
    save_weight_checkpoint(path, model, X, Y * 3)
    err = _cli_error(capsys, ["exact", "--checkpoint", str(path)])
    assert (
        f"{path}: key Y: the logistic head needs labels in {{-1, +1}}, found 3.0 at index 0" in err
    )
    npy = tmp_path / "w.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(CheckpointError, match=r"a \.npy file"):
        load_weight_checkpoint(npy)


def test_a_case_data_set_with_nan_is_refused(tmp_path, capsys):
    """A case's ``data.kind = "npz"`` data set goes through the same checks (estbench/data.py)."""
    from estbench.data import load_dataset

    X = np.zeros((6, 2))
    X[5, 0] = np.nan
    np.savez(tmp_path / "d.npz", X=X, Y=np.ones(6))
    with pytest.raises(
        CheckpointError, match=r"d.npz: key X: expected finite numbers, found nan at index \[5, 0\]"
    ):
        load_dataset(tmp_path / "d.npz")
    case = tmp_path / "c.toml"
    case.write_text(
        'schema_version = 1\n[data]\nkind = "npz"\npath = "d.npz"\n[model]\nwidths = [2]\n'
        '[measure]\nestimators = ["st"]\ndraws = 10\nM = [1]\nbootstrap = 0\n'
    )
    argv = ["run", str(case), "--out", str(tmp_path / "out"), "--no-report", "--no-progress"]
    err = _cli_error(capsys, argv)
    assert f"{tmp_path / 'd.npz'}: key X: expected finite numbers, found nan at index [5, 0]" in err


def test_exact_json_never_writes_nan(capsys):
    """JSON has no NaN: a non-finite result is an error, never the bare token NaN."""
    from estbench.cli import _print_exact
    from estbench.errors import EstbenchError
    from estbench.problem import ExactOutput

    def out(v, values=None):
        return ExactOutput([("layer0", v, [])], values or {})

    with pytest.raises(EstbenchError, match="not finite"):
        _print_exact("h", float("nan"), out(torch.zeros(2)), True)
    assert capsys.readouterr().out == ""
    with pytest.raises(EstbenchError, match="not finite"):
        _print_exact("h", 0.5, out(torch.tensor([1.0, float("inf")])), True)
    assert capsys.readouterr().out == ""
    with pytest.raises(EstbenchError, match="not finite"):
        _print_exact("h", 0.5, out(torch.ones(2), {"log_likelihood": float("-inf")}), True)
    assert capsys.readouterr().out == ""
    _print_exact("h", 0.5, out(torch.ones(2)), True)
    assert json.loads(capsys.readouterr().out) == {"loss": 0.5, "grad": {"layer0": [1.0, 1.0]}}
