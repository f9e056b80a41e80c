"""``estbench run`` on the default case, end to end: a fresh output directory each time, so
training, the exact gradient, every estimator's draws and metrics, and the report are all
computed (target: <= 60 s). The time is that of the command in a new process, as a user runs it
(interpreter start and imports included); the peak memory is measured in-process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from estbench.cli import main

from .common import smoke


def _args(out: Path) -> list[str]:
    args = ["run", "default", "--out", str(out), "--no-progress"]
    return args + (["--quick", "--no-report", "--estimators", "st,psa"] if smoke() else [])


class DefaultCase:
    timeout = 600
    number = 1
    repeat = (1, 3, 45.0)
    rounds = 1
    warmup_time = 0.0

    def setup(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="estbench-asv-"))
        self.calls = 0

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _fresh(self) -> Path:
        self.calls += 1
        return self.root / f"run{self.calls}"

    def time_estbench_run(self) -> None:
        cmd = [sys.executable, "-m", "estbench", *_args(self._fresh())]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def peakmem_estbench_run(self) -> None:
        if main(_args(self._fresh())) != 0:
            raise RuntimeError("estbench run default failed")
