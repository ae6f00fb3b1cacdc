"""Pipeline positions (cursor, xmin checkpoint), stored in the sink next to the data.

A position is written in the load's own transaction, after the rows it covers: a crash before
COMMIT loses both, a crash after keeps both. No run can skip rows or apply them twice.
One row per target table: the target's advisory lock, held by the load, serializes its runs.
Each row also records the identity of the target it was applied to (`target_identity`, see
position_owner.py), so a position never outlives its target.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres.ddl import create_shared_object
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.base import Position

STATE_TABLE = TableName("_pgflow", "pipeline_state")
_STATE = STATE_TABLE.identifier()

_CREATE = sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
    target_schema text NOT NULL,
    target_table text NOT NULL,
    pipeline text NOT NULL,
    kind text NOT NULL,
    source text NOT NULL,
    value text NOT NULL,
    value_type text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    target_identity text,
    PRIMARY KEY (target_schema, target_table)
)""").format(_STATE)


# The target's identity: its OID, which Postgres may reuse once the table is dropped, and the
# xmin of its row type (pg_type), written when the table is created, renamed or given a new
# owner; not by the column changes, GRANTs, indexes, VACUUM FULLs and TRUNCATEs a living target
# sees. A rename or new owner merely forces one full reload. NULL: no such table.
IDENTITY = sql.SQL(
    "(SELECT c.oid::text || '/' || t.xmin::text FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = c.reltype"
    " WHERE n.nspname = %s AND c.relname = %s)"
)


@dataclass(frozen=True)
class StoredPosition:
    position: Position
    identity: str | None  # the target it was applied to (None: stored by an older pgflow)
    current_identity: str | None  # the table under the target's name now (None: missing)


def read_position(conn: psycopg.Connection, target: TableName) -> Position | None:
    stored = read_stored(conn, target)
    return stored.position if stored else None


def read_stored(conn: psycopg.Connection, target: TableName) -> StoredPosition | None:
    """The stored position with its target identity and the current one, in one round trip."""
    if not _state_table_exists(conn):
        return None
    row = conn.execute(
        sql.SQL(
            "SELECT kind, source, value, value_type, to_jsonb(s) ->> 'target_identity', {}"
            " FROM {} s WHERE target_schema = %s AND target_table = %s"
        ).format(IDENTITY, _STATE),  # to_jsonb: a state table of an older pgflow lacks the column
        (target.schema, target.name, target.schema, target.name),
    ).fetchone()
    return StoredPosition(Position(*row[:4]), row[4], row[5]) if row else None


def write_position(
    log: SqlLog, target: TableName, pipeline: str, position: Position | None
) -> None:
    """Store `position` for `target` (None forgets it: the next run reads everything)."""
    schema = sql.Identifier(STATE_TABLE.schema)
    create_shared_object(log, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
    create_shared_object(log, _CREATE)
    _add_identity_column(log)
    if position is None:
        log.execute(
            sql.SQL("DELETE FROM {} WHERE target_schema = %s AND target_table = %s").format(_STATE),
            (target.schema, target.name),
        )
        return
    log.execute(
        sql.SQL(
            "INSERT INTO {} AS s (target_schema, target_table, pipeline, kind, source, value,"
            " value_type, target_identity) VALUES (%s, %s, %s, %s, %s, %s, %s, {})"
            " ON CONFLICT (target_schema, target_table) DO UPDATE SET pipeline = EXCLUDED.pipeline,"
            " kind = EXCLUDED.kind, source = EXCLUDED.source, value = EXCLUDED.value,"
            " value_type = EXCLUDED.value_type, updated_at = now(),"
            " target_identity = EXCLUDED.target_identity"
        ).format(_STATE, IDENTITY),
        (
            target.schema,
            target.name,
            pipeline,
            position.kind,
            position.source,
            position.value,
            position.value_type,
            target.schema,
            target.name,
        ),
    )


def _add_identity_column(log: SqlLog) -> None:
    """A state table made by an older pgflow gets the column. Checked first: ALTER TABLE would
    lock the table every load shares until this load commits."""
    row = log.conn.execute(
        "SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'target_identity'",
        (str(STATE_TABLE),),
    ).fetchone()
    if row is None:
        log.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS target_identity text").format(_STATE)
        )


def _state_table_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (str(STATE_TABLE),)).fetchone()
    return bool(row and row[0])
