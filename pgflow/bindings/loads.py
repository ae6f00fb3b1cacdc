"""One pipeline's run without a Dagster context: what the IO managers report, from anywhere.

The IO managers call `load_pipeline` for a lone asset; a schema step (schema_assets.py) calls
it from its worker threads, one table each, and hands the result to the IO manager to report.
`log` receives progress lines; the caller decides where they go (the step's log, or a queue
the step drains from its own thread).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import dagster as dg
import psycopg

from pgflow.bindings.cdc_runs import lone_group, run_cdc_group
from pgflow.bindings.metadata import (
    activity_metadata,
    cdc_delta_metadata,
    cdc_metadata,
    cdc_summary,
    delta_column_schema,
    delta_load_metadata,
    delta_sync_metadata,
    delta_sync_summary,
    lineage_metadata,
    load_metadata,
    load_summary,
)
from pgflow.bindings.query_lineage import query_metadata
from pgflow.bindings.row_counts import delta_counts, postgres_counts
from pgflow.bindings.step_errors import refuse_dropped_source
from pgflow.config.model import KEYED_CHANGE_MODES, PipelineSpec, SourceSpec, TableName
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections
from pgflow.flows.cdc.model import CdcResult
from pgflow.flows.postgres_load import load_table
from pgflow.sinks.postgres.parallel_exchange import Streams
from pgflow.sources.activity import table_modifications
from pgflow.sources.catalog import describe_table
from pgflow.sources.select import table_source
from pgflow.sources.window import TimeWindow

Log = Callable[[str], None]


@dataclass(frozen=True)
class Loaded:
    """A finished run of one pipeline: its materialization's metadata and a one-line summary."""

    metadata: dict[str, Any]
    summary: str


def load_pipeline(
    connections: PostgresConnections,
    delta: DeltaStorage,
    spec: PipelineSpec,
    reset: bool,
    window: TimeWindow | None,
    log: Log,
    run_id: str = "",
) -> Loaded:
    """Run `spec` once with the flow its source and sink call for; raise what the flow raises."""
    refuse_dropped_source(spec)  # before anything touches the target
    if spec.source.options.incremental_strategy == "cdc":
        return _replicate(connections, delta, spec, reset)
    if spec.sink.type == "delta":
        return with_lineage(spec, _load_delta(connections, delta, spec, reset, window))
    if spec.source.type == "delta":
        return with_lineage(spec, _sync_delta(connections, delta, spec, reset))
    return with_lineage(spec, _load_postgres(connections, spec, reset, window, log, run_id))


def with_lineage(spec: PipelineSpec, loaded: Loaded) -> Loaded:
    """`loaded` with `dagster/column_lineage` for the target columns its column schema lists
    (the columns are known once the target is)."""
    schema = loaded.metadata.get("dagster/column_schema")
    if not isinstance(schema, dg.TableSchemaMetadataValue) or spec.source.query is not None:
        return loaded  # a query's lineage: query_lineage.py, from what Postgres planned
    columns = [column.name for column in schema.schema.columns]
    return Loaded({**loaded.metadata, **lineage_metadata(spec, columns)}, loaded.summary)


def _load_postgres(
    connections: PostgresConnections,
    spec: PipelineSpec,
    reset: bool,
    window: TimeWindow | None,
    log: Log,
    run_id: str,
) -> Loaded:
    source, sink = spec.source, spec.sink
    assert source.connection_id and sink.connection_id and sink.table
    with (
        connections.connect(source.connection_id, source.connection_type) as src_conn,
        connections.connect(sink.connection_id, sink.connection_type, autocommit=True) as dst_conn,
    ):
        modifications = _source_modifications(src_conn, source)
        reader = table_source(src_conn, source, window)
        progress = _progress_logger(log, sink.table, lambda: reader.info.estimated_rows)
        result = load_table(
            dst_conn,
            reader,
            sink.table,
            sink.strategy,
            progress,
            pipeline=spec.name,
            reset=reset,
            streams=_streams(connections, spec),
            run_id=run_id,
        )
        database = dst_conn.info.dbname
        counts = postgres_counts(dst_conn, result.target_info, window)
    metadata = {**load_metadata(result, database), **counts, **query_metadata(spec, reader)}
    exact = _exact_source_rows(spec, result.rows_read, reset, result.duplicates_dropped)
    metadata.update(activity_metadata(modifications, exact))
    if window is not None:
        metadata["pgflow/partition_slice"] = dg.MetadataValue.text(
            f"[{window.start.isoformat()}, {window.end.isoformat()}) of {window.column}"
        )
    return Loaded(metadata, load_summary(result))


def _streams(connections: PostgresConnections, spec: PipelineSpec) -> Streams | None:
    """How a `parallelism` > 1 load opens its further connections."""
    source, sink = spec.source, spec.sink
    if sink.strategy.parallelism < 2:
        return None
    assert source.connection_id and sink.connection_id
    return Streams(
        sink.strategy.parallelism,
        connect_source=partial(connections.open, source.connection_id, source.connection_type),
        connect_sink=partial(
            connections.open, sink.connection_id, sink.connection_type, autocommit=True
        ),
    )


def _replicate(
    connections: PostgresConnections, delta: DeltaStorage, spec: PipelineSpec, reset: bool
) -> Loaded:
    """A pipeline with a slot of its own: a group of one."""
    result = run_cdc_group(connections, delta, lone_group(spec), [spec.name], reset)[spec.name]
    if isinstance(result, BaseException):
        raise result
    return cdc_loaded(connections, delta, spec, result)


def cdc_loaded(
    connections: PostgresConnections, delta: DeltaStorage, spec: PipelineSpec, result: CdcResult
) -> Loaded:
    """What a CDC run applied to `spec`'s target, with the target's rows after it."""
    sink = spec.sink
    if sink.type == "delta":
        return _cdc_delta_loaded(delta, spec, result)
    assert sink.connection_id and sink.table
    with connections.connect(sink.connection_id, sink.connection_type) as conn:
        target_info = describe_table(conn, sink.table)
        database = conn.info.dbname
        counts = postgres_counts(conn, target_info)
    metadata = cdc_metadata(result, target_info, database)
    return with_lineage(spec, Loaded({**metadata, **counts}, cdc_summary(result, sink.table)))


def _cdc_delta_loaded(delta: DeltaStorage, spec: PipelineSpec, result: CdcResult) -> Loaded:
    """A CDC run into Delta: the columns and rows of the version the run left (its last
    commit; the latest when it committed nothing)."""
    from pgflow.sources.delta import open_snapshot

    sink = spec.sink
    assert sink.path
    options = delta.storage_options()
    snapshot = open_snapshot(sink.path, result.delta_version, options)
    counts = delta_counts(sink.path, snapshot.version, options, None, snapshot)
    metadata = cdc_delta_metadata(result, snapshot, sink.path, sink.strategy.unique_key)
    from pgflow.bindings.maintenance import maintenance_after_load

    # After the run's commits (a shared slot's step has finished writing): CDC's batches are
    # what makes the small files.
    metadata.update(maintenance_after_load(spec, options))  # when optimize_every is due
    return with_lineage(spec, Loaded({**metadata, **counts}, cdc_summary(result, sink.path)))


def _sync_delta(
    connections: PostgresConnections, delta: DeltaStorage, spec: PipelineSpec, reset: bool
) -> Loaded:
    source, sink = spec.source, spec.sink
    assert source.path and sink.connection_id and sink.table

    def connect() -> psycopg.Connection:
        assert sink.connection_id
        return connections.open(sink.connection_id, sink.connection_type)

    from pgflow.flows.delta_sync.run import sync_delta

    result = sync_delta(
        connect,
        source.path,
        sink.table,
        sink.strategy.unique_key,
        pipeline=spec.name,
        storage_options=delta.storage_options(),
        deletes=source.options.deletes,
        full_pass=reset,
        fillfactor=sink.strategy.fillfactor,
    )
    with connections.connect(sink.connection_id, sink.connection_type) as conn:
        target_info = describe_table(conn, sink.table)
        database = conn.info.dbname
        counts = postgres_counts(conn, target_info)
    metadata = {**delta_sync_metadata(result, target_info, database), **counts}
    return Loaded(metadata, delta_sync_summary(result))


def _load_delta(
    connections: PostgresConnections,
    delta: DeltaStorage,
    spec: PipelineSpec,
    reset: bool,
    window: TimeWindow | None,
) -> Loaded:
    """Postgres -> Delta (the Delta code paths are imported here: see io_managers.py)."""
    source, sink = spec.source, spec.sink
    assert source.connection_id and sink.path
    with connections.connect(source.connection_id, source.connection_type) as conn:
        modifications = _source_modifications(conn, source)
        from pgflow.flows.delta_load import load_delta

        reader = table_source(conn, source, window)
        options = delta.storage_options()
        result = load_delta(
            reader,
            sink.path,
            sink.strategy,
            storage_options=options,
            pipeline=spec.name,
            reset=reset,
            numeric_as=sink.numeric_as,
        )
    verb = {"delete": "deleted", "update": "updated"}.get(sink.strategy.mode, "written")
    summary = (
        f"{sink.path}: {result.rows:,} rows {verb} (version {result.version_after}) "
        f"in {result.seconds:.1f}s"
    )
    exact = _exact_source_rows(spec, result.rows_read, reset)
    bounds = reader.window_bounds()
    sliced = None if window is None or bounds is None else (window.column, *bounds)
    from pgflow.sources.delta import open_snapshot

    # The version the run wrote, read once: its columns and its rows.
    snapshot = open_snapshot(sink.path, result.version_after, options)
    counts = delta_counts(sink.path, result.version_after, options, sliced, snapshot)
    schema = delta_column_schema(snapshot, sink.strategy.unique_key)
    metadata = {**delta_load_metadata(result, schema), **counts, **query_metadata(spec, reader)}
    metadata.update(activity_metadata(modifications, exact))
    from pgflow.bindings.maintenance import maintenance_after_load

    metadata.update(maintenance_after_load(spec, options))  # when optimize_every is due
    return Loaded(metadata, summary)


def _source_modifications(conn: psycopg.Connection, source: SourceSpec) -> int | None:
    """The source's write counter before the read (the staleness sensors compare with it);
    None for a query (no one table's counter)."""
    if source.table is None:
        return None
    try:
        return table_modifications(conn, source.table)
    finally:
        conn.rollback()  # the read opens its own snapshot transaction


def _exact_source_rows(
    spec: PipelineSpec, rows_read: int, reset: bool, duplicates_dropped: int = 0
) -> int | None:
    """The source's row count when the target must now equal one consistent snapshot of it:
    a full read into full_refresh, or a reset (unless duplicate keys were dropped)."""
    full_read = spec.source.options.incremental_strategy == "full"
    whole = full_read and spec.sink.strategy.mode == "full_refresh"
    if spec.sink.strategy.mode in KEYED_CHANGE_MODES:  # the target is never the source's copy
        return None
    return rows_read if (whole or reset) and duplicates_dropped == 0 else None


def _progress_logger(
    log: Log, table: TableName, estimated_rows: Callable[[], int | None]
) -> Callable[[int, int], None]:
    def report(rows: int, bytes_so_far: int) -> None:
        estimated = estimated_rows()
        total = f" of ~{estimated:,} (catalog estimate)" if estimated else ""
        log(f"{table}: ~{rows:,} rows{total}, {bytes_so_far / 1e6:,.1f} MB so far")

    return report
