"""full_refresh, `method: exchange`: build the new table beside the target, then swap by rename.

Readers keep reading the old table while the new one is filled and indexed; the ACCESS
EXCLUSIVE lock is held only for the swap. A plain rename would break what points at the old
table by OID, so the swap re-creates it on the new one: indexes and constraints (same names),
outbound foreign keys, grants (table and column), owner, comment, storage options, replica
identity, triggers, sequence ownership and identity positions, and dependent views
(`CREATE OR REPLACE VIEW` keeps their OIDs, grants and the views built on them).

What cannot be carried over safely is refused before anything changes: partitioned tables or
partitions, inheritance, inbound foreign keys, dependent materialized views, rules,
row-level security, publication membership.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, TupleRow, class_row, dict_row

from pgflow.config.model import TableName
from pgflow.sinks.postgres import index_rebuild, staging
from pgflow.sinks.postgres.ddl import with_suffix
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sinks.postgres.strategy import DirectStrategy, Fill
from pgflow.sinks.postgres.table_properties import (
    TableProperties,
    build_indexes,
    grants_of,
    indexes_of,
    restore_properties,
    restore_replica_identity,
)

SWAP_LOCK_TIMEOUT = "30s"


class ExchangeRefused(RuntimeError):
    """The target has something a rename swap would break; nothing was changed."""

    def __init__(self, message: str, reasons: tuple[str, ...] = ()):
        super().__init__(message)
        self.reasons = reasons  # what blocks the swap, for callers that word their own advice


@dataclass(frozen=True)
class DependentView:
    """A view on the target, re-created on the new table (`options`: its WITH options)."""

    schema: str
    name: str
    definition: str
    options: list[str]


@dataclass(frozen=True)
class ExchangePlan(TableProperties):
    """The target's properties, and what points at it by OID, read before the swap."""

    oid: int
    foreign_keys: list[tuple[str, str]]
    views: list[DependentView]
    serial_sequences: list[tuple[str, str]]  # (qualified sequence, column)
    identity_columns: list[tuple[str, str]]  # (qualified old sequence, column)


def exchange(log: SqlLog, target: TableName, fill: Callable[[TableName], int]) -> int:
    """full_refresh `method: exchange`: the source is COPYed into the new table, then swapped in.

    The new table is invisible until the swap commits, so it needs no staging table before it.
    """
    staging.drop_orphaned_staging(log, target)  # a killed parallel exchange's new table
    return swap_in(log, target, fill)


def swap_in(log: SqlLog, target: TableName, fill: Callable[[TableName], int]) -> int:
    """Build a table like the target, `fill` it, and swap it in place of the target.

    `fill(shadow)` writes the new contents and returns the rows written; everything the target
    carries (indexes, grants, views, ...) is moved over. Used by exchange and shadow_swap.
    """
    plan = plan_exchange(log.conn, target)
    tag = secrets.token_hex(4)
    shadow = TableName(target.schema, shadow_name(target, tag))
    create_shadow(log, target, shadow)
    rows = fill(shadow)
    swap(log, target, shadow, plan, tag)
    return rows


def shadow_name(target: TableName, tag: str) -> str:
    return with_suffix(target.name, f"__pgflow_new_{tag}")


def create_shadow(log: SqlLog, target: TableName, shadow: TableName) -> None:
    """An empty table with the target's columns, defaults and constraints, but no indexes:
    they are built once the rows are in."""
    log.execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL EXCLUDING INDEXES)").format(
            shadow.identifier(), target.identifier()
        )
    )


def swap(log: SqlLog, target: TableName, shadow: TableName, plan: ExchangePlan, tag: str) -> None:
    """Index the filled `shadow` (in the target's schema) and put it in the target's place."""
    identity_names = _identity_sequence_names(log.conn, plan)
    backup = TableName(target.schema, with_suffix(target.name, f"__pgflow_old_{tag}"))
    if plan.indexes:
        index_rebuild.raise_build_memory(log)
    build_indexes(log, shadow, plan.indexes, plan.foreign_keys, lambda i: _temp_index(tag, i))
    log.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(SWAP_LOCK_TIMEOUT)))
    log.execute(_rename(target, backup.name))
    log.execute(_rename(shadow, target.name))
    restore_properties(log, target, plan)
    _rebind_dependents(log, target, backup, plan)
    log.execute(sql.SQL("DROP TABLE {}").format(backup.identifier()))  # never CASCADE
    for i, index in enumerate(plan.indexes):
        log.execute(
            sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(target.schema, _temp_index(tag, i)), sql.Identifier(index.name)
            )
        )
    restore_replica_identity(log, target, plan)
    # The new table's identity sequences were named after the shadow; take the old names back.
    for column, name in identity_names:
        sequence = log.conn.execute(
            "SELECT pg_get_serial_sequence(%s, %s)",
            (target.identifier().as_string(log.conn), column),
        ).fetchone()
        assert sequence is not None and sequence[0] is not None
        log.execute(
            sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(
                sql.SQL(sequence[0]), sql.Identifier(name)
            )
        )


def plan_exchange(conn: psycopg.Connection, target: TableName) -> ExchangePlan:
    with conn.cursor(row_factory=dict_row) as cur:
        table = cur.execute(_TABLE_SQL, {"schema": target.schema, "name": target.name}).fetchone()
        assert table is not None, f"{target} must exist before an exchange"
        oid: int = table["oid"]
        _refuse_unsafe(cur, target, oid)
        return ExchangePlan(
            oid=oid,
            owner=table["owner"],
            comment=table["comment"],
            reloptions=list(table["reloptions"] or []),
            replica_identity=table["relreplident"],
            grants=grants_of(conn, oid),
            indexes=indexes_of(conn, oid),
            foreign_keys=[(r["conname"], r["def"]) for r in cur.execute(_FKS_SQL, {"oid": oid})],
            triggers=[r["def"] for r in cur.execute(_TRIGGERS_SQL, {"oid": oid})],
            views=_dependent_views(conn, oid),
            serial_sequences=_owned_sequences(cur, oid, "a"),
            identity_columns=_owned_sequences(cur, oid, "i"),
        )


def _refuse_unsafe(cur: psycopg.Cursor[DictRow], target: TableName, oid: int) -> None:
    reasons = [r["reason"] for r in cur.execute(_BLOCKERS_SQL, {"oid": oid})]
    if reasons:
        raise ExchangeRefused(
            f"method exchange cannot swap {target} without breaking it: {'; '.join(reasons)}. "
            f"Nothing was changed. Use method truncate_insert for this table, or remove the blocker.",
            tuple(reasons),
        )


def _rebind_dependents(
    log: SqlLog, target: TableName, backup: TableName, plan: ExchangePlan
) -> None:
    for sequence, column in plan.serial_sequences:
        log.execute(
            sql.SQL("ALTER SEQUENCE {} OWNED BY {}").format(
                sql.SQL(sequence), sql.Identifier(target.schema, target.name, column)
            )
        )
    for old_sequence, column in plan.identity_columns:
        log.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({}, {}), last_value, is_called) FROM {}"
            ).format(
                sql.Literal(target.identifier().as_string(log.conn)),
                sql.Literal(column),
                sql.SQL(old_sequence),
            )
        )
    for view in plan.views:
        options = view.options
        log.execute(
            sql.SQL("CREATE OR REPLACE VIEW {}{} AS {}").format(
                sql.Identifier(view.schema, view.name),
                sql.SQL(" WITH ({})").format(sql.SQL(", ").join(sql.SQL(o) for o in options))
                if options
                else sql.SQL(""),
                sql.SQL(view.definition.rstrip().rstrip(";")),
            )
        )


def _dependent_views(conn: psycopg.Connection, oid: int) -> list[DependentView]:
    # Fully qualified definitions, so re-creating them cannot resolve names differently.
    with conn.cursor(row_factory=class_row(DependentView)) as cur:
        previous = _one_value(conn.execute("SELECT current_setting('search_path')"))
        conn.execute("SELECT set_config('search_path', '', true)")
        views = cur.execute(_VIEWS_SQL, {"oid": oid}).fetchall()
        conn.execute("SELECT set_config('search_path', %s, true)", (previous,))
        return views


def _identity_sequence_names(conn: psycopg.Connection, plan: ExchangePlan) -> list[tuple[str, str]]:
    """(column, unqualified name of its identity sequence), read while the old one exists."""
    names = []
    for sequence, column in plan.identity_columns:
        row = conn.execute("SELECT relname FROM pg_class WHERE oid = %s::regclass", (sequence,))
        names.append((column, _one_value(row)))
    return names


def _one_value(cursor: psycopg.Cursor[TupleRow]) -> str:
    """The value of a query that returns exactly one row of one (text) column."""
    row = cursor.fetchone()
    assert row is not None
    return str(row[0])


def _owned_sequences(cur: psycopg.Cursor[DictRow], oid: int, deptype: str) -> list[tuple[str, str]]:
    rows = cur.execute(_SEQUENCES_SQL, {"oid": oid, "deptype": deptype}).fetchall()
    return [(r["sequence"], r["column"]) for r in rows]


def _rename(table: TableName, new_name: str) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} RENAME TO {}").format(
        table.identifier(), sql.Identifier(new_name)
    )


def _temp_index(tag: str, i: int) -> str:
    return f"pgflow_{tag}_{i}"


_TABLE_SQL = """
SELECT c.oid, pg_get_userbyid(c.relowner) AS owner, obj_description(c.oid, 'pg_class') AS comment,
       c.reloptions, c.relreplident
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(name)s
"""

_BLOCKERS_SQL = """
SELECT 'it is a partitioned table' AS reason FROM pg_class WHERE oid = %(oid)s AND relkind = 'p'
UNION ALL SELECT 'it is a partition of ' || inhparent::regclass FROM pg_inherits
  WHERE inhrelid = %(oid)s
UNION ALL SELECT 'table ' || inhrelid::regclass || ' inherits from it' FROM pg_inherits
  WHERE inhparent = %(oid)s
UNION ALL SELECT 'foreign key ' || quote_ident(conname) || ' on ' || conrelid::regclass
  || ' references it' FROM pg_constraint WHERE confrelid = %(oid)s AND contype = 'f'
UNION ALL SELECT DISTINCT 'materialized view ' || r.ev_class::regclass || ' depends on it'
  FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
  WHERE d.refobjid = %(oid)s AND d.classid = 'pg_rewrite'::regclass AND v.relkind = 'm'
UNION ALL SELECT 'rule ' || quote_ident(rulename) || ' is defined on it' FROM pg_rewrite
  WHERE ev_class = %(oid)s
UNION ALL SELECT 'row-level security is enabled or a policy exists' FROM pg_class c
  WHERE c.oid = %(oid)s AND (c.relrowsecurity OR EXISTS (SELECT 1 FROM pg_policy p
  WHERE p.polrelid = c.oid))
UNION ALL SELECT 'it is in publication ' || quote_ident(p.pubname) FROM pg_publication_rel pr
  JOIN pg_publication p ON p.oid = pr.prpubid WHERE pr.prrelid = %(oid)s
"""

_FKS_SQL = """
SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
WHERE conrelid = %(oid)s AND contype = 'f' ORDER BY conname
"""

_TRIGGERS_SQL = """
SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger
WHERE tgrelid = %(oid)s AND NOT tgisinternal ORDER BY tgname
"""

_VIEWS_SQL = """
SELECT DISTINCT n.nspname AS schema, v.relname AS name, pg_get_viewdef(v.oid) AS definition,
       COALESCE(v.reloptions, '{}') AS options
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v'
JOIN pg_namespace n ON n.oid = v.relnamespace
WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %(oid)s AND v.oid <> %(oid)s
"""

_SEQUENCES_SQL = """
SELECT s.oid::regclass::text AS sequence, a.attname AS column
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.refobjid = %(oid)s AND d.classid = 'pg_class'::regclass AND d.deptype = %(deptype)s
"""


class Exchange(DirectStrategy):
    """full_refresh `method: exchange`, the strategy `exchange` runs (strategies.py)."""

    key = "full_refresh/exchange"
    parallel = True

    def fill_target(self, log: SqlLog, target: TableName, fill: Fill) -> int:
        return exchange(log, target, fill)
