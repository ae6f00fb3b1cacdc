"""Logical replication on the source: prerequisites, slots and snapshots (publications:
publication.py; the stream of changes: replication_stream.py).

A snapshot comes from `CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')` on a
`replication=database` connection (simple query protocol), imported by the reading
transaction with SET TRANSACTION SNAPSHOT: the snapshot and the slot start at the same point.
A table added to a shared slot's group later is read the same way through a TEMPORARY slot,
whose start is that table's boundary in the shared stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from typing import LiteralString

import psycopg
from psycopg import pq, sql

from pgflow.config.model import TableName
from pgflow.sources import pg_oids
from pgflow.sources.base import Position, ReadPlan
from pgflow.sources.catalog import Column, TableInfo
from pgflow.sources.pgoutput import lsn_to_int, lsn_to_text
from pgflow.sources.postgres import PostgresTableSource, set_portable_text_format

LSN_TYPE = "pg_lsn"
PLUGIN = "pgoutput"
ConnectSource = Callable[..., AbstractContextManager[psycopg.Connection]]


class ReplicationError(RuntimeError):
    """The source cannot replicate as asked; the message says how to fix it."""


class SlotInUse(ReplicationError):
    """Another backend holds the slot: most often another run of the same pipeline, for a
    moment. Retried (like the server's 55006); a consumer that keeps it fails once retries
    run out."""

    transient = True


@dataclass(frozen=True)
class SlotInfo:
    name: str
    plugin: str | None
    database: str | None
    active_pid: int | None
    confirmed_flush: int | None
    wal_status: str | None  # reserved, extended, unreserved, lost
    retained_bytes: int | None  # WAL the slot holds back from recycling


def check_server(conn: psycopg.Connection) -> None:
    """The server logs logically and the user may replicate; else the fix."""
    wal_level = _one(conn, "SHOW wal_level")
    if wal_level != "logical":
        raise ReplicationError(
            f"the source has wal_level = {wal_level}; CDC needs logical: set wal_level = logical "
            "in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart the server"
        )
    user, allowed = conn.execute(
        "SELECT current_user, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone() or ("?", False)
    if not allowed:
        raise ReplicationError(
            f"the source user {user} lacks the REPLICATION privilege that slots need: "
            f"ALTER ROLE {sql.Identifier(user).as_string(conn)} REPLICATION"
        )


def check_replica_identity(conn: psycopg.Connection, table: TableName) -> str:
    row = conn.execute(
        "SELECT c.relreplident, EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid"
        " AND i.indisprimary) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (table.schema, table.name),
    ).fetchone()
    assert row is not None, "describe_table found the table"
    identity, has_primary_key = str(row[0]), bool(row[1])
    fix = f"add a primary key, or ALTER TABLE {table} REPLICA IDENTITY FULL"
    if identity == "n":
        raise ReplicationError(
            f"{table} has REPLICA IDENTITY NOTHING: updates and deletes carry no key; {fix}"
        )
    if identity == "d" and not has_primary_key:
        raise ReplicationError(
            f"{table} has no primary key, so its updates and deletes carry no key; {fix}"
        )
    return identity


def identity_columns(conn: psycopg.Connection, table: TableName) -> tuple[str, ...] | None:
    """Columns an update or delete identifies its row by; None for REPLICA IDENTITY FULL."""
    rows = conn.execute(
        "SELECT c.relreplident, a.attname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_index i ON i.indrelid = c.oid AND ((c.relreplident = 'd' AND"
        " i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))"
        " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)"
        " WHERE n.nspname = %s AND c.relname = %s",
        (table.schema, table.name),
    ).fetchall()
    if not rows or rows[0][0] == "f":
        return None
    return tuple(name for _, name in rows if name is not None)


def slot_info(conn: psycopg.Connection, name: str) -> SlotInfo | None:
    row = conn.execute(
        "SELECT slot_name, plugin, database, active_pid, confirmed_flush_lsn::text, wal_status,"
        " (pg_current_wal_lsn() - restart_lsn)::bigint"
        " FROM pg_replication_slots WHERE slot_name = %s",
        (name,),
    ).fetchone()
    if row is None:
        return None
    name, plugin, database, active_pid, confirmed, wal_status, retained = row
    confirmed_lsn = lsn_to_int(confirmed) if confirmed else None
    return SlotInfo(name, plugin, database, active_pid, confirmed_lsn, wal_status, retained)


# The fix when a slot no longer holds a target's changes: every such error says it.
RESNAPSHOT = "re-snapshot: materialize with run config reset: true (or set source.options.reset)"


def check_slot(slot: SlotInfo | None, name: str, database: str) -> SlotInfo:
    """The slot this pipeline streams from, or an error that says how to recover."""
    resnapshot = RESNAPSHOT
    if slot is None:
        raise ReplicationError(
            f"replication slot {name} does not exist (dropped outside pgflow?); changes since "
            f"the last run cannot be recovered from it; {resnapshot}"
        )
    if slot.wal_status == "lost" or slot.confirmed_flush is None:
        raise ReplicationError(
            f"replication slot {name} was invalidated (wal_status {slot.wal_status}): the WAL it "
            f"needed was removed, e.g. by max_slot_wal_keep_size; {resnapshot}"
        )
    return check_slot_usable(slot, name, database)


def check_slot_usable(slot: SlotInfo, name: str, database: str) -> SlotInfo:
    """The slot is pgoutput's on `database` and free; its WAL may already be lost."""
    if slot.plugin != PLUGIN or slot.database != database:
        raise ReplicationError(
            f"replication slot {name} belongs to plugin {slot.plugin} on database "
            f"{slot.database}, not {PLUGIN} on {database}; choose another source.options.slot_name"
        )
    if slot.active_pid is not None:
        raise SlotInUse(
            f"replication slot {name} is in use by another consumer (backend PID "
            f"{slot.active_pid}); stop it, or give this pipeline its own source.options.slot_name"
        )
    return slot


def create_slot(conn: psycopg.Connection, name: str) -> int:
    """A slot without a snapshot (snapshot: never); returns where its stream starts."""
    row = conn.execute(
        "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)", (name, PLUGIN)
    ).fetchone()
    assert row is not None
    return lsn_to_int(row[0])


def drop_slot(conn: psycopg.Connection, name: str) -> None:
    conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))


def advance_slot(conn: psycopg.Connection, name: str, lsn: int) -> None:
    conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (name, lsn_to_text(lsn)))


def flush_lsn(conn: psycopg.Connection) -> int:
    return lsn_to_int(_one(conn, "SELECT pg_current_wal_flush_lsn()::text"))


@contextmanager
def exported_snapshot_slot(
    connect: ConnectSource, name: str, *, temporary: bool = False
) -> Iterator[tuple[int, str]]:
    """Create slot `name` and yield (its start LSN, the exported snapshot's name).

    The snapshot lives as long as the replication connection stays open and idle, so the
    caller must import it (SET TRANSACTION SNAPSHOT) inside this block. A temporary slot is
    dropped when the block ends; it only marks where a table's backfill meets the stream.
    """
    with connect(replication="database", autocommit=True) as conn:
        command = sql.SQL("CREATE_REPLICATION_SLOT {} {}LOGICAL {} (SNAPSHOT 'export')").format(
            sql.Identifier(name),
            sql.SQL("TEMPORARY " if temporary else ""),
            sql.Identifier(PLUGIN),
        )
        # Replication connections speak only the simple query protocol.
        result = conn.pgconn.exec_(command.as_bytes(conn))
        if result.status != pq.ExecStatus.TUPLES_OK:
            message = (result.error_message or b"").decode(errors="replace").strip()
            raise ReplicationError(_slot_creation_error(name, message, temporary))
        consistent_point = (result.get_value(0, 1) or b"").decode()
        snapshot = (result.get_value(0, 2) or b"").decode()
        yield lsn_to_int(consistent_point), snapshot


def _slot_creation_error(name: str, message: str, temporary: bool) -> str:
    if "all replication slots are in use" not in message:
        return f"could not create replication slot {name}: {message}"
    why = (
        "a table joining a shared slot's group is backfilled through one temporary slot"
        if temporary
        else "every CDC pipeline without a shared source.options.slot_name needs a slot"
    )
    return (
        f"could not create replication slot {name}: the source's max_replication_slots are all "
        f"in use ({message}); {why}. Raise max_replication_slots on the source (a restart), "
        "drop unused slots (`pgflow cdc cleanup` lists pgflow's), or share one slot between "
        "pipelines with the same source.options.slot_name"
    )


class SnapshotSource(PostgresTableSource):
    """The initial read of a CDC pipeline: the table as of the slot's exported snapshot.

    Stores the slot's start LSN as the pipeline's position, with the rows. `extra_null_columns`
    are timestamptz columns the target keeps and the source lacks (the soft-delete column),
    read as NULL.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        table: TableName,
        identity: str,
        snapshot: str,
        start_lsn: int,
        reason: str,
        extra_null_columns: tuple[str, ...] = (),
        include_columns: tuple[str, ...] | None = None,
    ):
        super().__init__(conn, table, include_columns=include_columns)
        self._identity = identity
        self._snapshot = snapshot
        self._start_lsn = start_lsn
        self._reason = reason
        self._extra = extra_null_columns

    @property
    def cursor_column(self) -> None:
        return None

    @property
    def info(self) -> TableInfo:
        info = super().info
        for name in self._extra:
            info = with_timestamptz_column(info, name)
        return info

    def begin_snapshot(self) -> None:
        # Must be the transaction's first statement.
        self._conn.execute(
            sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self._snapshot))
        )
        set_portable_text_format(self._conn)

    def column_expression(self, name: str) -> sql.Composable:
        if name in self._extra:
            return sql.SQL("NULL::timestamptz AS {}").format(sql.Identifier(name))
        return super().column_expression(name)

    def plan(self, stored: Position | None, reset: bool) -> ReadPlan:
        return ReadPlan(full=True, reason=self._reason)

    def position_after(self, staged_max: str | None) -> Position:
        return lsn_position(self._identity, self._start_lsn)


def lsn_position(identity: str, lsn: int) -> Position:
    """The position a CDC pipeline stores: where its next read of the slot starts."""
    return Position("cdc", identity, lsn_to_text(lsn), LSN_TYPE)


def with_timestamptz_column(info: TableInfo, name: str) -> TableInfo:
    """`info` plus a nullable timestamptz column `name` (kept by the sink, not the source)."""
    if info.column(name) is not None:
        return info
    column = Column(
        name=name,
        type_sql="timestamp with time zone",
        type_oid=pg_oids.TIMESTAMPTZ,
        kind="b",
        not_null=False,
        base_type_sql="timestamp with time zone",
        base_type_oid=pg_oids.TIMESTAMPTZ,
        element_oid=0,
        element_kind="",
        element_type_sql="",
        enum_name=None,
    )
    return replace(info, columns=(*info.columns, column))


def with_deleted_column(source: TableInfo, deleted_column: str | None) -> TableInfo:
    """The source's shape plus the soft-delete column the target keeps."""
    if deleted_column is None:
        return source
    return with_timestamptz_column(source, deleted_column)


def _one(conn: psycopg.Connection, query: LiteralString) -> str:
    row = conn.execute(query).fetchone()
    assert row is not None
    return str(row[0])
