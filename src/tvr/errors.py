"""User-facing error types.

A `TvrError` is a mistake the user can act on (bad file, bad field, unknown name, shape mismatch).
The CLI prints its message as one line on stderr and exits with code 2; anything else is a bug.
"""

from __future__ import annotations

from collections.abc import Iterable


class TvrError(Exception):
    """A user mistake; the message names the file, field or value that is wrong."""


class UnknownName(TvrError):
    """A name (model, encoder, dataset, post-processor, …) that no registry knows."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known) or '(none)'}")
