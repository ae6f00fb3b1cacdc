"""Materialization metadata for a load: Dagster's standard keys plus pgflow's own.

What the run wrote is under pgflow's keys; `dagster/row_count` (rows in the table after the
run) comes from pgflow.bindings.row_counts.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg
import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgflow.config.environment import env_var_for
from pgflow.config.model import PipelineSpec, SinkSpec, SourceSpec, TableName
from pgflow.config.naming import source_key
from pgflow.sources.base import ReadPlan
from pgflow.sources.catalog import TableInfo

if TYPE_CHECKING:  # annotations only: the Delta modules import deltalake and polars
    from pgflow.flows.cdc.model import CdcResult
    from pgflow.flows.delta_load import DeltaLoadResult
    from pgflow.flows.delta_sync.result import SyncResult
    from pgflow.flows.postgres_load import LoadResult
    from pgflow.sources.delta import DeltaSnapshot


def table_name(database: str | None, table: TableName) -> str:
    """`dagster/table_name` of a Postgres table: `<database>.<schema>.<table>`, or
    `<schema>.<table>` where the database is not known (see database_at_load)."""
    return f"{database}.{table}" if database else str(table)


def endpoint_table_name(
    endpoint: SourceSpec | SinkSpec, environ: Mapping[str, str] | None = None
) -> str:
    """`dagster/table_name` of a source or target as the definitions know it: the Postgres
    table's full name, or the Delta table's URI (its path as the spec writes it)."""
    if endpoint.type == "delta":
        return str(endpoint.path)
    assert endpoint.table is not None
    database = database_at_load(endpoint.connection_id, endpoint.connection_type, environ)
    return table_name(database, endpoint.table)


def database_at_load(
    connection_id: str | None, connection_type: str, environ: Mapping[str, str] | None = None
) -> str | None:
    """The database an `env` connection names (libpq's defaults: PGDATABASE, then the user),
    read from its variable without connecting; None for Vault (secrets are read by runs
    only) or a variable not set where the code location loads."""
    environ = os.environ if environ is None else environ
    if connection_type != "env" or not connection_id:
        return None
    conninfo = environ.get(env_var_for(connection_id))
    if not conninfo:
        return None
    return _database(conninfo, environ.get("PGDATABASE"), environ.get("PGUSER"))


@functools.lru_cache(maxsize=64)
def _database(conninfo: str, pgdatabase: str | None, pguser: str | None) -> str | None:
    try:
        parts = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return None  # reported by the run that opens it, without the secret
    return str(parts.get("dbname") or pgdatabase or parts.get("user") or pguser or "") or None


def lineage_metadata(pipeline: PipelineSpec, columns: Sequence[str]) -> dict[str, Any]:
    """`dagster/column_lineage`: each target column from the source column of its name (pgflow
    copies columns by name). Columns pgflow adds (CDC's deleted_column) and columns outside
    `include_columns` (kept from before) have none."""
    options = pipeline.source.options
    source = dg.AssetKey(list(source_key(pipeline.source)))
    included = set(options.include_columns) if options.include_columns else None
    deps = {
        column: [dg.TableColumnDep(asset_key=source, column_name=column)]
        for column in columns
        if column != options.deleted_column and (included is None or column in included)
    }
    lineage = dg.TableColumnLineage(deps_by_column=deps)
    return {"dagster/column_lineage": dg.MetadataValue.column_lineage(lineage)}


def column_schema(info: TableInfo) -> dg.TableSchema:
    key = set(info.primary_key)
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.type_sql,
                constraints=dg.TableColumnConstraints(
                    nullable=not c.not_null, unique=key == {c.name}
                ),
            )
            for c in info.columns
        ]
    )


def load_metadata(result: LoadResult, database: str) -> dict[str, Any]:
    rows_per_second = result.rows / result.seconds if result.seconds > 0 else 0.0
    metadata: dict[str, Any] = {
        "pgflow/rows_written": dg.MetadataValue.int(result.rows),
        "dagster/table_name": dg.MetadataValue.text(table_name(database, result.target)),
        "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(result.target_info)),
        "pgflow/strategy": dg.MetadataValue.text(result.strategy),
        "pgflow/duration_seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "pgflow/copy_seconds": dg.MetadataValue.float(round(result.copy_seconds, 3)),
        "pgflow/rows_per_second": dg.MetadataValue.float(round(rows_per_second, 1)),
        "pgflow/bytes_moved": dg.MetadataValue.int(result.bytes),
        "pgflow/copy_format": dg.MetadataValue.text(result.copy_format),
        "pgflow/created_target": dg.MetadataValue.bool(result.created_target),
        "pgflow/sql": dg.MetadataValue.md("```sql\n" + ";\n".join(result.statements) + ";\n```"),
        "pgflow/duplicates_dropped": dg.MetadataValue.int(result.duplicates_dropped),
        **sink_metrics(result),
    }
    if result.streams > 1 or result.one_stream_reason:
        metadata["pgflow/copy_streams"] = dg.MetadataValue.int(result.streams)
    if result.one_stream_reason:
        metadata["pgflow/one_stream_reason"] = dg.MetadataValue.text(result.one_stream_reason)
    if result.read is not None:
        metadata.update(position_metadata(result))
    for name, value in result.strategy_metadata.items():  # e.g. rows_deleted by a replace
        metadata[f"pgflow/{name}"] = dg.MetadataValue.int(value)
    return metadata


def sink_metrics(result: LoadResult) -> dict[str, Any]:
    """The write's own figures: transactions that wrote the target (`batches`, one per table
    load), rows per batch, and the seconds in the statements that wrote it (COPY or apply)."""
    average = result.rows / result.batches if result.batches else 0.0
    return {
        "pgflow/batches": dg.MetadataValue.int(result.batches),
        "pgflow/avg_batch_rows": dg.MetadataValue.float(round(average, 1)),
        "pgflow/write_seconds": dg.MetadataValue.float(round(result.write_seconds, 3)),
    }


def load_summary(result: LoadResult) -> str:
    text = (
        f"{result.target}: {result.rows:,} rows in {result.seconds:.1f}s "
        f"({result.strategy}, {result.copy_format} COPY"
        f"{f', {result.streams} streams' if result.streams > 1 else ''})"
    )
    if result.one_stream_reason:
        text += f"; one COPY stream: {result.one_stream_reason}"
    if result.read is not None:
        text += f"; read {result.rows_read:,} rows, {read_description(result.read)}"
    return text


def read_description(read: ReadPlan) -> str:
    if read.full:
        return f"full read ({read.reason})"
    return f"incremental from {read.lower_bound}"


def position_metadata(result: LoadResult) -> dict[str, Any]:
    """Where an incremental read started and where the next one will, plus what it moved."""
    read = result.read
    assert read is not None
    before = read.since.value if read.since else ""
    after = result.position_after.value if result.position_after else ""
    return {
        "pgflow/read": dg.MetadataValue.text(read_description(read)),
        "pgflow/cursor_before": dg.MetadataValue.text(before),
        "pgflow/cursor_after": dg.MetadataValue.text(after),
        "pgflow/rows_read": dg.MetadataValue.int(result.rows_read),
        "pgflow/rows_applied": dg.MetadataValue.int(result.rows),
        **position_reset_metadata(result.position_reset),
        **boundary_metadata(result.boundary_rows),
    }


def boundary_metadata(rows: int | None) -> dict[str, Any]:
    """`pgflow/cursor_boundary_keys`: the rows at the new high-water mark the next read skips
    (cursor_boundary); 0 when none are kept (a keyless load, or above the cap)."""
    return {} if rows is None else {"pgflow/cursor_boundary_keys": dg.MetadataValue.int(rows)}


def position_reset_metadata(reason: str | None) -> dict[str, Any]:
    """`pgflow/position_reset`: why a stored position was discarded (position_owner)."""
    return {} if reason is None else {"pgflow/position_reset": dg.MetadataValue.text(reason)}


def cdc_summary(result: CdcResult, target: TableName | str) -> str:
    snapshot = f"snapshot of {result.snapshot.rows:,} rows, " if result.snapshot else ""
    return (
        f"{target}: {snapshot}{result.changes:,} changes in {len(result.batches)} batch(es), "
        f"{result.rows_applied:,} rows written"
    )


def cdc_metadata(result: CdcResult, target: TableInfo, database: str) -> dict[str, Any]:
    """What a CDC run applied to a Postgres table, and where the stream stands."""
    return {
        "dagster/table_name": dg.MetadataValue.text(table_name(database, target.table)),
        "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(target)),
        **_cdc_figures(result),
    }


def cdc_delta_metadata(
    result: CdcResult, table: DeltaSnapshot, path: str, key: Sequence[str]
) -> dict[str, Any]:
    """What a CDC run applied to a Delta table (`table`: the version it left), and where the
    stream stands."""
    return {
        "dagster/uri": dg.MetadataValue.path(path),
        "dagster/table_name": dg.MetadataValue.text(path),
        "dagster/column_schema": dg.MetadataValue.table_schema(delta_column_schema(table, key)),
        "pgflow/delta_version": dg.MetadataValue.int(table.version),
        **_cdc_figures(result),
    }


def delta_column_schema(table: DeltaSnapshot, key: Sequence[str]) -> dg.TableSchema:
    """A Delta table's columns, typed as the Postgres types pgflow recorded in the fields."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.pg_type or str(c.dtype),
                constraints=dg.TableColumnConstraints(
                    nullable=c.nullable, unique=set(key) == {c.name}
                ),
            )
            for c in table.columns
        ]
    )


def _cdc_figures(result: CdcResult) -> dict[str, Any]:
    """What a CDC run applied, where the stream stands, and what the slot holds back."""
    before = result.position_before.value if result.position_before else ""
    after = result.position_after.value if result.position_after else ""
    batches = result.batches
    snapshot_rows = result.snapshot.rows if result.snapshot else 0
    read = f"snapshot ({result.snapshot_reason}), then stream" if result.snapshot else "stream"
    metadata: dict[str, Any] = {
        "pgflow/rows_written": dg.MetadataValue.int(result.rows_applied + snapshot_rows),
        "pgflow/strategy": dg.MetadataValue.text("cdc"),
        "pgflow/read": dg.MetadataValue.text(read),
        "pgflow/cursor_before": dg.MetadataValue.text(before),
        "pgflow/cursor_after": dg.MetadataValue.text(after),
        "pgflow/snapshot_rows": dg.MetadataValue.int(snapshot_rows),
        "pgflow/changes": dg.MetadataValue.int(result.changes),
        "pgflow/upserts": dg.MetadataValue.int(sum(b.upserts for b in batches)),
        "pgflow/deletes": dg.MetadataValue.int(sum(b.deletes for b in batches)),
        "pgflow/truncates": dg.MetadataValue.int(sum(b.truncates for b in batches)),
        "pgflow/transactions": dg.MetadataValue.int(sum(b.transactions for b in batches)),
        "pgflow/batches": dg.MetadataValue.int(len(batches)),
        "pgflow/rows_applied": dg.MetadataValue.int(result.rows_applied),
        "pgflow/rows_deleted": dg.MetadataValue.int(sum(b.rows_deleted for b in batches)),
        "pgflow/slot_caught_up": dg.MetadataValue.bool(result.caught_up_slot),
        **position_reset_metadata(result.position_reset),
    }
    if result.slot is not None:
        metadata["pgflow/slot_wal_status"] = dg.MetadataValue.text(result.slot.wal_status or "")
        metadata["pgflow/slot_retained_wal_bytes"] = dg.MetadataValue.int(
            result.slot.retained_bytes or 0
        )
    return metadata


def delta_sync_summary(result: SyncResult) -> str:
    if result.skipped:
        return f"{result.target}: Delta version {result.version} already synced ({result.reason})"
    return (
        f"{result.target}: Delta version {result.version} ({result.plan}, {result.reason}): "
        f"{result.rows_read:,} rows read, {result.rows_inserted:,} inserted, "
        f"{result.rows_updated:,} updated, {result.rows_deleted:,} deleted "
        f"in {result.seconds:.1f}s"
    )


def delta_sync_metadata(result: SyncResult, target: TableInfo, database: str) -> dict[str, Any]:
    return {
        "pgflow/rows_written": dg.MetadataValue.int(result.rows_written),
        "dagster/table_name": dg.MetadataValue.text(table_name(database, target.table)),
        "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(target)),
        "pgflow/strategy": dg.MetadataValue.text("delta sync (hash-diff upsert)"),
        "pgflow/delta_version": dg.MetadataValue.int(result.version),
        "pgflow/skipped": dg.MetadataValue.bool(result.skipped),
        "pgflow/read": dg.MetadataValue.text(f"{result.plan}: {result.reason}"),
        "pgflow/files_synced": dg.MetadataValue.int(result.files_synced),
        "pgflow/rows_read": dg.MetadataValue.int(result.rows_read),
        "pgflow/rows_inserted": dg.MetadataValue.int(result.rows_inserted),
        "pgflow/rows_updated": dg.MetadataValue.int(result.rows_updated),
        "pgflow/rows_unchanged": dg.MetadataValue.int(result.rows_unchanged),
        "pgflow/rows_deleted": dg.MetadataValue.int(result.rows_deleted),
        "pgflow/sync_retries": dg.MetadataValue.int(result.retries),  # within one try
        "pgflow/duration_seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        **position_reset_metadata(result.position_reset),
    }


def delta_load_metadata(result: DeltaLoadResult, schema: dg.TableSchema) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "pgflow/rows_written": dg.MetadataValue.int(result.rows),
        "dagster/uri": dg.MetadataValue.path(result.path),
        "dagster/table_name": dg.MetadataValue.text(result.path),
        "dagster/column_schema": dg.MetadataValue.table_schema(schema),
        "pgflow/strategy": dg.MetadataValue.text(result.strategy),
        "pgflow/delta_version": dg.MetadataValue.int(result.version_after),
        "pgflow/rows_read": dg.MetadataValue.int(result.rows_read),
        "pgflow/files_added": dg.MetadataValue.int(len(result.files_added)),
        "pgflow/bytes_written": dg.MetadataValue.int(result.bytes_written),
        "pgflow/duration_seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "pgflow/created_target": dg.MetadataValue.bool(result.created_table),
    }
    for name, value in result.strategy_metadata.items():  # update, delete: unmatched_keys
        metadata[f"pgflow/{name}"] = dg.MetadataValue.int(value)
    if result.read is not None:
        before = result.position_before.value if result.position_before else ""
        after = result.position_after.value if result.position_after else ""
        metadata["pgflow/read"] = dg.MetadataValue.text(read_description(result.read))
        metadata["pgflow/cursor_before"] = dg.MetadataValue.text(before)
        metadata["pgflow/cursor_after"] = dg.MetadataValue.text(after)
        metadata.update(boundary_metadata(result.boundary_rows))
    return metadata


def activity_metadata(modifications: int | None, exact_rows: int | None) -> dict[str, Any]:
    """What the staleness sensor and the row-count check compare with later.

    `pgflow/source_modifications`: the source's insert+update+delete counter before the read.
    `pgflow/source_rows_exact`: the source's row count, when the target must now equal that
    one consistent snapshot (a full read into full_refresh, or a reset).
    """
    metadata: dict[str, Any] = {}
    if modifications is not None:
        metadata["pgflow/source_modifications"] = dg.MetadataValue.int(modifications)
    if exact_rows is not None:
        metadata["pgflow/source_rows_exact"] = dg.MetadataValue.int(exact_rows)
    return metadata
