"""Pipeline positions (cursor, xmin checkpoint), stored in the sink next to the data.

A position is written in the load's own transaction, after the rows it covers: a crash before
COMMIT loses both, a crash after keeps both. No run can skip rows or apply them twice.
One row per target table: the target's advisory lock, held by the load, serializes its runs.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres.ddl import create_shared_object
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.base import Position

STATE_TABLE = TableName("_pgflow", "pipeline_state")
_STATE = sql.Identifier(STATE_TABLE.schema, STATE_TABLE.name)

_CREATE = sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
    target_schema text NOT NULL,
    target_table text NOT NULL,
    pipeline text NOT NULL,
    kind text NOT NULL,
    source text NOT NULL,
    value text NOT NULL,
    value_type text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_schema, target_table)
)""").format(_STATE)


def read_position(conn: psycopg.Connection, target: TableName) -> Position | None:
    if not _state_table_exists(conn):
        return None
    row = conn.execute(
        sql.SQL(
            "SELECT kind, source, value, value_type FROM {}"
            " WHERE target_schema = %s AND target_table = %s"
        ).format(_STATE),
        (target.schema, target.name),
    ).fetchone()
    return Position(*row) if row else None


def write_position(
    log: SqlLog, target: TableName, pipeline: str, position: Position | None
) -> None:
    """Store `position` for `target` (None forgets it: the next run reads everything)."""
    schema = sql.Identifier(STATE_TABLE.schema)
    create_shared_object(log, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
    create_shared_object(log, _CREATE)
    if position is None:
        log.execute(
            sql.SQL("DELETE FROM {} WHERE target_schema = %s AND target_table = %s").format(_STATE),
            (target.schema, target.name),
        )
        return
    log.execute(
        sql.SQL(
            "INSERT INTO {} AS s (target_schema, target_table, pipeline, kind, source, value,"
            " value_type) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (target_schema, target_table) DO UPDATE SET pipeline = EXCLUDED.pipeline,"
            " kind = EXCLUDED.kind, source = EXCLUDED.source, value = EXCLUDED.value,"
            " value_type = EXCLUDED.value_type, updated_at = now()"
        ).format(_STATE),
        (
            target.schema,
            target.name,
            pipeline,
            position.kind,
            position.source,
            position.value,
            position.value_type,
        ),
    )


def _state_table_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (str(STATE_TABLE),)).fetchone()
    return bool(row and row[0])
