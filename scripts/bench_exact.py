"""Speed and memory of the exact gradient (numbers quoted in docs/performance.md).

    python scripts/bench_exact.py            # all rows (about a minute)
    python scripts/bench_exact.py --quick    # skip the width-13 memory row
    python scripts/bench_exact.py --device cuda  # on a GPU (float64; the floor row is CPU-only)

For each workload: the median wall time of several runs, and the 'floor' -- the time this machine
takes for the three dense N x 2^n x 2^n products per layer that any implementation of the
layer-wise algorithm needs (forward P_{k-1} T_k, backward D_k T_k^T and P_{k-1}^T D_k).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from estbench import exact_gradient, load_checkpoint, random_sbn

SEED_NET = "seed:chk-100"  # the seed authors' network, shipped with estbench


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def three_products(n_points: int, s_in: int, s_out: int, repeats: int) -> float:
    """Median time of the three preallocated float64 GEMMs of one transition table."""
    P = torch.rand(n_points, 2**s_in, dtype=torch.float64)
    D = torch.rand(n_points, 2**s_out, dtype=torch.float64)
    T = torch.rand(2**s_in, 2**s_out, dtype=torch.float64)
    out_f, out_b = torch.empty_like(D), torch.empty_like(P)
    E = torch.empty_like(T)
    Pt = P.T.contiguous()

    def three() -> None:
        torch.mm(P, T, out=out_f)
        torch.mm(D, T.T, out=out_b)
        torch.mm(Pt, D, out=E)

    return median_time(three, repeats)


def floor_time(widths: list[int], n_points: int, repeats: int) -> float:
    """The three GEMMs of every transition table, as in the exact solver."""
    pairs = zip(widths[:-1], widths[1:], strict=True)
    return sum(three_products(n_points, s_in, s_out, repeats) for s_in, s_out in pairs)


def random_problem(width: int, depth: int, n_points: int):
    g = torch.Generator().manual_seed(0)
    model = random_sbn(2, [width] * depth, 1, generator=g, scale=1.5, coding="pm1")
    X = torch.randn(n_points, 2, generator=g, dtype=torch.float64)
    Y = torch.where(torch.rand(n_points, generator=g) < 0.5, 1.0, -1.0).double()
    return model, X, Y


def peak_memory_child(width: int, depth: int, n_points: int) -> None:
    model, X, Y = random_problem(width, depth, n_points)
    exact_gradient(model, X, Y)
    print(json.dumps({"max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def cuda_rows() -> None:
    """The two time rows on the GPU (synchronised), float64."""
    dev = torch.device("cuda")

    def timed(model, X, Y, repeats):  # noqa: ANN001
        model = model.to(device=dev)

        def run() -> None:
            exact_gradient(model, X, Y)
            torch.cuda.synchronize()

        return median_time(run, repeats)

    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, float64\n")
    print("| work | estbench on the GPU |")
    print("| --- | --- |")
    ckpt = load_checkpoint(SEED_NET)
    t = timed(ckpt.model(coding="01"), *ckpt.data(), 50)
    print(f"| exact gradient, seed 5-5-5 net, 200 points | {t * 1e3:.2f} ms |")
    for width, depth, n in ((12, 8, 100), (13, 3, 100)):
        t = timed(*random_problem(width, depth, n), 5)
        print(f"| exact gradient, width {width}, depth {depth}, {n} points | {t:.3f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the width-13 memory row")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--peak-child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_child:
        return peak_memory_child(*args.peak_child)
    if args.device == "cuda":
        return cuda_rows()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64\n")
    print("| work | estbench | floor (3 GEMMs/layer) | fraction of floor |")
    print("| --- | --- | --- | --- |")
    ckpt = load_checkpoint(SEED_NET)
    model, (X, Y) = ckpt.model(coding="01"), ckpt.data()
    t = median_time(lambda: exact_gradient(model, X, Y), 50)
    print(f"| exact gradient, seed 5-5-5 net, 200 points | {t * 1e3:.2f} ms | | |")
    for width, depth, n in ((12, 8, 100), (10, 8, 100)):
        model, X, Y = random_problem(width, depth, n)
        t = median_time(lambda m=model, x=X, y=Y: exact_gradient(m, x, y), 5)
        floor = floor_time([width] * depth, n, 5)
        print(
            f"| exact gradient, width {width}, depth {depth}, {n} points | {t:.3f} s | "
            f"{floor:.3f} s | {floor / t:.0%} |"
        )
    if not args.quick:
        out = subprocess.run(
            [sys.executable, __file__, "--peak-child", "13", "3", "100"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rss = json.loads(out)["max_rss_bytes"]
        print(
            f"| peak memory (max RSS, whole process), width 13, depth 3, 100 points | "
            f"{rss / 2**30:.2f} GiB | | |"
        )


if __name__ == "__main__":
    main()
