"""The exact objective and gradient against brute-force joint enumeration and finite differences."""

from __future__ import annotations

import itertools

import pytest
import torch

from estbench.errors import MemoryBudgetError, ModelError
from estbench.kinds.sbn.exact import exact_gradient, exact_loss, plan_exact
from estbench.kinds.sbn.model import convert_coding, flatten_layers
from estbench.options import parse_bytes

from .conftest import random_problem
from .oracle import joint_enumeration

# 24 networks: every noise x coding x head, with depths 1-4 and widths 1-5 cycling through them.
SHAPES = [(3,), (2, 4), (5, 1, 3), (1, 2, 3, 2), (4, 3), (2, 5, 2), (3, 3, 3, 1), (5,), (1, 4, 4)]
CASES = [
    (i, SHAPES[i % len(SHAPES)], noise, coding, head)
    for i, (noise, coding, head) in enumerate(
        itertools.product(
            ("logistic", "gaussian", "uniform"), ("pm1", "01"), ("logistic", "softmax", "mse")
        )
    )
] + [(18 + j, shape, "logistic", "pm1", "softmax") for j, shape in enumerate(SHAPES[3:9])]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_case_grid_covers_the_required_space():
    assert len(CASES) >= 20
    shapes = [c[1] for c in CASES]
    assert {len(s) for s in shapes} == {1, 2, 3, 4}
    assert {n for s in shapes for n in s} == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(
    ("seed", "widths", "noise", "coding", "head"),
    CASES,
    ids=[f"{c[2]}-{c[3]}-{c[4]}-{'x'.join(map(str, c[1]))}" for c in CASES],
)
def test_matches_joint_enumeration(seed, widths, noise, coding, head):
    model, X, Y = random_problem(
        widths, seed=seed, coding=coding, noise=noise, head=head, input_dim=3, n_points=7
    )
    got = exact_gradient(model, X, Y)
    loss, per_point, pairs = joint_enumeration(model, X, Y)
    assert rel_err(got.loss, loss) < 1e-12
    assert rel_err(got.loss_per_point, per_point) < 1e-12
    for k, (g, o) in enumerate(zip(got.layer_vectors(), flatten_layers(pairs), strict=True)):
        assert o.norm() > 1e-6, f"layer{k} has a vanishing gradient; pick another seed"
        assert rel_err(g, o) < 1e-12, f"layer{k}"


def test_oracle_comparison_detects_a_wrong_coding():
    """Negative control: the same weights read in the other coding give another gradient."""
    model, X, Y = random_problem((3, 3), seed=5)
    wrong = model.replace(coding="01")
    got = exact_gradient(wrong, X, Y)
    _, _, pairs = joint_enumeration(model, X, Y)
    assert rel_err(got.layer_vectors()[1], flatten_layers(pairs)[1]) > 1e-2


@pytest.mark.parametrize("noise", ["logistic", "gaussian", "uniform"])
@pytest.mark.parametrize("coding", ["pm1", "01"])
def test_matches_central_finite_differences(noise, coding):
    model, X, Y = random_problem((3, 4, 2), seed=11, coding=coding, noise=noise, head="softmax")
    grads = exact_gradient(model, X, Y).grads
    h = 1e-5
    params = [p for pair in zip(model.weights, model.biases, strict=True) for p in pair]
    checked = 0
    for index, p in enumerate(params):
        g = grads[index // 2][index % 2]
        for i in range(p.numel()):
            flat = p.view(-1)
            old = flat[i].item()
            flat[i] = old + h
            up = exact_loss(model, X, Y)
            flat[i] = old - h
            down = exact_loss(model, X, Y)
            flat[i] = old
            fd = (up - down) / (2 * h)
            assert abs(float(fd - g.view(-1)[i])) < 1e-8, (
                index,
                i,
                float(fd),
                float(g.view(-1)[i]),
            )
            checked += 1
    assert checked == sum(model.layer_sizes)


def test_codings_describe_the_same_network():
    """pm1 (W, c) and 01 (2W, c - W 1) have the same objective; gradients follow the chain rule."""
    pm1, X, Y = random_problem((3, 2, 3), seed=3, head="mse")
    b01 = convert_coding(pm1, "01")
    assert torch.allclose(convert_coding(b01, "pm1").weights[2], pm1.weights[2], atol=0, rtol=1e-15)
    r_pm, r_01 = exact_gradient(pm1, X, Y), exact_gradient(b01, X, Y)
    assert abs(float(r_pm.loss - r_01.loss)) < 1e-14
    # J01(W', c') = Jpm(W'/2, c' + W' 1 / 2)  =>  dJ01/dW' = dJpm/dW / 2 + dJpm/dc 1^T / 2.
    for k in range(1, pm1.depth + 1):
        gW, gc = r_pm.grads[k]
        n_in = gW.shape[1]
        expected = gW / 2 + gc[:, None].expand(-1, n_in) / 2
        assert torch.allclose(r_01.grads[k][0], expected, atol=1e-15, rtol=1e-12)
        assert torch.allclose(r_01.grads[k][1], gc, atol=1e-15, rtol=1e-12)
    assert torch.allclose(r_01.grads[0][0], r_pm.grads[0][0], atol=1e-15, rtol=1e-12)


def test_row_blocks_give_the_same_result():
    model, X, Y = random_problem((6, 7, 6), seed=8, head="softmax", n_points=5)
    whole = exact_gradient(model, X, Y)
    plan = plan_exact(model.widths, 5, 3, memory_budget=1 << 30)
    assert plan.block_rows == 2**7
    tight = plan.data_bytes + 2 * 8 * 2**7 * 5  # room for 5 rows of the widest table
    assert plan_exact(model.widths, 5, 3, memory_budget=tight).block_rows == 5
    blocked = exact_gradient(model, X, Y, memory_budget=tight)
    assert float(blocked.loss) == pytest.approx(float(whole.loss), rel=1e-14)
    for a, b in zip(blocked.layer_vectors(), whole.layer_vectors(), strict=True):
        assert rel_err(a, b) < 1e-13


def test_memory_guard_refuses_before_allocating():
    with pytest.raises(MemoryBudgetError) as info:
        plan_exact((12, 20, 12), 100, 1, memory_budget=1 << 30)
    message = str(info.value)
    assert "[12, 20, 12]" in message and "100 data points" in message
    needed = 8 * 100 * (2**12 + 2**20 + 2**12 + 3 * 2**20 + 2**12 * 4)
    assert f"({needed + 2 * 8 * 2**32} bytes" in message
    assert "memory budget of 1.00 GiB" in message


def test_memory_guard_fires_from_exact_gradient(monkeypatch):
    model, X, Y = random_problem((4, 4), seed=1)
    monkeypatch.setenv("ESTBENCH_MEMORY_BUDGET", "1KiB")
    with pytest.raises(MemoryBudgetError, match=r"widths \[4, 4\] with 6 data points"):
        exact_gradient(model, X, Y)
    assert exact_gradient(model, X, Y, memory_budget=1 << 20).loss > 0


def test_depth_one_is_a_single_product_distribution():
    """L = 1: E[l] = sum_t prod_j F(+-a_j) l(t), checked in closed form for one unit."""
    model, X, Y = random_problem((1,), seed=2, coding="01", n_points=4)
    a = X @ model.weights[0].T + model.biases[0]
    p = torch.sigmoid(a[:, 0])
    z1, z0 = model.weights[1][0, 0] + model.biases[1][0], model.biases[1][0]
    loss = p * torch.nn.functional.softplus(-Y * z1) + (1 - p) * torch.nn.functional.softplus(
        -Y * z0
    )
    assert float(exact_loss(model, X, Y)) == pytest.approx(float(loss.mean()), rel=1e-14)


def test_bad_data_is_a_clear_error():
    model, X, Y = random_problem((2, 2), seed=4)
    with pytest.raises(ModelError, match=r"X must have shape \[N, 2\], got \[6, 3\]"):
        exact_gradient(model, torch.zeros(6, 3, dtype=torch.float64), Y)
    with pytest.raises(ModelError, match="labels in"):
        exact_gradient(model, X, Y * 3)


def test_parse_bytes():
    assert parse_bytes("2GiB") == 2 << 30
    assert parse_bytes("512 MiB") == 512 << 20
    assert parse_bytes("1000") == 1000
    with pytest.raises(ValueError, match="size in bytes"):
        parse_bytes("lots")
