"""Estimator draws on the seed network: 2,000 draws of every built-in estimator (time and peak
memory; memory does not grow with the draws beyond the [S, P] result, since draws are computed in
bounded chunks), and the seed study's seven x 20,000 draws together (target: <= 10 s in float64),
in float64 and float32 draws.
"""

from __future__ import annotations

import torch

from estbench import default_registry, get_estimator

from .common import SEED_STUDY, seed_problem, smoke

# the seed study's seven first, then every other built-in SBN estimator (plugins are left out,
# so that the parameter list does not depend on what else is installed; the weight estimators
# are in benchmarks/weights.py)
BUILTIN = tuple(
    dict.fromkeys(
        [
            *SEED_STUDY,
            *(
                n
                for n, e in default_registry().items()
                if e.source == "estbench" and e.cls.problem == "sbn"
            ),
        ]
    )
)


def n_draws(full: int) -> int:
    return 50 if smoke() else full


class EstimatorDraws:
    """2,000 draws of one estimator, seed network, float64."""

    params = list(BUILTIN)
    param_names = ["estimator"]
    timeout = 300
    number = 1
    repeat = (1, 3, 5.0)
    warmup_time = 0.0  # setup() already drew once

    def setup(self, spec: str) -> None:
        self.problem = seed_problem()
        self.estimator = get_estimator(spec)
        self.estimator.draw(self.problem, 10, generator=torch.Generator().manual_seed(1))

    def time_draws(self, spec: str) -> None:
        gen = torch.Generator().manual_seed(0)
        self.estimator.draw(self.problem, n_draws(2_000), generator=gen)

    def peakmem_draws(self, spec: str) -> None:
        gen = torch.Generator().manual_seed(0)
        self.estimator.draw(self.problem, n_draws(2_000), generator=gen)


class SeedStudyDraws:
    """The seven seed-study estimators x 20,000 draws each, seed network: the docs' target
    row (float64), and the same in float32 draws."""

    params = ["float64", "float32"]
    param_names = ["dtype"]
    timeout = 600
    number = 1
    repeat = (1, 3, 30.0)
    rounds = 1
    warmup_time = 0.0  # setup() already drew once

    def setup(self, dtype: str) -> None:
        problem = seed_problem()
        self.problem = problem.to(dtype=getattr(torch, dtype))
        self.estimators = [get_estimator(s) for s in SEED_STUDY]
        for est in self.estimators:  # warm-up
            est.draw(self.problem, 10, generator=torch.Generator().manual_seed(1))

    def time_seed_study(self, dtype: str) -> None:
        for est in self.estimators:
            est.draw(self.problem, n_draws(20_000), generator=torch.Generator().manual_seed(0))
