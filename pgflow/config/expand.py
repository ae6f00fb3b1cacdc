"""Which tables of a source schema a schema-wide spec takes."""

from __future__ import annotations

from fnmatch import fnmatchcase

from pgflow.config.model import RelationKind
from pgflow.config.wildcards import ListedTable


def matches(
    table: ListedTable, pattern: str, exclude: tuple[str, ...], kinds: tuple[RelationKind, ...]
) -> bool:
    """Whether the glob takes `table`: its kind is listed, its raw, case-sensitive name matches
    `pattern` and no `exclude` glob (`"OrderLines"` matches `Order*`, not `order*`)."""
    return (
        table.kind in kinds
        and fnmatchcase(table.name, pattern)
        and not any(fnmatchcase(table.name, glob) for glob in exclude)
    )
