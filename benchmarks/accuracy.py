"""Accuracy figures as ``track_`` benchmarks, so that an accuracy regression shows in the asv
history next to the timings.

On the seed network (its 200 points, {0,1} coding), measured by ``estbench.api.run`` as a user
would: each estimator's relative bias and relative RMSE of one draw (M = 1) over all binary layers
-- exact numbers (path enumeration) for the path estimators ST, PSA, REINFORCE and SA, Monte Carlo
from 10,000 seeded draws for the others -- and the exact gradient's agreement with the gradient
stored by the seed authors. The expensive part (exact gradients, exact moments, draws) runs once,
in ``setup_cache``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import estbench.api as eb
from estbench import exact_gradient, save_checkpoint

from .common import SEED_NET, seed_problem, smoke

TRACKED = ["st", "psa", "reinforce", "sa", "concrete(tau=0.1)", "arm", "mean-field"]

CASE = """
schema_version = 1
description = "asv accuracy tracking on the seed network"
[model]
checkpoint = "net.npz"
coding = "01"
[measure]
estimators = {estimators}
draws = {draws}
M = [1]
metrics = ["rel_bias", "rel_rmse"]
bootstrap = 0
"""


def _measure() -> dict[str, dict[str, float]]:
    problem = seed_problem()
    n = 20 if smoke() else problem.n_points
    with tempfile.TemporaryDirectory(prefix="estbench-asv-") as tmp:
        save_checkpoint(Path(tmp) / "net.npz", problem.model, problem.X[:n], problem.Y[:n])
        case = Path(tmp) / "track.toml"
        estimators = TRACKED[:1] if smoke() else TRACKED
        case.write_text(
            CASE.format(
                estimators="[" + ", ".join(f'"{e}"' for e in estimators) + "]",
                draws=200 if smoke() else 10_000,
            )
        )
        df = eb.run(case, seed=0, progress=False)
    df = df[(df["layer"] == "all") & (df["error"].isna())]
    out: dict[str, dict[str, float]] = {}
    for row in df.itertuples():
        if row.metric == "rel_bias" or (row.metric == "rel_rmse" and row.M == 1):
            out.setdefault(row.estimator, {})[row.metric] = float(row.value)
    return out


def _stored_gradient_error() -> float:
    """max over layers of ||g - g_stored|| / ||g_stored|| against the seed authors' exact_grad."""
    import numpy as np

    from estbench import load_checkpoint

    ckpt = load_checkpoint(SEED_NET)
    model = ckpt.model(coding="01")
    vectors = exact_gradient(model, *ckpt.data()).layer_vectors()
    errors = []
    for k, v in enumerate(vectors):
        stored = np.asarray(ckpt.extra[f"exact_grad_layer{k}"]).reshape(-1)
        errors.append(np.linalg.norm(v.numpy() - stored) / np.linalg.norm(stored))
    return float(max(errors))


class EstimatorAccuracy:
    """Relative bias and relative RMSE at M = 1 (layer ``all``) on the seed network."""

    params = TRACKED
    param_names = ["estimator"]
    timeout = 600

    def setup_cache(self) -> dict[str, dict[str, float]]:
        return _measure()

    def setup(self, cache: dict[str, dict[str, float]], spec: str) -> None:
        if spec not in cache:
            raise NotImplementedError(f"{spec} was not measured")  # asv: skipped

    def track_rel_bias(self, cache: dict[str, dict[str, float]], spec: str) -> float:
        return cache[spec]["rel_bias"]

    track_rel_bias.unit = "relative"  # type: ignore[attr-defined]

    def track_rel_rmse_m1(self, cache: dict[str, dict[str, float]], spec: str) -> float:
        return cache[spec]["rel_rmse"]

    track_rel_rmse_m1.unit = "relative"  # type: ignore[attr-defined]


class ExactAccuracy:
    """The exact gradient against the seed authors' stored exact gradient (of the shipped
    network ``seed:chk-100``)."""

    timeout = 120

    def setup_cache(self) -> float:
        return _stored_gradient_error()

    def track_exact_vs_stored(self, cache: float) -> float:
        return cache

    track_exact_vs_stored.unit = "relative"  # type: ignore[attr-defined]
