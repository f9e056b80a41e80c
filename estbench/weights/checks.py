"""Conformance checks of estimators with ``problem = "weights"`` (Bernoulli-weight SBNs).

``estbench.testing.check_estimator`` dispatches here: the core checks feed an SBN ``Problem``,
which a weight estimator cannot read. The checks mirror the core ones on three tiny weight
networks (``check_problems``; the third has the hard-sigmoid weight noise): shape, dtype, finite
values, the same draws under the same seed and other draws under another, chunked drawing, a
zero estimate for an identically zero loss, and the unbiasedness claim against
``estbench.weights.exact_gradient`` in the estimator's own parametrisation
(``result.flat(est.wrt)``, eta or mu). Path estimators are decided exactly
(``paths.path_moments``: enumeration of weights and states, relative error <= 1e-9), the others
statistically with the core test (per-coordinate z with Bonferroni and B_hat / SE(B_hat)),
false-fail rate 2e-3 split over the layer tests; the seeds are fixed.
"""

from __future__ import annotations

import torch

from ..model import get_head
from ..testing import FALSE_FAIL, CheckReport, bias_detected, layer_claims
from .estimators import WeightEstimator, WeightPathEstimator
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
    report: CheckReport, est: WeightEstimator, n_draws: int, seed: int
) -> None:
    """Add every check of a weight estimator to ``report`` (module docstring)."""
    problems = check_problems()
    pr = problems[0]

    def gen(s: int = seed) -> torch.Generator:
        return torch.Generator().manual_seed(s)

    a = est.draw(pr, 16, generator=gen())
    report.add(
        "shape",
        tuple(a.shape) == (16, pr.n_params),
        f"got {tuple(a.shape)}, expected {(16, pr.n_params)}",
    )
    report.add("dtype", a.dtype == pr.X.dtype, f"got {a.dtype}, expected {pr.X.dtype}")
    report.add("finite", bool(torch.isfinite(a).all()), "")
    report.add("same seed, same draws", torch.equal(a, est.draw(pr, 16, generator=gen())), "")
    report.add(
        "another seed, other draws", not torch.equal(a, est.draw(pr, 16, generator=gen(seed + 1)))
    )
    chunked = est.draw(pr, 16, generator=gen(), memory_budget=3 * est.bytes_per_draw(pr))
    report.add(
        "chunked drawing",
        tuple(chunked.shape) == tuple(a.shape) and bool(torch.isfinite(chunked).all()),
        "memory budget of 3 draws",
    )
    worst = float(est.draw(zero_loss_problem(), 64, generator=gen()).abs().max())
    report.add("zero loss gives a zero estimate", worst <= 1e-12, f"max |g| = {worst:.2e}")
    evals = est.evals_per_draw(pr.model)
    report.add("evals_per_draw", evals >= 0 and evals == evals, f"{evals}")
    _check_claim(report, est, problems, n_draws, seed)


def _check_claim(
    report: CheckReport,
    est: WeightEstimator,
    problems: list[WeightProblem],
    n_draws: int,
    seed: int,
) -> None:
    """Every claimed layer unbiased against the exact gradient wrt ``est.wrt``; a claimed-biased
    estimator must show its bias in some unclaimed layer."""
    found: list[str] = []
    n_tests = sum(len(est.unbiased_layers(p.model)) for p in problems)
    alpha = FALSE_FAIL / 2 / max(n_tests, 1)  # unbiasedness_test fails with prob. <= 2 alpha
    what = f", wrt {est.wrt}"
    for i, pr in enumerate(problems):
        exact = exact_gradient(pr.model, pr.X, pr.Y).layer_vectors(est.wrt)
        claimed = est.unbiased_layers(pr.model)
        gen = torch.Generator().manual_seed(seed + 1000 * i)
        if isinstance(est, WeightPathEstimator):
            means = path_moments(est, pr, context=est.prepare(pr, gen)).layer_means()
            found += layer_claims(
                report, f"wnet{i}", exact, claimed, means=means, alpha=alpha, what=what
            )
        else:
            draws = pr.split(est.draw(pr, n_draws, generator=gen))
            found += layer_claims(
                report, f"wnet{i}", exact, claimed, draws=draws, alpha=alpha, what=what
            )
    if len(est.unbiased_layers(problems[0].model)) < problems[0].model.depth + 1:
        bias_detected(report, found, n_draws)
