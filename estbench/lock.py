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

_HELD: set[int] = set()  # descriptors of the locks this process holds


def _close_in_child() -> None:
    # A forked child (the report's figure workers) must not keep the lock after its parent
    # dies: its copy of the descriptor would.
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


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
        _HELD.add(fd)
        yield
    finally:
        _HELD.discard(fd)
        os.close(fd)  # closing releases the lock
