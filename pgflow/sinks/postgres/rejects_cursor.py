"""What a rejecting load's rejected rows mean for an incremental position (rejects.py).

A rejected row was read: its cursor value counts for the position, and a keyed read skips it
at the mark with the rows applied there, so a rerun neither reads nor rejects it again.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres import staging
from pgflow.sinks.postgres.rejects import ARRIVAL, Rejects, cast_types, is_row_error
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.column_cursor import row_hash


def max_value(log: SqlLog, table: TableName, column: str, rejects: Rejects) -> str | None:
    """The largest cursor value read: of the rows in `table` and of the rejected rows whose
    cursor value is valid. An incremental position moves past rejected rows, so a rerun does
    not read (and reject) them again; fixing one in the source (its cursor moves) loads it."""
    largest = staging.max_value(log, table, column)
    if not rejects.rejected_rows or rejects.raw is None or rejects.target is None:
        return largest
    (cast,) = cast_types(log, rejects.target, [column])
    values = [] if largest is None else [largest]
    for rn in rejects.rejected_rows:
        query = sql.SQL("SELECT CAST(r.{} AS {})::text FROM {} AS r WHERE r.{} = %s").format(
            sql.Identifier(column), cast, rejects.raw.identifier(), sql.Identifier(ARRIVAL)
        )
        try:
            with log.conn.transaction():  # a cursor value that is itself bad is no position
                row = log.conn.execute(query, (rn,)).fetchone()
        except psycopg.Error as error:
            if not is_row_error(error):
                raise
            continue
        if row and row[0] is not None:
            values.append(row[0])
    query = sql.SQL("SELECT max(CAST(v AS {}))::text FROM unnest(%s::text[]) AS v").format(cast)
    found = log.conn.execute(query, (values,)).fetchone()
    return found[0] if found else None


def boundary_rows(log: SqlLog, rejects: Rejects, column: str, value: str) -> tuple[str, ...]:
    """`row_hash` of the rejected rows whose cursor is `value` (the new high-water mark). A
    keyed column-cursor read skips them next time with the rows applied there (CursorBoundary),
    so a bad row at the mark is not read and rejected again. The raw row holds the source's
    text of each value, so its hash is the one the source computes for that row."""
    if not rejects.rejected_rows or rejects.raw is None:
        return ()
    query = sql.SQL("SELECT {}::text FROM {} AS r WHERE r.{} = ANY(%s) AND r.{} = %s").format(
        row_hash(rejects.columns),
        rejects.raw.identifier(),
        sql.Identifier(ARRIVAL),
        sql.Identifier(column),
    )
    rows = log.conn.execute(query, (rejects.rejected_rows, value)).fetchall()
    return tuple(r[0] for r in rows)
