"""Pipeline positions (cursor, xmin checkpoint), stored in the sink next to the data.

A position is written in the load's own transaction, after the rows it covers: a crash before
COMMIT loses both, a crash after keeps both. No run can skip rows or apply them twice.
One row per target table: the target's advisory lock, held by the load, serializes its runs.
Each row also records the identity of the target it was applied to (`target_identity`, see
position_owner.py), so a position never outlives its target, and the target's row count
(`target_rows`, the ledger: row_change.py), so a run reports it without counting the table.
Every Postgres-target load writes its row; a load without a position (full_refresh) stores
kind 'full', which the position readers skip.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres.ddl import create_shared_object
from pgflow.sinks.postgres.row_change import UNKNOWN, RowChange
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
    target_rows bigint,
    PRIMARY KEY (target_schema, target_table)
)""").format(_STATE)


# The target's identity: its OID, which Postgres may reuse once the table is dropped, and the
# xmin of its row type (pg_type), written when the table is created, renamed or given a new
# owner; not by the column changes, GRANTs, indexes, VACUUM FULLs and TRUNCATEs a living target
# sees. A rename or new owner merely forces one full reload. NULL: no such table.
_IDENTITY_OF = (
    "(SELECT c.oid::text || '/' || t.xmin::text FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = c.reltype"
    " WHERE n.nspname = {} AND c.relname = {})"
)
IDENTITY = sql.SQL(_IDENTITY_OF).format(sql.Placeholder(), sql.Placeholder())
IDENTITY_NAMED = sql.SQL(_IDENTITY_OF).format(  # the parameters are also text columns' values
    sql.SQL("{}::text").format(sql.Placeholder("schema")),
    sql.SQL("{}::text").format(sql.Placeholder("table")),
)


@dataclass(frozen=True)
class StoredPosition:
    position: Position
    identity: str | None  # the target it was applied to (None: stored by an older pgflow)
    current_identity: str | None  # the table under the target's name now (None: missing)


# The kind of a row that holds no position, only the ledger (a full read needs no position).
NO_POSITION = "full"


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
            " FROM {} s WHERE target_schema = %s AND target_table = %s AND kind <> %s"
        ).format(IDENTITY, _STATE),  # to_jsonb: a state table of an older pgflow lacks the column
        (target.schema, target.name, target.schema, target.name, NO_POSITION),
    ).fetchone()
    return StoredPosition(Position(*row[:4]), row[4], row[5]) if row else None


def write_position(
    log: SqlLog,
    target: TableName,
    pipeline: str,
    position: Position | None,
    rows: RowChange = UNKNOWN,
) -> None:
    """Store `position` for `target` (None: no position, the next run reads everything) and
    the target's row count after `rows` (the ledger; unknown unless told)."""
    if not _ensure_state_table(log, required=position is not None):
        return
    if position is None and not rows.known:
        log.execute(
            sql.SQL("DELETE FROM {} WHERE target_schema = %s AND target_table = %s").format(_STATE),
            (target.schema, target.name),
        )
        return
    stored: tuple[str, ...] = (NO_POSITION, "", "", "")
    if position is not None:
        stored = (position.kind, position.source, position.value, position.value_type)
    log.execute(
        sql.SQL(
            "INSERT INTO {} AS s (target_schema, target_table, pipeline, kind, source, value,"
            " value_type, target_identity, target_rows)"
            " VALUES (%(schema)s, %(table)s, %(pipeline)s, %(kind)s, %(source)s, %(value)s,"
            " %(value_type)s, {}, %(total)s)"
            " ON CONFLICT (target_schema, target_table) DO UPDATE SET pipeline = EXCLUDED.pipeline,"
            " kind = EXCLUDED.kind, source = EXCLUDED.source, value = EXCLUDED.value,"
            " value_type = EXCLUDED.value_type, updated_at = now(),"
            " target_identity = EXCLUDED.target_identity, target_rows = {}"
        ).format(_STATE, IDENTITY_NAMED, _NEXT_ROWS),
        {
            "schema": target.schema,
            "table": target.name,
            "pipeline": pipeline,
            **dict(zip(("kind", "source", "value", "value_type"), stored, strict=True)),
            "total": rows.total,
            "delta": rows.delta,
        },
    )


# The count after a change: its total, else the stored count plus its delta, when the stored
# count is of this very table (another table under the name, or no count: unknown).
_NEXT_ROWS = sql.SQL(
    "CASE WHEN %(total)s::bigint IS NOT NULL THEN %(total)s::bigint"
    " WHEN s.target_identity = EXCLUDED.target_identity"
    " THEN s.target_rows + %(delta)s::bigint END"
)


def read_target_rows(conn: psycopg.Connection, target: TableName) -> int | None:
    """The target's row count from the ledger; None when unknown, when no load stored one, or
    when the table under the target's name is not the one it was counted in (then count)."""
    if not _state_table_exists(conn):
        return None
    row = conn.execute(
        sql.SQL(
            "SELECT (to_jsonb(s) ->> 'target_rows')::bigint FROM {} s"
            " WHERE target_schema = %(schema)s AND target_table = %(table)s"
            " AND to_jsonb(s) ->> 'target_identity' = {}"
        ).format(_STATE, IDENTITY_NAMED),  # to_jsonb: an older state table lacks the columns
        {"schema": target.schema, "table": target.name},
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


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


def _ensure_state_table(log: SqlLog, *, required: bool) -> bool:
    """Create the state table (or add the columns an older pgflow's lacks). A load without a
    position (full_refresh) that may not create it goes on without a ledger: its runs count
    the target, as before; such loads never needed CREATE on the sink database."""
    if not _state_table_exists(log.conn):
        schema = sql.Identifier(STATE_TABLE.schema)
        try:
            with log.conn.transaction():
                create_shared_object(log, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
                create_shared_object(log, _CREATE)
        except psycopg.errors.InsufficientPrivilege:
            if required:
                raise
            return False
    _add_identity_column(log)
    _add_target_rows_column(log)
    return True


def _add_target_rows_column(log: SqlLog) -> None:
    """The ledger's column, for a state table of an older pgflow (checked first, as above)."""
    row = log.conn.execute(
        "SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'target_rows'",
        (str(STATE_TABLE),),
    ).fetchone()
    if row is None:
        log.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS target_rows bigint").format(_STATE)
        )


def _state_table_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (str(STATE_TABLE),)).fetchone()
    return bool(row and row[0])
