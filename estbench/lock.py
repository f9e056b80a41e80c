"""The case directory's lock: an exclusive ``flock`` on ``DIR/<case>/.lock``, taken by
``estbench run`` (``runner.execute``) and ``estbench report``, so a report never renders results
a run is writing. Torch-free, so that the report's start-up does not pay for torch."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import EstbenchError


@contextlib.contextmanager
def case_lock(directory: Path) -> Iterator[None]:
    """One ``estbench run`` (or report) at a time in a case directory: an exclusive lock on
    ``.lock`` (released by the OS when the holder dies, so a killed run never leaves it stuck)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise EstbenchError(
                f"{directory}: in use by another estbench run (pid {holder}); wait for it to "
                f"finish, or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
