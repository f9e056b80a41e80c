"""Wall time of `estbench run` on the default case, end to end, in a fresh process and a fresh
output directory each time (training, exact gradient, draws, metrics and, unless --no-report,
the report), as quoted in docs/performance.md.

    python scripts/bench_run.py                  # 3 runs, report included
    python scripts/bench_run.py --no-report -n 5 # results files only
    python scripts/bench_run.py -- --device cuda # extra arguments for `estbench run`
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=3, help="timed runs (default 3)")
    parser.add_argument("--case", default="default", help="case to run (default: default)")
    parser.add_argument("--no-report", action="store_true", help="pass --no-report")
    parser.add_argument("extra", nargs="*", help="more arguments for `estbench run` (after --)")
    args = parser.parse_args()
    times = []
    with tempfile.TemporaryDirectory(prefix="estbench-bench-") as tmp:
        for i in range(args.runs):
            cmd = [sys.executable, "-m", "estbench", "run", args.case, "--no-progress"]
            cmd += ["--out", str(Path(tmp) / f"run{i}"), *args.extra]
            if args.no_report:
                cmd.append("--no-report")
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - t)
            print(f"run {i + 1}: {times[-1]:.2f} s", flush=True)
    report = "without" if args.no_report else "with"
    print(
        f"estbench run {args.case} ({report} report, {' '.join(args.extra) or 'defaults'}): "
        f"min {min(times):.2f} s, median {statistics.median(times):.2f} s, "
        f"max {max(times):.2f} s over {len(times)} runs"
    )


if __name__ == "__main__":
    main()
