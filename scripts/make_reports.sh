#!/usr/bin/env bash
# Regenerate reports/: every shipped case, then the seed study on the authors' own checkpoints
# (../shared/seed-nets). Extra arguments go to every `estbench run` (e.g. --force, --quick).
# Finished case points are kept between runs; `estbench report reports/*/` re-renders only.
set -euo pipefail
cd "$(dirname "$0")/.."
estbench=${ESTBENCH:-estbench}
seed_nets=${SEED_NETS:-../shared/seed-nets}

"$estbench" run default psa-5-5-5 depth-sweep width-sweep temperature bernoulli-toy \
    weights-sign weights-stochastic weights-training weights-hardsigmoid --out reports "$@"
for chk in 1 100; do
    "$estbench" run psa-5-5-5 --checkpoint "$seed_nets/psa_5-5-5_chk-$chk.npz" --out reports "$@"
done
