"""The rows a keyed column-cursor load applied at its high-water mark, kept for the next read.

A `>=` cursor read would otherwise read every row sharing the high-water mark again on every
run (a whole batch written in one transaction shares one `now()`). The load stores a hash
of each such row (column_cursor.row_hash), taken from its staging table, in the load's own
transaction next to the position: a crash before COMMIT keeps the old position and the old
hashes together. The next read skips exactly those rows (ColumnCursorSource.skip_boundary).

A side table rather than a column of pipeline_state: up to MAX_BOUNDARY_ROWS hashes need not
be read with every position, and other kinds of position never carry them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres.ddl import create_shared_object
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.base import Position
from pgflow.sources.column_cursor import (
    ColumnCursorSource,
    CursorBoundary,
    kept_boundary,
    row_hash,
)

BOUNDARY_TABLE = TableName("_pgflow", "cursor_boundary")
_TABLE = BOUNDARY_TABLE.identifier()
# Above this many rows at one cursor value none are kept and the next read takes them all
# again (the merge makes that harmless): the hashes travel in the next read's SQL text
# (~37 bytes each, 3.7 MB at the cap), and a read that large costs more than the skip saves.
MAX_BOUNDARY_ROWS = 100_000

_CREATE = sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
    target_schema text NOT NULL,
    target_table text NOT NULL,
    source text NOT NULL,
    value text NOT NULL,
    rows uuid[] NOT NULL,
    PRIMARY KEY (target_schema, target_table)
)""").format(_TABLE)


def skip_applied(conn: psycopg.Connection, target: TableName, source: object, keyed: bool) -> None:
    """Before the read: a keyed column-cursor read skips the boundary rows stored for `target`.
    Keyed only: two equal rows of a table without a key are two rows, both to be applied."""
    if keyed and isinstance(source, ColumnCursorSource):
        source.skip_boundary(read_boundary(conn, target))


def store_applied(
    log: SqlLog,
    target: TableName,
    table: TableName,
    source: object,
    keyed: bool,
    position: Position | None,
    rejected: Callable[[str], tuple[str, ...]] | None = None,
) -> int | None:
    """After the read, in the load's transaction: store the boundary rows of `table` (what
    the load read) for `target`, and those `rejected(value)` gives (rows the load read and
    rejected, at the mark `value`); how many (0: none kept), None for other sources."""
    if not isinstance(source, ColumnCursorSource):
        return None
    rows = None
    if keyed and position is not None:
        columns = source.info.column_names
        rows = staged_boundary(log, table, columns, source.cursor_column, position)
        if rows is not None and rejected is not None:
            rows = rows + rejected(position.value)
        rows = kept_boundary(source.skipped_boundary, position.value, rows, MAX_BOUNDARY_ROWS)
    write_boundary(log, target, position, rows)
    return len(rows) if rows else 0


def read_boundary(conn: psycopg.Connection, target: TableName) -> CursorBoundary | None:
    """The boundary rows stored for `target` (None: none, or no table yet)."""
    if not _table_exists(conn):
        return None
    found = conn.execute(
        sql.SQL(
            "SELECT source, value, array_to_string(rows, ',') FROM {} WHERE target_schema = %s"
            " AND target_table = %s"
        ).format(_TABLE),
        (target.schema, target.name),
    ).fetchone()
    # One string, split here, rather than a text[] parsed element by element.
    return CursorBoundary(found[0], found[1], _split(found[2])) if found else None


def staged_boundary(
    log: SqlLog,
    table: TableName,
    columns: Sequence[str],
    cursor: str,
    position: Position,
) -> tuple[str, ...] | None:
    """Hashes of the rows in `table` (what the load read) at `position`'s value; None when
    there are more than MAX_BOUNDARY_ROWS."""
    cap = MAX_BOUNDARY_ROWS  # read here, not bound as a default: tests lower it
    value = sql.SQL("{}::{}").format(sql.Literal(position.value), sql.SQL(position.value_type))
    row = log.execute(
        sql.SQL(
            "SELECT string_agg(h::text, ',') FROM (SELECT {} AS h FROM {} WHERE {} = {} LIMIT %s) r"
        ).format(row_hash(columns), table.identifier(), sql.Identifier(cursor), value),
        (cap + 1,),
    ).fetchone()
    hashes = _split(row[0] if row else None)
    return hashes if len(hashes) <= cap else None


def write_boundary(
    log: SqlLog, target: TableName, position: Position | None, rows: tuple[str, ...] | None
) -> None:
    """Store `rows` as the boundary of `position` for `target`; None forgets the stored ones."""
    schema = sql.Identifier(BOUNDARY_TABLE.schema)
    if position is None or not rows:
        if _table_exists(log.conn):
            log.execute(
                sql.SQL("DELETE FROM {} WHERE target_schema = %s AND target_table = %s").format(
                    _TABLE
                ),
                (target.schema, target.name),
            )
        return
    if not _table_exists(log.conn):  # one round trip, not two savepoints, on every later run
        create_shared_object(log, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        create_shared_object(log, _CREATE)
    log.execute(
        sql.SQL(
            "INSERT INTO {} (target_schema, target_table, source, value, rows)"
            " VALUES (%s, %s, %s, %s, %s::uuid[])"
            " ON CONFLICT (target_schema, target_table) DO UPDATE SET source = EXCLUDED.source,"
            " value = EXCLUDED.value, rows = EXCLUDED.rows"
        ).format(_TABLE),
        # The array's text: uuid text (hex digits, dashes) needs no quoting.
        (target.schema, target.name, position.source, position.value, "{" + ",".join(rows) + "}"),
    )


def _table_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (str(BOUNDARY_TABLE),)).fetchone()
    return bool(row and row[0])


def _split(hashes: str | None) -> tuple[str, ...]:
    return tuple(hashes.split(",")) if hashes else ()
