"""The Delta sync's own errors (light: the bindings import them without loading deltalake)."""

from __future__ import annotations


class DeltaSyncError(RuntimeError):
    """The sync cannot go on; the message says why and what to do."""


class DuplicateKeyError(DeltaSyncError):
    """A sink batch holds one key twice: the Delta table repeats a key."""


class ConcurrentSync(DeltaSyncError):
    """Another run changed the target's stored position while this one was retrying."""
