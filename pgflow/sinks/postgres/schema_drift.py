"""Schema drift between the source and an existing target, per `on_schema_change`.

- a source column the target lacks is NEW; `add_columns` (default) and `sync` add it;
- a target column the source lacks, with no default, is GONE (pgflow creates target columns
  without defaults, so such a column was replicated before and dropped at the source); `sync`
  drops it. Target columns with a default, identity or generated value were added locally and
  are left alone: they fill themselves;
- a column whose type the source's type does not implicitly cast to is RETYPED (widening such
  as integer -> bigint or a larger numeric scale is not drift); `sync` alters it to the source's
  type.
Anything the policy does not allow stops the load before a row is written, naming each column.
The ALTERs run in the load's transaction, so a failed load also takes them back.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from pgflow.config.model import SchemaChangePolicy
from pgflow.sinks.postgres.ddl import TargetSchemaError, target_type
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.catalog import Column, TableInfo


@dataclass(frozen=True)
class Drift:
    new: tuple[Column, ...]
    gone: tuple[Column, ...]
    retyped: tuple[tuple[Column, Column], ...]  # (source column, target column)

    def __bool__(self) -> bool:
        return bool(self.new or self.gone or self.retyped)


def find_drift(
    log: SqlLog, source: TableInfo, target: TableInfo, partial_rows: bool = False
) -> Drift:
    """`partial_rows`: the load changes some columns of existing rows (update, delete), so
    target columns the source lacks are expected, never GONE."""
    source_names = set(source.column_names)
    new = tuple(c for c in source.columns if target.column(c.name) is None)
    gone = tuple(
        c
        for c in target.columns
        if c.name not in source_names and not c.has_default and not partial_rows
    )
    retyped = tuple(
        (c, t)
        for c in source.columns
        if (t := target.column(c.name)) is not None
        and not _casts_implicitly(log, c, t, target.table.schema)
    )
    return Drift(new, gone, retyped)


def reconcile(
    log: SqlLog,
    source: TableInfo,
    target: TableInfo,
    policy: SchemaChangePolicy,
    partial_rows: bool = False,
    keep_types: bool = False,
) -> bool:
    """Apply what `policy` allows, refuse the rest; True when the target was altered.
    `keep_types` (on_bad_rows: reject): short of `sync`, a retyped column keeps its type and
    each value is cast into it, a row whose value does not cast is rejected."""
    drift = types_kept(find_drift(log, source, target, partial_rows), policy, keep_types)
    if not drift:
        return False
    refused = refused_changes(drift, policy)
    if refused:
        raise TargetSchemaError(
            f"the source {source.table} and the target {target.table} differ: "
            f"{'; '.join(refused)}. Nothing was written. Set sink.strategy.on_schema_change "
            f"to {'sync' if policy == 'add_columns' else 'add_columns or sync'} to let pgflow "
            f"change the target, or change it yourself"
        )
    table = target.table.identifier()
    for column in drift.new:
        log.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                table, sql.Identifier(column.name), target_type(column, target.table.schema)
            )
        )
    for column in drift.gone:
        log.execute(
            sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(table, sql.Identifier(column.name))
        )
    for column, _ in drift.retyped:
        new_type = target_type(column, target.table.schema)
        log.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}::{}").format(
                table, sql.Identifier(column.name), new_type, sql.Identifier(column.name), new_type
            )
        )
    return True


def types_kept(drift: Drift, policy: SchemaChangePolicy, keep_types: bool) -> Drift:
    """`drift` without its retyped columns when the load casts each value into the target's
    type (`keep_types`, on_bad_rows: reject) and the policy would not retype them (not sync)."""
    if keep_types and policy != "sync":
        return Drift(drift.new, drift.gone, ())
    return drift


def refused_changes(drift: Drift, policy: SchemaChangePolicy) -> list[str]:
    """The drifts `policy` does not absorb: the next load fails on each of them."""
    refused = []
    if drift.new and policy == "fail":
        refused.append(f"new source column(s) {_names(drift.new)}")
    if drift.gone and policy != "sync":
        refused.append(
            f"column(s) {_names(drift.gone)} are in the target but no longer in the source"
        )
    if drift.retyped and policy != "sync":
        changes = ", ".join(f"{s.name} ({t.type_sql} -> {s.type_sql})" for s, t in drift.retyped)
        refused.append(f"retyped column(s) {changes}")
    return refused


def _names(columns: tuple[Column, ...]) -> str:
    return ", ".join(c.name for c in columns)


def _casts_implicitly(log: SqlLog, source: Column, target: Column, schema: str) -> bool:
    """True when values of the source column's type go into the target column unchanged."""
    wanted = target_type(source, schema).as_string(log.conn)
    row = log.conn.execute(
        "SELECT w.oid = %(target)s OR EXISTS (SELECT 1 FROM pg_cast WHERE castsource = w.oid"
        " AND casttarget = %(target)s AND castcontext = 'i')"
        " FROM (SELECT to_regtype(%(wanted)s)::oid AS oid) w",
        {"target": target.base_type_oid, "wanted": wanted},
    ).fetchone()
    return bool(row and row[0])
