"""Rows of docs/estimators.md's issue-19 tables, from a run's results (Monte Carlo 95 % intervals,
all binary layers pooled), so the numbers quoted there come from the shipped report's run.

    python scripts/seed_tables.py reports/psa-5-5-5@psa_5-5-5_chk-100 rloo disarm dcv rodeo

Columns: estimator, evaluations per draw, relative bias (a bound "≤ hi (consistent with 0)"
where its interval reaches 0, "(exact)" where enumerated), variance of one draw (×10⁻⁵, the sum
over the binary layers' coordinates) with its interval, the same in the last binary layer, and
the relative RMSE at equal cost, 100 and 1,000 loss evaluations.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def main() -> None:
    directory, names = Path(sys.argv[1]), sys.argv[2:]
    f = pd.read_csv(directory / "results.csv")
    layers = sorted(x for x in f["layer"].unique() if x.startswith("layer"))
    last_binary = layers[-2]  # the last layer is the head's pair

    def row(est: str, layer: str, metric: str, M: int | None = None) -> pd.Series:
        sel = (f["estimator"] == est) & (f["layer"] == layer) & (f["metric"] == metric)
        if M is not None:
            sel &= f["M"] == M
        return f[sel].iloc[0]

    print(
        "| estimator | evals/draw | rel. bias | variance (×10⁻⁵) | last binary layer (×10⁻⁵) "
        "| rel. RMSE at 100 / 1000 evaluations |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for est in names:
        evals = row(est, "all", "evals_per_draw")["value"]
        b = row(est, "all", "rel_bias")
        if b["method"] == "exact":
            bias = f"{b['value']:.3g} (exact)"
        elif b["ci_low"] <= 0:
            bias = f"≤ {b['ci_high']:.2g} (consistent with 0)"
        else:
            bias = f"{b['value']:.3g} [{b['ci_low']:.3g}, {b['ci_high']:.3g}]"
        v = row(est, "all", "variance")
        var = f"{v['value'] * 1e5:.4g}"
        if v["method"] != "exact":
            var += f" [{v['ci_low'] * 1e5:.4g}, {v['ci_high'] * 1e5:.4g}]"
        last = row(est, last_binary, "variance")["value"] * 1e5
        r100 = row(est, "all", "rel_rmse_cost", 100)["value"]
        r1000 = row(est, "all", "rel_rmse_cost", 1000)["value"]
        print(f"| `{est}` | {evals:g} | {bias} | {var} | {last:.3g} | {r100:.3f} / {r1000:.3f} |")


if __name__ == "__main__":
    main()
