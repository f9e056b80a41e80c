"""Benchmark (issue 18's speed target): the Monte Carlo reference of a width-64, depth-3 SBN on
200 data points to 1 % relative standard error in every block, on the CPU (target: <= 5 min on
the 2-core machine). Not a timed test; the numbers go to docs/kinds/mc-reference.md.

    python scripts/bench_mcref.py [--width 64] [--depth 3] [--points 200] [--rel-se 0.01]
        [--estimator disarm] [--max-seconds 600] [--device cpu] [--workers N]

--workers N computes the reference in a task on a local Dask cluster of N one-thread workers,
its shards spread over them (as `estbench run --workers N` does); the reference is the same as
a serial one-thread run's, bit for bit, when no cap ends it.

Prints the estimator (the pilot's choice unless --estimator), R, the stop rule, the achieved
relative SE per block and the seconds (pilot and drawing).
"""

from __future__ import annotations

import argparse
import time

import torch

from estbench import mcref
from estbench.kinds.sbn.model import random_sbn
from estbench.problem import get_kind
from estbench.runner import stream_seed


def _reference(problem, spec, memory_budget: int, spread: bool):  # noqa: ANN001, ANN202
    """The reference (run in a Dask task with ``spread``: its shards over the workers)."""
    kind = get_kind("sbn")
    mapper = mcref.serial_map
    if spread:
        from estbench.cluster import _spread

        mapper = _spread
    ref, _ = mcref.compute(
        problem,
        spec,
        lambda grad: kind.blocks(problem, grad),
        lambda tag, est: stream_seed(0, "bench", "base", tag, est),
        memory_budget,
        "bench",
        mapper,
    )
    return ref


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--rel-se", type=float, default=0.01)
    ap.add_argument("--estimator", default=None)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--memory-budget", type=int, default=1 << 30)
    ap.add_argument("--workers", type=int, default=0, help="local Dask workers (0: serial)")
    args = ap.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    model = random_sbn(2, (args.width,) * args.depth, 2, generator=g, head="softmax")
    X = torch.randn(args.points, 2, generator=g, dtype=torch.float64)
    Y = torch.randint(0, 2, (args.points,), generator=g)
    kind = get_kind("sbn")
    problem = kind.problem(model, X, Y).to(dtype=torch.float64, device=device)
    spec = mcref.ReferenceSpec(
        mode="mc",
        estimator=args.estimator,
        rel_se=args.rel_se,
        max_draws=10_000_000,
        max_seconds=args.max_seconds,
    )

    t0 = time.perf_counter()
    if args.workers:
        from estbench import cluster

        with cluster.connect(args.workers) as client:
            t0 = time.perf_counter()  # the cluster's start is not the reference's time
            future = client.submit(_reference, problem, spec, args.memory_budget, True)
            ref = future.result()
    else:
        ref = _reference(problem, spec, args.memory_budget, False)
    total = time.perf_counter() - t0
    print(
        f"width {args.width} depth {args.depth}, {args.points} points, P = {problem.n_params}, "
        f"{torch.get_num_threads()} threads, {device}"
        + (f", {args.workers} Dask workers of one thread" if args.workers else "")
    )
    print(f"estimator {ref.estimator}; R = {ref.draws:,}; stop: {ref.stop}")
    print("rel. SE: " + ", ".join(f"{k} {v:.4f}" for k, v in ref.rel_se.items()))
    print(
        f"{total:.1f} s in all ({ref.seconds:.1f} s drawing the reference, "
        f"{ref.seconds_per_draw * 1e3:.2f} ms per draw; pilot {total - ref.seconds:.1f} s)"
    )
    for name, info in ref.pilot.items():
        print(f"  pilot {name}: {info}")


if __name__ == "__main__":
    main()
