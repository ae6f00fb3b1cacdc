"""A Delta member's table against the source's catalog, at the start of each round.

A column the source gained is added by the next merge (merge_schema), unless it has a
default: ADD COLUMN ... DEFAULT gives the existing rows a value (a constant one is stored once,
pg_attribute.atthasmissing; a volatile one rewrites the table) and no change in the stream
carries it, so the rows already in Delta would read NULL. Such a column, or one whose
default was set later (pgflow cannot tell the two apart), asks for a re-snapshot. A column the source lost, or one whose type changed, stops the member with the
fix, as for a Postgres target.
"""

from __future__ import annotations

import dataclasses

import polars as pl
import psycopg
from deltalake import DeltaTable

from pgflow.flows.cdc.model import CdcApplyError, DeltaCdcTarget
from pgflow.sinks.delta.numerics import fits_unconstrained, is_unconstrained, kept_types
from pgflow.sources.arrow_columns import ArrowColumn, arrow_columns, polars_schema
from pgflow.sources.catalog import TableInfo
from pgflow.sources.cdc import with_deleted_column

_MISSING_SQL = """
SELECT a.attname FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND a.attname = ANY(%s) AND (a.atthasmissing OR a.atthasdef)
ORDER BY a.attnum
"""


def snapshot_columns(info: TableInfo, target: DeltaCdcTarget) -> list[ArrowColumn]:
    """The Arrow columns a snapshot of `info` writes (unconstrained numerics per numeric_as)."""
    catalog = with_deleted_column(info, target.deleted_column)
    columns = arrow_columns(catalog)
    if target.numeric_as != "string":
        return columns
    return [
        dataclasses.replace(c, dtype=pl.String(), read_as=pl.String(), sql_template="{}")
        if is_unconstrained(catalog.column(c.name))
        else c
        for c in columns
    ]


def check_table_shape(
    control: psycopg.Connection, table: DeltaTable, target: DeltaCdcTarget, info: TableInfo
) -> None:
    catalog = with_deleted_column(info, target.deleted_column)
    want = polars_schema(arrow_columns(catalog))
    have = kept_types(table, rewrites=False)
    lost = [name for name in have if name not in want]
    retyped = [
        f"{name} (Delta {have[name]}, source {dtype})"
        for name, dtype in want.items()
        if name in have
        and have[name] != dtype
        and not fits_unconstrained(catalog.column(name), have[name])
    ]
    if lost or retyped:
        what = [f"{n} (gone from the source)" for n in lost] + [
            f"{r}: type changed" for r in retyped
        ]
        raise CdcApplyError(
            f"the Delta table at {target.path} no longer fits the source table {info.table}: "
            f"{', '.join(what)}; nothing was applied. Re-snapshot with reset: true"
        )
    added = [name for name in want if name not in have]
    if added and target.strategy.on_schema_change == "fail":
        raise CdcApplyError(
            f"the source table {info.table} has new column(s) {', '.join(added)} that the "
            f"Delta table at {target.path} lacks, and sink.strategy.on_schema_change is fail. "
            "Set it to add_columns, or re-snapshot with reset: true"
        )
    if added:
        _check_no_missing_values(control, target, info, added)


def _check_no_missing_values(
    control: psycopg.Connection, target: DeltaCdcTarget, info: TableInfo, added: list[str]
) -> None:
    rows = control.execute(_MISSING_SQL, (info.table.schema, info.table.name, added)).fetchall()
    if rows:
        names = ", ".join(r[0] for r in rows)
        raise CdcApplyError(
            f"column(s) {names} were added to the source table {info.table} with a default, "
            f"which gave its existing rows a value that no change carries: the rows already in "
            f"the Delta table at {target.path} would read NULL. Re-snapshot with reset: true"
        )
