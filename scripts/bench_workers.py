"""A case run serially and on a local Dask cluster (`--workers N`), one after the other on the same
machine, in fresh processes and fresh output directories, as quoted in docs/performance.md ("Running
on Dask"). Prints the wall times, the speed-up, the time to start the cluster, and the overhead per
task: the workers' time not spent computing, per task (cells and point preparations), after the part
of the run both share (start-up, planning, writing: the serial run's wall time beyond its compute)
is taken off.

    python scripts/bench_workers.py                       # depth-sweep, 2 workers, 2 rounds
    python scripts/bench_workers.py --case default -n 3 --workers 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(case: str, out: Path, extra: list[str]) -> tuple[float, float, int]:
    """Wall time, compute seconds (sum over points of their recorded seconds), and tasks."""
    cmd = [sys.executable, "-m", "estbench", "run", case, "--no-report", "--no-progress"]
    t = time.perf_counter()
    subprocess.run(
        [*cmd, "--out", str(out), *extra],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t
    meta = json.loads((out / case / "results.json").read_text())
    points = meta["points"]
    compute = sum(p["seconds"] for p in points)
    tasks = sum(1 + len(p["estimators"]) for p in points)  # one prepare + the cells per point
    return wall, compute, tasks


def _cluster_start(workers: int) -> float:
    code = (
        "import time; t = time.perf_counter()\n"
        "from estbench.cluster import connect\n"
        f"with connect({workers}) as c:\n    print(time.perf_counter() - t)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="depth-sweep")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("-n", "--rounds", type=int, default=2, help="serial + Dask pairs")
    args = parser.parse_args()
    serial, dask, overheads = [], [], []
    with tempfile.TemporaryDirectory(prefix="estbench-bench-") as tmp:
        for i in range(args.rounds):
            s_wall, s_compute, _ = _run(args.case, Path(tmp) / f"serial{i}", [])
            d_wall, d_compute, tasks = _run(
                args.case, Path(tmp) / f"dask{i}", ["--workers", str(args.workers)]
            )
            fixed = s_wall - s_compute
            overhead = (args.workers * (d_wall - fixed) - d_compute) / tasks
            serial.append(s_wall)
            dask.append(d_wall)
            overheads.append(overhead)
            print(
                f"round {i + 1}: serial {s_wall:.2f} s (compute {s_compute:.2f} s), "
                f"{args.workers} workers {d_wall:.2f} s (compute {d_compute:.2f} s, {tasks} "
                f"tasks): {s_wall / d_wall:.2f}x, overhead {overhead * 1e3:.0f} ms per task",
                flush=True,
            )
    start = _cluster_start(args.workers)
    print(
        f"{args.case}: serial min {min(serial):.2f} s, {args.workers} workers min "
        f"{min(dask):.2f} s (speed-up {min(serial) / min(dask):.2f}x); cluster start "
        f"{start:.2f} s; overhead per task median {statistics.median(overheads) * 1e3:.0f} ms "
        "(cluster start included)"
    )


if __name__ == "__main__":
    main()
