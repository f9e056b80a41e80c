"""Checkpoint files: round trip, and an error naming the key and shapes for each kind of mistake."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from estbench.checkpoint import load_checkpoint, save_checkpoint
from estbench.errors import CheckpointError
from estbench.exact import exact_gradient

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
