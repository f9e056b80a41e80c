"""Conformance checks of estimators with ``problem = "weights"`` (Bernoulli-weight SBNs).

``estbench.testing.check_estimator`` dispatches here: the core checks feed an SBN ``Problem``,
which a weight estimator cannot read. The checks mirror the core ones on three tiny weight
networks (``check_problems``; the third has the hard-sigmoid weight noise), with the same code
(``estbench.testing.run_checks``, ``check_claim``): shape, dtype, finite values, the same draws
under the same seed and, for stochastic estimators, other draws under another, chunked drawing, a
zero estimate for an identically zero loss, and the unbiasedness claim against
``estbench.weights.exact_gradient`` in the estimator's own parametrisation
(``result.flat(est.wrt)``, eta or mu). Path estimators are decided exactly
(``paths.path_moments``: enumeration of weights and states, relative error <= 1e-9), the others
statistically with the core test (per-coordinate z with Bonferroni and B_hat / SE(B_hat)),
false-fail rate 2e-3 split over the layer tests; the seeds are fixed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..estimators.base import Estimator
from ..model import get_head
from ..testing import CheckReport, check_claim, run_checks
from .estimators import WeightPathEstimator
from .exact import exact_gradient
from .model import WeightProblem, WeightSBN, get_activation, random_weight_sbn
from .paths import path_moments


def check_problems() -> list[WeightProblem]:
    """Three tiny weight networks, 3 data points each: 2-2-3-3 with a Bernoulli hidden pair,
    logistic activations, ±1 states and a softmax head (ST-type bias shows everywhere below the
    head); 2-2-2-2 with Bernoulli first and hidden pairs, sign activations, {0, 1} states and
    the mse head (every real parameter feeding a sign has gradient 0); 2-2-2-1 with a Bernoulli
    hidden pair of the hard-sigmoid weight noise (``weight_noise="uniform"``; eta_scale 1, so
    some weights are deterministic), uniform activations, {0, 1} states, the logistic head. At
    most 2^12 joint configurations, so path estimators are decided exactly."""
    out = []
    for seed, widths, kinds, coding, activation, head, K, weight_noise, eta_scale in (
        (
            11,
            (2, 3),
            ("real", "bernoulli", "real"),
            "pm1",
            "logistic",
            "softmax",
            3,
            "logistic",
            1.5,
        ),
        (12, (2, 2), ("bernoulli", "bernoulli", "real"), "01", "sign", "mse", 2, "logistic", 1.5),
        (13, (2, 2), ("real", "bernoulli", "real"), "01", "uniform", "logistic", 1, "uniform", 1.0),
    ):
        g = torch.Generator().manual_seed(seed)
        model = random_weight_sbn(
            2,
            widths,
            K,
            generator=g,
            kinds=kinds,
            eta_scale=eta_scale,
            coding=coding,
            activation=activation,
            head=head,
            weight_noise=weight_noise,
        )
        X = torch.randn(3, 2, generator=g, dtype=torch.float64)
        if head == "softmax":
            Y = torch.tensor([0.0, 2.0, 1.0])
        elif head == "logistic":
            Y = torch.tensor([1.0, -1.0, 1.0])
        else:
            Y = torch.randn(3, K, generator=g, dtype=torch.float64)
        out.append(WeightProblem.create(model, X, Y))
    return out


def zero_loss_problem() -> WeightProblem:
    """Squared error with zero read-out weights and the bias at the target: l = 0 everywhere."""
    g = torch.Generator().manual_seed(7)
    base = random_weight_sbn(2, (3, 2), 2, generator=g, coding="pm1", head="mse")
    target = torch.tensor([0.5, -1.0], dtype=torch.float64)
    model = WeightSBN(
        (*base.params[:-1], torch.zeros(2, 2, dtype=torch.float64)),
        (*base.biases[:-1], target),
        base.kinds,
        "pm1",
        get_activation("logistic"),
        get_head("mse"),
    )
    X = torch.randn(3, 2, generator=g, dtype=torch.float64)
    return WeightProblem.create(model, X, target.expand(3, 2))


def check_weight_estimator(
    report: CheckReport, est: Estimator[WeightProblem, WeightSBN], n_draws: int, seed: int
) -> None:
    """Add every check of a weight estimator to ``report`` (module docstring): the core checks
    (``estbench.testing.run_checks``) on weight networks; whatever the estimator does is a failed
    check, never a crash."""
    problems = check_problems()
    wrt = getattr(est, "wrt", "eta")  # WeightEstimator's; "eta" for any other weights estimator

    def claim() -> None:
        check_claim(
            report,
            est,
            problems,
            n_draws,
            seed,
            exact=lambda pr: exact_gradient(pr.model, pr.X, pr.Y).layer_vectors(wrt),
            path_means=_path_means(est) if isinstance(est, WeightPathEstimator) else None,
            net="wnet",
            what=f", wrt {wrt}",
        )

    run_checks(report, est, problems, zero_loss_problem, seed, claim)


def _path_means(
    est: WeightPathEstimator,
) -> Callable[[WeightProblem, torch.Generator], list[Tensor]]:
    def means(pr: WeightProblem, gen: torch.Generator) -> list[Tensor]:
        return path_moments(est, pr, context=est.prepare(pr, gen)).layer_means()

    return means
