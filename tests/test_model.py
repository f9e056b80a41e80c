"""Building blocks of the model: noise functions, heads, state enumeration."""

from __future__ import annotations

import pytest
import torch

from estbench.errors import ModelError
from estbench.kinds.sbn.model import HEADS, NOISES, SBN, flatten_layer, state_bits, unflatten_layer

A = torch.linspace(-3, 3, 61, dtype=torch.float64)


@pytest.mark.parametrize("name", list(NOISES))
def test_noise_is_a_symmetric_cdf_with_its_density(name):
    noise = NOISES[name]
    assert torch.allclose(noise.cdf(-A), 1 - noise.cdf(A), atol=1e-15)
    a = A[(A.abs() - 1).abs() > 1e-3]  # away from the uniform noise's kinks
    h = 1e-6
    fd = (noise.cdf(a + h) - noise.cdf(a - h)) / (2 * h)
    assert torch.allclose(noise.pdf(a), fd, atol=1e-9)
    on = noise.cdf(a) > 0
    assert torch.allclose(noise.hazard(a)[on], (noise.pdf(a) / noise.cdf(a))[on], rtol=1e-12)
    u = torch.tensor([0.1, 0.5, 0.8], dtype=torch.float64)
    assert torch.allclose(noise.cdf(noise.icdf(u)), u, atol=1e-12)


def test_hazard_stays_finite_in_the_tails():
    far = torch.tensor([-800.0, -40.0, 40.0, 800.0], dtype=torch.float64)
    for noise in NOISES.values():
        h = noise.hazard(far)
        assert torch.isfinite(h).all()
    # Inverse Mills ratio ~ -a in the lower tail; logistic hazard -> 1.
    assert float(NOISES["gaussian"].hazard(far)[1]) == pytest.approx(40.0, rel=1e-3)
    assert float(NOISES["logistic"].hazard(far)[0]) == 1.0


@pytest.mark.parametrize("name", list(HEADS))
def test_head_gradient_is_the_derivative_of_its_loss(name):
    head = HEADS[name]
    g = torch.Generator().manual_seed(0)
    K = 1 if name == "logistic" else 3
    z = torch.randn(4, 5, K, generator=g, dtype=torch.float64, requires_grad=True)
    y = {
        "logistic": torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=torch.float64),
        "softmax": torch.tensor([0, 2, 1, 1, 0]),
        "mse": torch.randn(5, K, generator=g, dtype=torch.float64),
    }[name]
    (auto,) = torch.autograd.grad(head.loss(z, y).sum(), z)
    assert torch.allclose(head.grad(z, y), auto, atol=1e-14)


def test_head_losses_have_their_textbook_values():
    z = torch.tensor([[0.3]], dtype=torch.float64)
    assert float(HEADS["logistic"].loss(z, torch.tensor([-1.0]))) == pytest.approx(
        float(torch.log1p(torch.exp(torch.tensor(0.3, dtype=torch.float64)))), rel=1e-12
    )
    zs = torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64)
    ce = HEADS["softmax"].loss(zs, torch.tensor([1]))
    assert float(ce) == pytest.approx(-float(torch.log_softmax(zs, -1)[0, 1]), rel=1e-12)
    se = HEADS["mse"].loss(zs, torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))
    assert float(se) == pytest.approx(4.25)


def test_targets_are_validated():
    with pytest.raises(ModelError, match=r"labels in \{-1, \+1\}, found 0.0 at index 1"):
        HEADS["logistic"].targets(torch.tensor([1.0, 0.0]), 1)
    with pytest.raises(ModelError, match=r"integer labels in 0..2, found 3.0 at index 0"):
        HEADS["softmax"].targets(torch.tensor([3.0, 0.0]), 3)
    with pytest.raises(ModelError, match=r"shape \[N, 2\], got \[3, 3\]"):
        HEADS["mse"].targets(torch.zeros(3, 3), 2)


def test_state_order_puts_unit_zero_on_the_top_bit():
    assert state_bits(3).tolist() == [
        [0, 0, 0],
        [0, 0, 1],
        [0, 1, 0],
        [0, 1, 1],
        [1, 0, 0],
        [1, 0, 1],
        [1, 1, 0],
        [1, 1, 1],
    ]


def test_flattening_is_row_major_weights_then_bias():
    W = torch.arange(6.0).reshape(2, 3)
    b = torch.tensor([10.0, 11.0])
    v = flatten_layer(W, b)
    assert v.tolist() == [0, 1, 2, 3, 4, 5, 10, 11]
    W2, b2 = unflatten_layer(v, 2, 3)
    assert torch.equal(W2, W) and torch.equal(b2, b)


def test_inconsistent_shapes_are_rejected():
    W0, b0 = torch.zeros(3, 2), torch.zeros(3)
    with pytest.raises(ModelError, match=r"W1 has shape \[1, 4\], expected \[\*, 3\]"):
        SBN((W0, torch.zeros(1, 4)), (b0, torch.zeros(1)))
    with pytest.raises(ModelError, match=r"b1 has shape \[2\], expected \[1\]"):
        SBN((W0, torch.zeros(1, 3)), (b0, torch.zeros(2)))
    with pytest.raises(ModelError, match="unknown coding 'binary'"):
        SBN((W0, torch.zeros(1, 3)), (b0, torch.zeros(1)), coding="binary")  # type: ignore[arg-type]
