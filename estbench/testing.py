"""Conformance checks for estimators, public for plugin authors (like scikit-learn's
``check_estimator``)::

    from estbench.testing import check_estimator
    report = check_estimator(MyEstimator())      # raises AssertionError listing failed checks
    report = check_estimator("concrete(tau=0.5)", raise_on_failure=False)

The checks: output shape and dtype; finite values; determinism under a seed (and, for stochastic
estimators, different draws under another seed); chunked drawing; a zero estimate when the loss
is identically zero; and the unbiasedness claim against the exact gradient on the kind's small
problems (for SBNs, two depth-3 networks) -- every layer the estimator claims unbiased must pass,
and a claimed-biased estimator must show its bias somewhere.

Unbiasedness is decided exactly (enumeration of all paths, no sampling error) for path estimators,
and statistically otherwise, layer by layer: per-coordinate z with Bonferroni plus the aggregate
B_hat / SE(B_hat) (spec §5.2, §6; ``metrics.unbiasedness_test``), with the total false-fail
rate ``FALSE_FAIL`` = 2e-3 split evenly over all layer tests of the check. Seeds are fixed, so the
outcome is reproducible: a correct estimator that passes once keeps passing.

Every problem kind gets the same checks, with the same code, on its own small problems
(``ProblemKind.check_problems``, ``zero_loss_problem``), against its exact gradient in the
estimator's own parametrisation (``wrt``, e.g. eta or mu for Bernoulli weights); an estimator of an
unknown kind fails the "problem kind" check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

from .estimators.base import Estimator, ProblemT
from .estimators.registry import get_estimator
from .metrics import unbiasedness_test
from .problem import get_kind

T = TypeVar("T")
EXACT_TOL = 1e-9  # relative; exact moments of an unbiased path estimator agree to ~1e-14
FALSE_FAIL = 2e-3  # total probability that a correct unbiased estimator fails the check
MAX_PATHS = 1 << 18  # the check problems enumerate far fewer


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
    layers (for "claimed bias is detected")."""
    found = []
    for k, g in enumerate(exact):
        if means is not None:
            m = means[k]
            err = _rel(m, g) if float(g.norm()) > 0 else float(m.norm())
            passed, detail = err <= EXACT_TOL, f"relative bias {err:.2e}"
            kind, biased = "exact", err > EXACT_TOL
            finding = f"{net} layer{k} (exact relative bias {err:.2e})"
        elif draws is not None:
            test = unbiasedness_test(draws[k], g, alpha=alpha)
            passed, detail = test.passed, test.describe()
            kind, biased = "statistical", not test.passed
            finding = f"{net} layer{k} ({detail})"
        else:
            raise ValueError("layer_claims needs the path means or the draws")
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


def _failure(e: Exception) -> str:
    return f"raised {type(e).__name__}: {e}"


def _attempt(report: CheckReport, name: str, step: Callable[[], T]) -> T | None:
    """``step()``, or None after recording check ``name`` as failed with the exception: an
    estimator that raises fails its check, it never stops the check run."""
    try:
        return step()
    except Exception as e:
        report.add(name, False, _failure(e))
        return None


def _tensor(out: object) -> Tensor:
    if not isinstance(out, Tensor):
        raise TypeError(f"draw returned {type(out).__name__}, expected a torch.Tensor [S, P]")
    return out


def run_checks(
    report: CheckReport,
    est: Estimator[ProblemT, Any],
    problems: Sequence[ProblemT],
    zero_loss: Callable[[], ProblemT],
    seed: int,
    check_claim: Callable[[], None],
) -> None:
    """The checks every estimator gets (module docstring) on ``problems[0]`` and the zero-loss
    problem, then ``check_claim()``. An exception or a
    wrong shape, dtype or value from the estimator is a failed check, never a crash."""
    pr = problems[0]

    def draw(problem: ProblemT, n: int = 16, s: int = seed, budget: int | None = None) -> Tensor:
        g = torch.Generator().manual_seed(s)
        return _tensor(est.draw(problem, n, generator=g, memory_budget=budget))

    a = _attempt(report, "draws", lambda: draw(pr))
    if a is None:
        return
    expected = (16, pr.n_params)
    shape_ok = tuple(a.shape) == expected
    detail = f"got {tuple(a.shape)}, expected {expected} ([draws, parameters])"
    report.add("shape", shape_ok, detail if shape_ok else detail + "; other checks skipped")
    report.add("dtype", a.dtype == pr.X.dtype, f"got {a.dtype}, expected {pr.X.dtype}")
    bad = int((~torch.isfinite(a)).sum())
    report.add(
        "finite", bad == 0, f"{bad} of {a.numel()} values are NaN or infinite" if bad else ""
    )
    if not shape_ok:
        return
    b = _attempt(report, "same seed, same draws", lambda: draw(pr))
    if b is not None:
        report.add("same seed, same draws", torch.equal(a, b), "")
    if est.stochastic:
        c = _attempt(report, "another seed, other draws", lambda: draw(pr, s=seed + 1))
        if c is not None:
            report.add("another seed, other draws", not torch.equal(a, c), "")
    chunked = _attempt(
        report, "chunked drawing", lambda: draw(pr, budget=3 * est.bytes_per_draw(pr))
    )
    if chunked is not None:
        report.add(
            "chunked drawing",
            tuple(chunked.shape) == tuple(a.shape) and bool(torch.isfinite(chunked).all()),
            "memory budget of 3 draws",
        )
    z = _attempt(report, "zero loss gives a zero estimate", lambda: draw(zero_loss(), 64))
    if z is not None:
        worst = float(z.abs().max()) if z.numel() else 0.0
        report.add("zero loss gives a zero estimate", worst <= 1e-12, f"max |g| = {worst:.2e}")
    evals = _attempt(report, "evals_per_draw", lambda: float(est.evals_per_draw(pr.model)))
    if evals is not None:
        report.add("evals_per_draw", math.isfinite(evals) and evals >= 0, f"{evals:g}")
    check_claim()


def check_claim(
    report: CheckReport,
    est: Estimator[ProblemT, Any],
    problems: Sequence[ProblemT],
    n_draws: int,
    seed: int,
    *,
    exact: Callable[[ProblemT], list[Tensor]],
    path_means: Callable[[ProblemT, torch.Generator], list[Tensor]] | None,
    net: str,
    what: str = "",
) -> None:
    """Every claimed layer unbiased against ``exact(problem)`` (exactly from ``path_means``, or
    statistically from ``n_draws`` draws when it is None); a claimed-biased estimator must show
    its bias in some unclaimed layer. A failure on one network is reported, the next is run."""
    claims = _attempt(
        report,
        "unbiased_layers",
        lambda: [frozenset(est.unbiased_layers(pr.model)) for pr in problems],
    )
    if claims is None:
        return
    found: list[str] = []
    alpha = FALSE_FAIL / 2 / max(sum(map(len, claims)), 1)  # fails with prob. <= 2 alpha
    for i, (pr, claimed) in enumerate(zip(problems, claims, strict=True)):
        gen = torch.Generator().manual_seed(seed + 1000 * i)
        try:
            g = exact(pr)
            if path_means is not None:
                means = path_means(pr, gen)
                found += layer_claims(
                    report, f"{net}{i}", g, claimed, means=means, alpha=alpha, what=what
                )
                continue
            draws = _tensor(est.draw(pr, n_draws, generator=gen))
            if tuple(draws.shape) != (n_draws, pr.n_params):
                raise ValueError(
                    f"draw returned shape {tuple(draws.shape)}, expected {(n_draws, pr.n_params)}"
                )
            found += layer_claims(
                report, f"{net}{i}", g, claimed, draws=pr.split(draws), alpha=alpha, what=what
            )
        except Exception as e:
            report.add(f"unbiased {net}{i}", False, _failure(e))
    if len(claims[0]) < problems[0].model.depth + 1:
        bias_detected(report, found, n_draws)


def _estimator_label(est: Estimator) -> str:
    try:
        return est.spec
    except Exception:  # e.g. a constructor that skipped Estimator.__init__ (no params)
        return str(getattr(type(est), "name", type(est).__qualname__))


def check_estimator(
    estimator: Estimator | str,
    *,
    n_draws: int = 20000,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> CheckReport:
    """Run every conformance check; see the module docstring. Returns the report, or raises
    AssertionError with it when a check fails and ``raise_on_failure``. Whatever the estimator
    does (raise, return a wrong shape, dtype or NaN) is a failed check in the report."""
    est = get_estimator(estimator) if isinstance(estimator, str) else estimator
    report = CheckReport(_estimator_label(est))
    kind = _attempt(report, "problem kind", lambda: get_kind(est.problem, _estimator_label(est)))
    if kind is not None:
        problems = kind.check_problems()
        wrt = getattr(est, "wrt", None)  # an estimate in another parametrisation (weights: mu)
        exact_moments = kind.path_count(est, problems[0].model) is not None

        def path_means(pr: Any, gen: torch.Generator) -> list[Tensor]:
            moments = kind.path_moments(est, pr, est.prepare(pr, gen), MAX_PATHS)
            if moments is None:
                raise ValueError(f"no exact moments on {kind.describe(pr.model)}")
            return moments.layer_means()

        def claim() -> None:
            check_claim(
                report,
                est,
                problems,
                n_draws,
                seed,
                exact=lambda pr: pr.split(kind.reference(pr).gradient(wrt)),
                path_means=path_means if exact_moments else None,
                net="net",
                what=f", wrt {wrt}" if wrt is not None else "",
            )

        run_checks(report, est, problems, kind.zero_loss_problem, seed, claim)
    if raise_on_failure and not report.passed:
        raise AssertionError(report.format())
    return report
