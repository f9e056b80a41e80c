"""The declared keys of case files: one ``Key`` per key, read by ``cases.Table.get`` and listed on
the docs site's case-file reference (``docs/generated/case-keys.md``), so the two cannot drift.

A table's keys are a tuple of ``Key``; a ``Table`` reads only keys declared for it. What a key
needs from other keys of the case (a default or a bound that depends on another value) is given
where it is read, and ``default_text`` says it on the page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TYPES = ("int", "float", "str", "bool", "int-list", "float-list", "str-list")


@dataclass(frozen=True)
class Key:
    """One case-file key: its ``name``, ``type`` (one of ``TYPES``), ``default``, the values it
    accepts (``choices``, or ``check`` with ``accepts`` saying it: the error's "expected ..."),
    whether it is ``required``, and a one-line ``help``."""

    name: str
    type: str
    default: Any = None
    help: str = ""
    accepts: str = ""
    check: Callable[[Any], bool] | None = None
    choices: tuple[str, ...] = ()
    required: bool = False
    default_text: str = ""  # the default in words, when it is computed from other keys

    def __post_init__(self) -> None:
        assert self.type in TYPES, f"key {self.name!r}: type {self.type!r} is not one of {TYPES}"

    @property
    def expected(self) -> str:
        """What an error says the key expects."""
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        return self.accepts or self.type

    @property
    def shown_default(self) -> str:
        """The default as the docs page shows it."""
        if self.required:
            return "required"
        if self.default_text:
            return self.default_text
        return "" if self.default is None else f"`{self.default!r}`"
