"""Regenerate tests/data/report-fixture/ (stored results that the report tests render).

    python tests/data/make_report_fixture.py

The fixture is stored, not recomputed by the tests, so the report tests check rendering alone.
It holds a failing estimator ("exploding") so the report's failure path is rendered too, and an
unbiased estimator of very high variance ("noisy-reinforce": REINFORCE plus zero-mean Gaussian
noise, measured by Monte Carlo since it is not a path estimator) whose relative-bias point
estimate is large while its 95 % interval includes 0 -- the case a report must not draw or rank
as a measured bias.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from estbench.api import run
from estbench.estimators.base import Estimator
from estbench.kinds.sbn.estimators.score import Reinforce

HERE = Path(__file__).parent
# The run's root seed: chosen (among 1-8, with the stream of estbench.rng) so that the noisy
# estimator's depth-1 relative bias reads large (1.13) while its interval includes 0.
SEED = 2


class Exploding(Estimator):
    name = "exploding"
    family = "score-function"
    unbiased = "yes"
    reference = "test fixture"

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        raise RuntimeError("boom")


class NoisyReinforce(Estimator):
    """REINFORCE + N(0, SD^2) on every coordinate: unbiased, with a variance that 400 draws
    cannot resolve a bias against."""

    name = "noisy-reinforce"
    family = "score-function"
    unbiased = "yes"
    reference = "test fixture"
    SD = 0.5

    def _draw(self, problem, n_draws, generator, context):  # noqa: ANN001, ANN202
        clean = Reinforce()._draw(problem, n_draws, generator, context)
        noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
        return clean + self.SD * noise


def fixture_estimators() -> list:  # also run by tests/test_numbers_unchanged.py
    return ["reinforce", "arm", "st", "psa", "concrete", NoisyReinforce(), Exploding()]


if __name__ == "__main__":
    out = HERE / "report-fixture"
    shutil.rmtree(out, ignore_errors=True)
    run(
        HERE / "report-fixture.toml",
        estimators=fixture_estimators(),
        out=out,
        progress=False,
        seed=SEED,
    )
    # Keep only what a report reads.
    shutil.rmtree(out / "report-fixture" / "points")
    for name in ("run.json", ".lock"):
        (out / "report-fixture" / name).unlink(missing_ok=True)
    print(sorted(p.name for p in (out / "report-fixture").iterdir()))
