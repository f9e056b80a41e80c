#!/usr/bin/env bash
# Regenerate reports/: every shipped case, then the seed study on the authors' own networks, read
# by their shipped names (seed:chk-1, seed:chk-100; reports psa-5-5-5@psa_5-5-5_chk-1 and
# psa-5-5-5@psa_5-5-5_chk-100). Extra arguments go to every `estbench run` (e.g. --force,
# --quick). Finished case points are kept between runs; `estbench report reports/*/` re-renders
# only (add --svg there for the SVG twins). Git tracks report.md and figures/*.png; the rest,
# SVG twins included (--svg below), stays local (reports/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
estbench=${ESTBENCH:-estbench}

# Every shipped case (`estbench cases`); `--workers 2` among the extra arguments runs them on a
# local Dask cluster (one torch thread per worker: the same numbers as a one-thread run).
"$estbench" run default psa-5-5-5 depth-sweep width-sweep width-sweep-mc temperature bernoulli-toy \
    weights-sign weights-stochastic weights-training weights-hardsigmoid \
    vae-linear vae-nonlinear vae-two-layer vae-width-sweep train-compare vae-train-compare \
    --out reports --svg "$@"
for chk in 1 100; do
    "$estbench" run psa-5-5-5 --checkpoint "seed:chk-$chk" --out reports --svg "$@"
done
