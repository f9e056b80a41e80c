"""Errors that estbench reports to users (the CLI prints them without a traceback)."""


class EstbenchError(Exception):
    """Base class: a problem with the user's input or configuration, stated in the message."""


class CheckpointError(EstbenchError):
    """A checkpoint file is missing, unreadable, or has a wrong key or shape."""


class ModelError(EstbenchError):
    """An inconsistent model specification (shapes, coding, noise, head, targets)."""


class MemoryBudgetError(EstbenchError):
    """An exact computation would need more memory than its budget allows."""
