"""The rows a keyed column-cursor load into Delta read at its high-water mark, kept for the
next read (the Postgres sink's pgflow.sinks.postgres.cursor_boundary, for Delta).

They travel in the load's one commit, as commit metadata beside the position (state.py): the
rows, the run and the position stay one atomic commit. Delta keeps no staging to hash, so the
hashes come from the source, in the read's own snapshot, with the same expression the next
read's filter uses (column_cursor.row_hash): the rows hashed are exactly the rows read.
"""

from __future__ import annotations

import json
from typing import Any

from pgflow.sources.base import Position
from pgflow.sources.column_cursor import ColumnCursorSource, CursorBoundary, kept_boundary

BOUNDARY_KEY = "pgflow.cursor_boundary"
# Fewer than the Postgres sink keeps: the hashes are JSON in the commit's log entry (~39 bytes
# each, 390 KB at the cap), which every reader of the table's history parses. Above it none
# are kept and the next read takes the rows at the mark again (the merge makes that harmless).
MAX_BOUNDARY_ROWS = 10_000


def skip_applied(source: object, keyed: bool, stored: CursorBoundary | None) -> None:
    """Before the read (after its plan): a keyed column-cursor read skips the stored rows.
    Keyed only: two equal rows of a table without a key are two rows, both to be appended."""
    if keyed and isinstance(source, ColumnCursorSource):
        source.skip_boundary(stored)


def boundary_of_read(
    source: object, keyed: bool, position: Position | None
) -> CursorBoundary | None:
    """In the read's snapshot: the boundary to commit with `position` (None: none kept)."""
    if not keyed or position is None or not isinstance(source, ColumnCursorSource):
        return None
    rows = source.rows_at(position.value, MAX_BOUNDARY_ROWS)
    rows = kept_boundary(source.skipped_boundary, position.value, rows, MAX_BOUNDARY_ROWS)
    return CursorBoundary(position.source, position.value, rows) if rows else None


def boundary_json(boundary: CursorBoundary | None) -> str | None:
    if boundary is None:
        return None
    return json.dumps({"source": boundary.source, "value": boundary.value, "rows": boundary.rows})


def boundary_from_commit(commit: dict[str, Any]) -> CursorBoundary | None:
    text = commit.get(BOUNDARY_KEY)
    if not text:
        return None
    found = json.loads(text)
    return CursorBoundary(found["source"], found["value"], tuple(found["rows"]))
