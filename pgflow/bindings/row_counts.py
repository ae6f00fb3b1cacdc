"""`dagster/row_count` and `dagster/partition_row_count`: what the target holds after a run.

Dagster defines `dagster/row_count` as the number of rows in the table, and
`dagster/partition_row_count` as the rows of the materialized partition; what the run wrote
goes under pgflow's own keys (`pgflow/rows_written`, ...). A Postgres target's count comes
from the ledger its loads keep in `_pgflow.pipeline_state` (exact after a full load, plus
inserted minus deleted after an in-place one: no scan), else from a count(*) right after the
run's commit (`pgflow/row_count_from` says which); a Delta table's from its log's per-file
row counts. A time partition's rows are always counted: a scan of the window only.
The count is bounded by COUNT_TIMEOUT_SECONDS: past it the run keeps its committed data and
the metadata says why the count is missing instead of carrying a wrong one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
import psycopg
from psycopg import errors, sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres.inspect import row_count
from pgflow.sinks.postgres.state import read_target_rows
from pgflow.sources.catalog import TableInfo
from pgflow.sources.postgres import set_timeout
from pgflow.sources.window import TimeWindow

if TYPE_CHECKING:  # annotations only: the Delta modules import deltalake and polars
    from pgflow.sources.delta import DeltaSnapshot

# A count(*) reads the whole table: about 0.05 s per million narrow rows in cache (see the
# README), minutes only for tables of billions of rows, which then go without the count.
COUNT_TIMEOUT_SECONDS = 120.0
ROW_COUNT = "dagster/row_count"
PARTITION_ROW_COUNT = "dagster/partition_row_count"
SKIPPED = "pgflow/row_count_skipped"
ROW_COUNT_FROM = "pgflow/row_count_from"  # "ledger" or "count"
# A run of several partitions (a backfill range) gets one metadata set, copied to each
# partition's materialization: the window's count is then the range's, not a partition's.
RANGE_ROW_COUNT = "pgflow/partition_range_row_count"


def per_partition(context: dg.OutputContext, counts: dict[str, Any]) -> dict[str, Any]:
    """`counts`, with the window's count under pgflow's key when the run covers a range."""
    if PARTITION_ROW_COUNT in counts and len(context.asset_partition_keys) > 1:
        counts = dict(counts)
        counts[RANGE_ROW_COUNT] = counts.pop(PARTITION_ROW_COUNT)
    return counts


def postgres_counts(
    conn: psycopg.Connection, target: TableInfo, window: TimeWindow | None = None
) -> dict[str, Any]:
    """Rows in `target` now, and in `window` of it for a time-partitioned run."""
    try:
        ledger = read_target_rows(conn, target.table)
        rows = ledger if ledger is not None else _count(conn, target.table)
        counts = {
            ROW_COUNT: dg.MetadataValue.int(rows),
            ROW_COUNT_FROM: dg.MetadataValue.text("count" if ledger is None else "ledger"),
        }
        if window is not None:
            rows = _count(conn, target.table, window, target)
            counts[PARTITION_ROW_COUNT] = dg.MetadataValue.int(rows)
        return counts
    except errors.QueryCanceled:
        return {SKIPPED: dg.MetadataValue.text(_skipped_reason())}


def _count(
    conn: psycopg.Connection,
    table: TableName,
    window: TimeWindow | None = None,
    info: TableInfo | None = None,
) -> int:
    if window is None:
        return row_count(conn, table, timeout=COUNT_TIMEOUT_SECONDS)
    assert info is not None
    lower, upper = window.bounds(info)  # typed like the column, as the load's own slice
    query = sql.SQL("SELECT count(*) FROM {} WHERE {} >= %s AND {} < %s").format(
        table.identifier(),
        sql.Identifier(window.column),
        sql.Identifier(window.column),
    )
    with conn.transaction():
        set_timeout(conn, COUNT_TIMEOUT_SECONDS)
        row = conn.execute(query, (lower, upper)).fetchone()
    assert row is not None
    return int(row[0])


def _skipped_reason() -> str:
    return (
        f"counting the target took longer than {COUNT_TIMEOUT_SECONDS:g} s; the run's data is "
        "committed, only dagster/row_count is left out"
    )


def delta_counts(
    path: str,
    version: int,
    storage_options: dict[str, str] | None,
    window: tuple[str, Any, Any] | None,
    snapshot: DeltaSnapshot | None = None,
) -> dict[str, Any]:
    """Rows in `version` (the run's commit) of the Delta table, from its log's per-file row
    counts, and for a time-partitioned run in its partition: `window` is (column, lower,
    upper), the bounds typed like the column, the rows lower <= column < upper. `snapshot`:
    that version, when the caller has it open already (its log is not read again)."""
    from pgflow.sources.delta import open_snapshot

    if snapshot is None or snapshot.version != version:
        snapshot = open_snapshot(path, version, storage_options)
    rows = snapshot.rows
    if rows is None:  # a file without statistics: count its rows
        rows = _delta_rows(path, version, storage_options, "true")
    counts = {ROW_COUNT: dg.MetadataValue.int(rows)}
    if window is not None:
        column, lower, upper = window
        inside = _delta_rows(path, version, storage_options, _between(column, lower, upper))
        counts[PARTITION_ROW_COUNT] = dg.MetadataValue.int(inside)
    return counts


def _between(column: str, lower: Any, upper: Any) -> str:
    """Delta time partitions are of a date column (the loader and partition_replace refuse
    any other)."""
    import polars as pl

    from pgflow.sinks.delta.predicates import column_between

    return column_between(column, lower, upper, pl.Date())


def _delta_rows(
    path: str, version: int, storage_options: dict[str, str] | None, condition: str
) -> int:
    """DataFusion counts the rows matching `condition`, reading only the files that can hold
    them (a time partition's, as the table is partitioned by its column)."""
    import polars as pl
    from deltalake import DeltaTable, QueryBuilder

    table = DeltaTable(path, version=version, storage_options=storage_options)
    query = QueryBuilder().register("target", table)
    result = query.execute(f"SELECT count(*) FROM target WHERE {condition}").read_all()
    return int(pl.DataFrame(result).item())
