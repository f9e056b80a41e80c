"""The seed authors' trained 5-5-5 networks: estbench's exact values against theirs (1e-10)."""

from __future__ import annotations

import numpy as np
import pytest

from estbench.kinds.sbn.checkpoint import load_checkpoint
from estbench.kinds.sbn.exact import exact_gradient


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_exact_values_match_the_authors(seed_checkpoint):
    ckpt = load_checkpoint(seed_checkpoint)
    model = ckpt.model(coding="01", noise="logistic", head="logistic")
    assert model.widths == (5, 5, 5)
    X, Y = ckpt.data()
    result = exact_gradient(model, X, Y)
    ref = ckpt.extra
    assert float(result.loss) == pytest.approx(float(ref["exact_loss"]), rel=1e-10)
    assert rel(result.loss_per_point.numpy(), ref["exact_loss_per_point"]) < 1e-10
    for k, (gW, gb) in enumerate(result.grads):
        assert rel(gW.numpy(), ref[f"exact_grad_W{k}"]) < 1e-10, f"W{k}"
        assert rel(gb.numpy(), ref[f"exact_grad_b{k}"]) < 1e-10, f"b{k}"
    for k, v in enumerate(result.layer_vectors()):
        assert rel(v.numpy(), ref[f"exact_grad_layer{k}"]) < 1e-10, f"layer{k}"


def test_the_coding_matters_on_the_seed_nets(seed_checkpoint):
    """Negative control: read as pm1, the same arrays are another network with another gradient."""
    ckpt = load_checkpoint(seed_checkpoint)
    X, Y = ckpt.data()
    wrong = exact_gradient(ckpt.model(coding="pm1"), X, Y)
    assert rel(wrong.layer_vectors()[1].numpy(), ckpt.extra["exact_grad_layer1"]) > 0.05


def test_seed_study_reference_numbers():
    """seed-study.md §1: expected NLL 0.7210 (chk-1), 0.6839 (chk-100) and layer gradient norms."""
    from .conftest import seed_net_path

    expected = {
        "psa_5-5-5_chk-1.npz": (0.7210, [0.0088, 0.0100, 0.0116, 0.0885]),
        "psa_5-5-5_chk-100.npz": (0.6839, [0.0047, 0.0059, 0.0097, 0.0533]),
    }
    for name, (loss, norms) in expected.items():
        ckpt = load_checkpoint(seed_net_path(name))
        result = exact_gradient(ckpt.model(), *ckpt.data())
        assert round(float(result.loss), 4) == loss
        assert [round(float(v.norm()), 4) for v in result.layer_vectors()] == norms
