"""Time of 20,000 draws per estimator on the seed 5-5-5 network with its 200 points (docs/).

python scripts/bench_estimators.py                  # the seed study's seven estimators
python scripts/bench_estimators.py --all            # every registered estimator
python scripts/bench_estimators.py st 'rloo(k=4)'   # chosen ones
python scripts/bench_estimators.py --dtype float32  # float32 draws
python scripts/bench_estimators.py --device cuda    # on a GPU (a CUDA generator)
"""

from __future__ import annotations

import argparse
import time

import torch

from estbench import Problem, default_registry, load_checkpoint

SEED_NET = "seed:chk-100"  # the seed authors' network, shipped with estbench
SEED_STUDY = ["reinforce", "arm", "concrete(tau=0.1)", "concrete(tau=1)", "mean-field", "st", "psa"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("estimators", nargs="*", help="estimator specs (default: the seed seven)")
    parser.add_argument("--all", action="store_true", help="every registered estimator")
    parser.add_argument("--draws", type=int, default=20000)
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    registry = default_registry()
    specs = list(registry) if args.all else (args.estimators or SEED_STUDY)
    ckpt = load_checkpoint(SEED_NET)
    problem = Problem.create(ckpt.model(coding="01"), *ckpt.data())
    problem = problem.to(dtype=getattr(torch, args.dtype), device=args.device)
    device = torch.device(args.device)

    def generator(seed: int) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(seed)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    where = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype} on {where}, "
        f"{args.draws} draws, seed network 5-5-5 with {problem.n_points} points\n"
    )
    print("| estimator | time | per draw |")
    print("| --- | --- | --- |")
    total = 0.0
    for spec in specs:
        est = registry.create(spec)
        est.draw(problem, 100, generator=generator(1))  # warm-up
        sync()
        t = time.perf_counter()
        est.draw(problem, args.draws, generator=generator(0))
        sync()
        dt = time.perf_counter() - t
        total += dt
        print(f"| {est.spec} | {dt:.2f} s | {dt / args.draws * 1e6:.0f} µs |")
    print(f"| **total** | **{total:.2f} s** | |")


if __name__ == "__main__":
    main()
