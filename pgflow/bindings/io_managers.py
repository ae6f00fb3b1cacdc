"""IO managers: one per sink, each streaming a pipeline's source into its sink.

An asset hands its IO manager a `PipelineRead` (what to read, not the rows); the IO manager
picks the flow (a table load, CDC, a Delta -> Postgres sync), opens the source and the sink,
runs it with the spec's strategy and attaches the run's metadata. Downstream assets receive a
`TableRef` to the loaded table, never the rows in memory.

Each sink has one resource per mode (`io_manager_key`), so the UI's resource list names the
mode; they are the one IO manager class of that sink.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, get_args

import dagster as dg
import psycopg

from pgflow.bindings.cdc_runs import lone_group, run_cdc_group
from pgflow.bindings.metadata import (
    activity_metadata,
    cdc_metadata,
    cdc_summary,
    delta_load_metadata,
    delta_sync_metadata,
    delta_sync_summary,
    load_metadata,
    load_summary,
)
from pgflow.bindings.row_counts import delta_counts, per_partition, postgres_counts
from pgflow.bindings.step_errors import refuse_dropped_source, step_errors
from pgflow.config.model import PipelineSpec, SinkMode, TableName
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections
from pgflow.flows.cdc.model import CdcResult
from pgflow.flows.postgres_load import load_table
from pgflow.sinks.postgres.parallel_exchange import Streams
from pgflow.sources.activity import table_modifications
from pgflow.sources.catalog import describe_table
from pgflow.sources.select import table_source
from pgflow.sources.window import TimeWindow

if TYPE_CHECKING:
    import polars as pl

# The Delta and polars code paths are imported where they run: the code location (and every
# `dagster asset materialize`) then starts without importing deltalake and polars.


@dataclass(frozen=True)
class PipelineRead:
    """An asset's output: the pipeline to run. The IO manager does the streaming."""

    pipeline: PipelineSpec
    reset: bool = False  # this run reads everything and rebuilds the target
    window: TimeWindow | None = None  # a time partition: read and replace this slice only


@dataclass(frozen=True)
class CdcApplied:
    """A group step's output for one of its tables: the changes are applied; the IO manager
    reports them (metadata, row count) as for any other run."""

    pipeline: PipelineSpec
    result: CdcResult


@dataclass(frozen=True)
class TableRef:
    """What a downstream asset gets: where the table lives; connect with the `pg` resource."""

    connection_id: str
    connection_type: str
    table: TableName


class PostgresSinkIOManager(dg.ConfigurableIOManager):
    """Into a Postgres sink, for pipelines of `mode` (the spec's strategy says the rest)."""

    connections: PostgresConnections
    delta: DeltaStorage
    mode: SinkMode

    def handle_output(self, context: dg.OutputContext, obj: PipelineRead | CdcApplied) -> None:
        if isinstance(obj, CdcApplied):  # a shared slot's group step applied it already
            with step_errors(obj.pipeline):
                self._report_cdc(context, obj)
            return
        spec = obj.pipeline
        if spec.sink.strategy.mode != self.mode:
            raise dg.DagsterInvariantViolationError(
                f"pipeline '{spec.name}' uses mode {spec.sink.strategy.mode}, "
                f"but was given the {self.mode} IO manager"
            )
        reset = _effective_reset(context, obj)
        with step_errors(spec):
            refuse_dropped_source(spec)  # before anything touches the target
            if spec.source.type == "delta":
                self._sync_delta(context, spec, reset)
            elif spec.source.options.incremental_strategy == "cdc":
                self._replicate(context, spec, reset)
            else:
                self._load(context, spec, reset, obj.window)

    def _load(
        self,
        context: dg.OutputContext,
        spec: PipelineSpec,
        reset: bool,
        window: TimeWindow | None,
    ) -> None:
        source, sink = spec.source, spec.sink
        assert source.connection_id and source.table and sink.connection_id and sink.table
        with (
            self.connections.connect(source.connection_id, source.connection_type) as src_conn,
            self.connections.connect(
                sink.connection_id, sink.connection_type, autocommit=True
            ) as dst_conn,
        ):
            modifications = _source_modifications(src_conn, source.table)
            reader = table_source(src_conn, source, window)
            progress = _progress_logger(context, sink.table, lambda: reader.info.estimated_rows)
            result = load_table(
                dst_conn,
                reader,
                sink.table,
                sink.strategy,
                progress,
                pipeline=spec.name,
                reset=reset,
                streams=self._streams(spec),
            )
            database = dst_conn.info.dbname
            counts = postgres_counts(dst_conn, result.target_info, window)
        context.log.info(load_summary(result))
        metadata = {**load_metadata(result, database), **per_partition(context, counts)}
        exact = _exact_source_rows(spec, result.rows_read, reset, result.duplicates_dropped)
        metadata.update(activity_metadata(modifications, exact))
        if window is not None:
            metadata["pgflow/partition_slice"] = dg.MetadataValue.text(
                f"[{window.start.isoformat()}, {window.end.isoformat()}) of {window.column}"
            )
        context.add_output_metadata(metadata)

    def _streams(self, spec: PipelineSpec) -> Streams | None:
        """How a `parallelism` > 1 load opens its further connections."""
        source, sink = spec.source, spec.sink
        if sink.strategy.parallelism < 2:
            return None
        assert source.connection_id and sink.connection_id
        return Streams(
            sink.strategy.parallelism,
            connect_source=partial(
                self.connections.open, source.connection_id, source.connection_type
            ),
            connect_sink=partial(
                self.connections.open, sink.connection_id, sink.connection_type, autocommit=True
            ),
        )

    def _replicate(self, context: dg.OutputContext, spec: PipelineSpec, reset: bool) -> None:
        """A pipeline with a slot of its own: a group of one."""
        outcome = run_cdc_group(self.connections, lone_group(spec), [spec.name], reset)
        result = outcome[spec.name]
        if isinstance(result, BaseException):
            raise result
        self._report_cdc(context, CdcApplied(spec, result))

    def _report_cdc(self, context: dg.OutputContext, applied: CdcApplied) -> None:
        sink = applied.pipeline.sink
        assert sink.connection_id and sink.table
        with self.connections.connect(sink.connection_id, sink.connection_type) as conn:
            target_info = describe_table(conn, sink.table)
            database = conn.info.dbname
            counts = postgres_counts(conn, target_info)
        context.log.info(cdc_summary(applied.result, sink.table))
        metadata = cdc_metadata(applied.result, target_info, database)
        context.add_output_metadata({**metadata, **counts})

    def _sync_delta(self, context: dg.OutputContext, spec: PipelineSpec, reset: bool) -> None:
        source, sink = spec.source, spec.sink
        assert source.path and sink.connection_id and sink.table

        def connect() -> psycopg.Connection:
            assert sink.connection_id
            return self.connections.open(sink.connection_id, sink.connection_type)

        from pgflow.flows.delta_sync.run import sync_delta

        result = sync_delta(
            connect,
            source.path,
            sink.table,
            sink.strategy.unique_key,
            pipeline=spec.name,
            storage_options=self.delta.storage_options(),
            deletes=source.options.deletes,
            full_pass=reset,
            fillfactor=sink.strategy.fillfactor,
        )
        with self.connections.connect(sink.connection_id, sink.connection_type) as conn:
            target_info = describe_table(conn, sink.table)
            database = conn.info.dbname
            counts = postgres_counts(conn, target_info)
        context.log.info(delta_sync_summary(result))
        context.add_output_metadata(
            {**delta_sync_metadata(result, target_info, database), **counts}
        )

    def load_input(self, context: dg.InputContext) -> TableRef | pl.LazyFrame:
        """A TableRef, or a LazyFrame when the input is annotated `pl.LazyFrame`."""
        spec = _upstream_pipeline(context)
        ref = TableRef(
            connection_id=spec["sink_connection_id"],
            connection_type=spec["sink_connection_type"],
            table=TableName(spec["sink_schema"], spec["sink_table"]),
        )
        if not _wants_lazyframe(context):
            return ref
        from pgflow.sources.lazy import scan_postgres_table

        def connect() -> psycopg.Connection:
            return self.connections.open(ref.connection_id, ref.connection_type)

        return scan_postgres_table(connect, ref.table)


def _wants_lazyframe(context: dg.InputContext) -> bool:
    """The input is annotated `pl.LazyFrame` (checked by name: polars is imported lazily)."""
    wanted = context.dagster_type.typing_type
    return getattr(wanted, "__module__", "").startswith("polars") and (
        getattr(wanted, "__name__", "") == "LazyFrame"
    )


def _effective_reset(context: dg.OutputContext, obj: PipelineRead) -> bool:
    reset = obj.reset or obj.pipeline.source.options.reset
    if reset and obj.window is not None:
        # A time partition replaces its whole slice anyway; truncating the table would not.
        context.log.warning(
            f"pipeline '{obj.pipeline.name}': reset ignored for a time partition: the run "
            "replaces its whole slice with the source's rows already"
        )
        return False
    return reset


def _source_modifications(conn: psycopg.Connection, table: TableName) -> int | None:
    """The source's write counter before the read (the staleness sensors compare with it)."""
    try:
        return table_modifications(conn, table)
    finally:
        conn.rollback()  # the read opens its own snapshot transaction


def _exact_source_rows(
    spec: PipelineSpec, rows_read: int, reset: bool, duplicates_dropped: int = 0
) -> int | None:
    """The source's row count when the target must now equal one consistent snapshot of it:
    a full read into full_refresh, or a reset (unless duplicate keys were dropped)."""
    full_read = spec.source.options.incremental_strategy == "full"
    whole = full_read and spec.sink.strategy.mode == "full_refresh"
    return rows_read if (whole or reset) and duplicates_dropped == 0 else None


def _upstream_pipeline(context: dg.InputContext) -> dict[str, str]:
    upstream = context.upstream_output
    spec = upstream.definition_metadata.get("pgflow/pipeline") if upstream else None
    if spec is None:
        raise dg.DagsterInvariantViolationError(
            f"asset {'/'.join(context.asset_key.path)} is not a pgflow table"
        )
    pipeline: dict[str, str] = spec  # assets.pipeline_asset's `pgflow/pipeline`
    return pipeline


def _progress_logger(
    context: dg.OutputContext, table: TableName, estimated_rows: Callable[[], int | None]
) -> Callable[[int, int], None]:
    def report(rows: int, bytes_so_far: int) -> None:
        estimated = estimated_rows()
        total = f" of ~{estimated:,} (catalog estimate)" if estimated else ""
        context.log.info(f"{table}: ~{rows:,} rows{total}, {bytes_so_far / 1e6:,.1f} MB so far")

    return report


class DeltaSinkIOManager(dg.ConfigurableIOManager):
    """Postgres -> Delta, for every mode: the mode is the spec's; one IO manager per mode keeps
    the UI's resource list the same as for Postgres sinks."""

    connections: PostgresConnections
    delta: DeltaStorage

    def handle_output(self, context: dg.OutputContext, obj: PipelineRead) -> None:
        spec = obj.pipeline
        source, sink = spec.source, spec.sink
        assert source.connection_id and source.table and sink.path
        reset = _effective_reset(context, obj)
        with (
            step_errors(spec),
            self.connections.connect(source.connection_id, source.connection_type) as conn,
        ):
            refuse_dropped_source(spec)  # before anything touches the target
            modifications = _source_modifications(conn, source.table)
            from pgflow.flows.delta_load import load_delta

            reader = table_source(conn, source, obj.window)
            options = self.delta.storage_options()
            result = load_delta(
                reader,
                sink.path,
                sink.strategy,
                storage_options=options,
                pipeline=spec.name,
                reset=reset,
                numeric_as=sink.numeric_as,
            )
        context.log.info(
            f"{sink.path}: {result.rows:,} rows written (version {result.version_after}) "
            f"in {result.seconds:.1f}s"
        )
        exact = _exact_source_rows(spec, result.rows_read, reset)
        bounds = reader.window_bounds()
        window = None if obj.window is None or bounds is None else (obj.window.column, *bounds)
        counts = delta_counts(sink.path, result.version_after, options, window)
        metadata = {**delta_load_metadata(result), **per_partition(context, counts)}
        metadata.update(activity_metadata(modifications, exact))
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame:
        from pgflow.sinks.delta.scan import scan_delta_table

        spec = _upstream_pipeline(context)
        return scan_delta_table(spec["sink_path"], self.delta.storage_options())


SINK_MODES: tuple[SinkMode, ...] = get_args(SinkMode)


def io_managers(connections: PostgresConnections, delta: DeltaStorage) -> dict[str, Any]:
    """Every IO manager resource, by `io_manager_key`: one per sink type and mode."""
    resources: dict[str, Any] = {}
    for mode in SINK_MODES:
        resources[io_manager_key(mode)] = PostgresSinkIOManager(
            connections=connections, delta=delta, mode=mode
        )
        resources[io_manager_key(mode, "delta")] = DeltaSinkIOManager(
            connections=connections, delta=delta
        )
    return resources


def io_manager_key(mode: SinkMode, sink_type: str = "postgres") -> str:
    return f"pgflow_{sink_type}_{mode}"
