"""The target's columns: the Delta table's (typed by sinks/postgres/delta_types), the key as
primary key, and the two the sync maintains (hdiff, sync_ldts, see upsert.py).

A missing target is created; an existing one is checked to fit (same key, the sync's columns,
each column's type, no NOT NULL column the Delta table cannot fill) and given the Delta
columns it lacks. Delta columns the target cannot take are refused before anything is read.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from pgflow.config.model import TableName
from pgflow.flows.delta_sync.errors import DeltaSyncError
from pgflow.flows.delta_sync.upsert import HDIFF, STAGED_HDIFF, SYNC_LDTS
from pgflow.sinks.postgres import ddl
from pgflow.sinks.postgres.delta_types import (
    TEXT,
    plain_column,
    postgres_column,
    table_info,
)
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources import delta, pg_oids
from pgflow.sources.catalog import Column, TableInfo, describe_table

MAX_IDENTIFIER_BYTES = 63


def check_columns(snapshot: delta.DeltaSnapshot, key: Sequence[str]) -> None:
    """Refuse a Delta table whose columns the target cannot take."""
    missing = [k for k in key if snapshot.column(k) is None]
    if missing:
        raise DeltaSyncError(
            f"key column(s) {', '.join(missing)} are not in Delta table "
            f"{snapshot.table_uri}; its columns are {', '.join(snapshot.column_names)}"
        )
    for name in (HDIFF, SYNC_LDTS, STAGED_HDIFF):
        if snapshot.column(name) is not None:
            raise DeltaSyncError(
                f"Delta table {snapshot.table_uri} has a column {name}, which the sync "
                f"adds to the target itself; rename it in the Delta table"
            )
    for name in snapshot.column_names:
        if len(name.encode()) > MAX_IDENTIFIER_BYTES:
            raise DeltaSyncError(
                f"Delta column {name!r} is longer than Postgres' {MAX_IDENTIFIER_BYTES}-byte "
                f"identifier limit; rename it in the Delta table"
            )


def create_target(
    log: SqlLog,
    snapshot: delta.DeltaSnapshot,
    target: TableName,
    key: tuple[str, ...],
    fillfactor: int,
) -> None:
    ddl.create_target(log, target_info(snapshot, target, key), target, key, fillfactor)


def target_info(
    snapshot: delta.DeltaSnapshot, target: TableName, key: tuple[str, ...]
) -> TableInfo:
    columns = [
        *delta_columns(snapshot, key),
        plain_column(HDIFF, TEXT.sql, TEXT.oid, True),
        plain_column(SYNC_LDTS, "timestamp with time zone", pg_oids.TIMESTAMPTZ, True),
    ]
    return table_info(target, columns, key)


def delta_columns(snapshot: delta.DeltaSnapshot, key: Sequence[str]) -> list[Column]:
    return [
        postgres_column(c.name, c.dtype, not c.nullable or c.name in key, c.pg_type)
        for c in snapshot.columns
    ]


def reconcile_target(
    log: SqlLog, snapshot: delta.DeltaSnapshot, target: TableName, key: Sequence[str]
) -> tuple[str, ...]:
    """Check an existing target fits; add Delta columns it lacks. Returns those added."""
    current = describe_table(log.conn, target)
    _check_key_and_sync_columns(current, target, key)
    added = []
    for column in delta_columns(snapshot, key):
        existing = current.column(column.name)
        if existing is None:
            log.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                    target.identifier(),
                    sql.Identifier(column.name),
                    sql.SQL(column.type_sql),
                )
            )
            added.append(column.name)
        elif existing.base_type_sql != column.type_sql:
            raise ddl.TargetSchemaError(
                f"target {target} column {column.name} is {existing.base_type_sql}, the Delta "
                f"table's type maps to {column.type_sql}; alter the column or drop the target "
                f"(the next run re-creates it)"
            )
    _check_extra_columns(current, target, {c.name for c in snapshot.columns})
    return tuple(added)


def _check_key_and_sync_columns(current: TableInfo, target: TableName, key: Sequence[str]) -> None:
    where = f"target {target}"
    if set(current.primary_key) != set(key):
        raise ddl.TargetSchemaError(
            f"{where} has primary key ({', '.join(current.primary_key) or 'none'}), the sync "
            f"upserts on ({', '.join(key)}); make them the same"
        )
    for name in (HDIFF, SYNC_LDTS):
        if current.column(name) is None:
            raise ddl.TargetSchemaError(
                f"{where} lacks the column {name} the sync maintains; it was not created by "
                f"the sync: drop it (the next run re-creates it) or add the column"
            )


def _check_extra_columns(current: TableInfo, target: TableName, wanted: set[str]) -> None:
    """Target columns the Delta table lacks must take NULLs (or have a default)."""
    for column in current.columns:
        extra = column.name not in wanted and column.name not in (HDIFF, SYNC_LDTS)
        if extra and column.not_null and not column.has_default:
            raise ddl.TargetSchemaError(
                f"target {target} column {column.name} is NOT NULL but not in the Delta "
                f"table, so new rows cannot fill it; drop the column or its NOT NULL"
            )
