"""The case directory's lock, without torch: ``estbench report`` takes the lock ``estbench run``
takes (``runner.case_lock``: ``flock`` on ``DIR/<case>/.lock``), so a report never renders
results a run is writing. Both take the same exclusive ``flock`` on the same file, so each
excludes the other (tested); this copy exists because ``runner`` imports torch, two seconds
of a report's start-up otherwise."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import EstbenchError


@contextlib.contextmanager
def case_lock(directory: Path) -> Iterator[None]:
    """One writer at a time in a case directory (``runner.case_lock``, the same lock)."""
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
