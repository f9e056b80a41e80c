"""Conformance checks for estimators, public for plugin authors (like scikit-learn's
``check_estimator``)::

    from estbench.testing import check_estimator
    report = check_estimator(MyEstimator())      # raises AssertionError listing failed checks
    report = check_estimator("concrete(tau=0.5)", raise_on_failure=False)

The checks: output shape and dtype; finite values; determinism under a seed (and, for stochastic
estimators, different draws under another seed); chunked drawing; a zero estimate when the loss
is identically zero; and the unbiasedness claim against the exact gradient on two small
depth-3 networks -- every layer the estimator claims unbiased must pass, and a claimed-biased
estimator must show its bias somewhere.

Unbiasedness is decided exactly (enumeration of all paths, no sampling error) for path estimators,
and statistically otherwise, layer by layer: per-coordinate z with Bonferroni plus the aggregate
B_hat / SE(B_hat) (spec §5.2, §6; ``metrics.unbiasedness_test``), with the total false-fail
rate ``FALSE_FAIL`` = 2e-3 split evenly over all layer tests of the check. Seeds are fixed, so the
outcome is reproducible: a correct estimator that passes once keeps passing.

Estimators with ``problem = "weights"`` get the same checks on small Bernoulli-weight networks,
against the exact gradient in their own parametrisation (``estbench.weights.checks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .estimators.base import Estimator, EstimatorError, PathEstimator, Problem
from .estimators.registry import get_estimator
from .exact import exact_gradient
from .exact_moments import path_moments
from .metrics import unbiasedness_test
from .model import SBN, get_head, get_noise, random_sbn

EXACT_TOL = 1e-9  # relative; exact moments of an unbiased path estimator agree to ~1e-14
FALSE_FAIL = 2e-3  # total probability that a correct unbiased estimator fails the check


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


@dataclass
class CheckReport:
    estimator: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def add(self, name: str, passed: bool, detail: str = "") -> None:
        self.results.append(CheckResult(name, bool(passed), detail))

    def format(self) -> str:
        lines = [f"{self.estimator}: {'PASS' if self.passed else 'FAIL'}"]
        lines += [
            f"  [{'ok' if r.passed else 'FAIL'}] {r.name}" + (f": {r.detail}" if r.detail else "")
            for r in self.results
        ]
        return "\n".join(lines)


def check_problems() -> list[Problem]:
    """The two depth-3 networks of the unbiasedness check (logistic noise; the softmax head is
    neither affine nor quadratic, so ST-type bias shows; n_L = 3 so PSA/SA bias shows in layer 0).
    """
    out = []
    for seed, widths, coding, head, K in (
        (101, (3, 3, 3), "pm1", "softmax", 3),
        (202, (2, 3, 3), "01", "mse", 2),
    ):
        g = torch.Generator().manual_seed(seed)
        model = random_sbn(2, widths, K, generator=g, scale=1.3, coding=coding, head=head)
        X = torch.randn(3, 2, generator=g, dtype=torch.float64)
        Y = (
            torch.tensor([0.0, 2.0, 1.0])
            if head == "softmax"
            else torch.randn(3, K, generator=g, dtype=torch.float64)
        )
        out.append(Problem.create(model, X, Y))
    return out


def zero_loss_problem() -> Problem:
    """Squared error with zero read-out weights and the bias at the target: l = 0 everywhere."""
    f64 = torch.float64
    g = torch.Generator().manual_seed(7)
    base = random_sbn(2, (3, 2), 2, generator=g, coding="pm1", head="mse")
    target = torch.tensor([0.5, -1.0], dtype=f64)
    model = SBN(
        (*base.weights[:-1], torch.zeros(2, 2, dtype=f64)),
        (*base.biases[:-1], target),
        coding="pm1",
        noise=get_noise("logistic"),
        head=get_head("mse"),
    )
    return Problem.create(model, torch.randn(3, 2, generator=g, dtype=f64), target.expand(3, 2))


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def layer_claims(
    report: CheckReport,
    net: str,
    exact: list[Tensor],
    claimed: frozenset[int],
    *,
    means: list[Tensor] | None = None,
    draws: list[Tensor] | None = None,
    alpha: float,
    what: str = "",
) -> list[str]:
    """Check every claimed-unbiased layer of one network: exactly from path ``means`` (relative
    bias <= EXACT_TOL) or statistically from ``draws``. Returns the biases found in unclaimed
    layers (for "claimed bias is detected"). Shared by the SBN and the weights checks."""
    found = []
    for k, g in enumerate(exact):
        if means is not None:
            m = means[k]
            err = _rel(m, g) if float(g.norm()) > 0 else float(m.norm())
            passed, detail = err <= EXACT_TOL, f"relative bias {err:.2e}"
            kind, biased = "exact", err > EXACT_TOL
            finding = f"{net} layer{k} (exact relative bias {err:.2e})"
        else:
            test = unbiasedness_test(draws[k], g, alpha=alpha)  # type: ignore[index]
            passed, detail = test.passed, test.describe()
            kind, biased = "statistical", not test.passed
            finding = f"{net} layer{k} ({detail})"
        if k in claimed:
            report.add(f"unbiased ({kind}{what}) {net} layer{k}", passed, detail)
        elif biased:
            found.append(finding)
    return found


def bias_detected(report: CheckReport, found: list[str], n_draws: int) -> None:
    """A claimed-biased estimator must show its bias in some unclaimed layer."""
    report.add(
        "claimed bias is detected",
        bool(found),
        found[0]
        if found
        else f"no bias found in unclaimed layers with {n_draws} draws; is it unbiased?",
    )


def _check_claim(
    report: CheckReport, est: Estimator, problems: list[Problem], n_draws: int, seed: int
) -> None:
    found: list[str] = []
    n_tests = sum(len(est.unbiased_layers(pr.model)) for pr in problems)
    alpha = FALSE_FAIL / 2 / max(n_tests, 1)  # unbiasedness_test fails with prob. <= 2 alpha
    for i, pr in enumerate(problems):
        exact = pr.split(exact_gradient(pr.model, pr.X, pr.Y).flat())
        claimed = est.unbiased_layers(pr.model)
        gen = torch.Generator().manual_seed(seed + 1000 * i)
        if isinstance(est, PathEstimator):
            means = path_moments(est, pr, context=est.prepare(pr, gen)).layer_means()
            found += layer_claims(report, f"net{i}", exact, claimed, means=means, alpha=alpha)
        else:
            draws = pr.split(est.draw(pr, n_draws, generator=gen))
            found += layer_claims(report, f"net{i}", exact, claimed, draws=draws, alpha=alpha)
    if len(est.unbiased_layers(problems[0].model)) < problems[0].model.depth + 1:
        bias_detected(report, found, n_draws)


def check_estimator(
    estimator: Estimator | str,
    *,
    n_draws: int = 20000,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> CheckReport:
    """Run every conformance check; see the module docstring. Returns the report, or raises
    AssertionError with it when a check fails and ``raise_on_failure``."""
    est = get_estimator(estimator) if isinstance(estimator, str) else estimator
    report = CheckReport(est.spec)
    if est.problem == "weights":  # Bernoulli-weight SBNs: the same checks on weight networks
        from .weights.checks import check_weight_estimator

        check_weight_estimator(report, est, n_draws, seed)  # type: ignore[arg-type]
        if raise_on_failure and not report.passed:
            raise AssertionError(report.format())
        return report
    problems = check_problems()
    pr = problems[0]

    def gen(s: int = seed) -> torch.Generator:
        return torch.Generator().manual_seed(s)

    try:
        a = est.draw(pr, 16, generator=gen())
    except EstimatorError as e:
        report.add("draws", False, str(e))
        a = None
    if a is not None:
        report.add(
            "shape",
            tuple(a.shape) == (16, pr.n_params),
            f"got {tuple(a.shape)}, expected {(16, pr.n_params)}",
        )
        report.add("dtype", a.dtype == pr.X.dtype, f"got {a.dtype}, expected {pr.X.dtype}")
        report.add("finite", bool(torch.isfinite(a).all()), "")
        b = est.draw(pr, 16, generator=gen())
        report.add("same seed, same draws", torch.equal(a, b), "")
        if est.stochastic:
            c = est.draw(pr, 16, generator=gen(seed + 1))
            report.add("another seed, other draws", not torch.equal(a, c), "")
        chunked = est.draw(pr, 16, generator=gen(), memory_budget=3 * est.bytes_per_draw(pr))
        report.add(
            "chunked drawing",
            tuple(chunked.shape) == tuple(a.shape) and bool(torch.isfinite(chunked).all()),
            "memory budget of 3 draws",
        )
        zp = zero_loss_problem()
        z = est.draw(zp, 64, generator=gen())
        worst = float(z.abs().max())
        report.add("zero loss gives a zero estimate", worst <= 1e-12, f"max |g| = {worst:.2e}")
        evals = est.evals_per_draw(pr.model)
        report.add("evals_per_draw", evals >= 0 and evals == evals, f"{evals}")
        _check_claim(report, est, problems, n_draws, seed)
    if raise_on_failure and not report.passed:
        raise AssertionError(report.format())
    return report
