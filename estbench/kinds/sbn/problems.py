"""Small named problems with known answers: the single-Bernoulli toy and the spec's deep anchor net.

* ``bernoulli_toy(theta, t)``: one unit with logit theta (P(b = 1) = sigmoid(theta)), {0,1} states
  and f(b) = (b - t)^2 through an mse head with weight 1 and bias 0, so dJ/db_0 = dJ/dtheta =
  p(1-p)(1-2t) and every closed form of spec §5.1 applies to the gradient of ``b0``. The real
  extension used by straight-through and relaxed estimators is (beta - t)^2 (pitfall P10).
* ``anchor_network()``: the 2-2-3 (+3-class softmax head) network of spec §5.3, +-1 coding,
  logistic noise, one data point, with its exact expected loss 1.3564515629 and the exact
  gradient ``ANCHOR_EXACT_GRADIENT`` of the spec's table (6 decimals).
"""

from __future__ import annotations

import torch

from .model import SBN, Problem, get_head, get_noise


def bernoulli_toy(theta: float, t: float, *, noise: str = "logistic") -> Problem:
    """E_{b ~ Bern(F(theta))} (b - t)^2 as a one-unit SBN; the gradient of interest is db0."""
    f64 = torch.float64
    model = SBN(
        (torch.zeros(1, 1, dtype=f64), torch.ones(1, 1, dtype=f64)),
        (torch.tensor([theta], dtype=f64), torch.zeros(1, dtype=f64)),
        coding="01",
        noise=get_noise(noise),
        head=get_head("mse"),
    )
    return Problem.create(model, torch.zeros(1, 1, dtype=f64), torch.tensor([[t]], dtype=f64))


def anchor_network() -> Problem:
    """Spec §5.3: x0 = (1, -0.5), widths 2 and 3, softmax head over 3 classes, label 0."""
    t = lambda rows: torch.tensor(rows, dtype=torch.float64)  # noqa: E731
    model = SBN(
        (
            t([[0.8, -1.2], [0.5, 0.3]]),
            t([[1.0, -0.7], [-0.6, 0.9], [0.4, 1.1]]),
            t([[1.5, -1.0, 0.5], [-0.5, 0.8, -1.2], [0.3, 0.4, 0.9]]),
        ),
        (t([0.1, -0.4]), t([0.2, 0.0, -0.3]), t([0.0, 0.1, -0.2])),
        coding="pm1",
        noise=get_noise("logistic"),
        head=get_head("softmax"),
    )
    return Problem.create(model, t([[1.0, -0.5]]), t([0.0]))


# Spec §5.3, row "exact g": layer0 = (dW1, db1) and layer1 = (dW2, db2) of the spec, row-major.
ANCHOR_EXACT_GRADIENT = (
    (-0.24342, 0.12171, 0.209016, -0.104508, -0.24342, 0.209016),
    (-0.18209, -0.063167, 0.18105, 0.033929, -0.055059, -0.071528, -0.369738, 0.363451, -0.162989),
)
