"""IO managers: one per sink, each streaming a pipeline's source into its sink.

An asset hands its IO manager a `PipelineRead` (what to read, not the rows); the IO manager
picks the flow (a table load, CDC, a Delta -> Postgres sync), opens the source and the sink,
runs it with the spec's strategy (bindings/loads.py) and attaches the run's metadata; a step
that ran the load itself (a shared slot, a schema's tables) hands over the result to report
(`CdcApplied`, `TableLoaded`). Downstream assets receive a `TableRef` to the loaded table,
never the rows in memory.

Each sink has one resource per mode (`io_manager_key`), so the UI's resource list names the
mode; they are the one IO manager class of that sink.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

import dagster as dg
import psycopg

from pgflow.bindings.loads import Loaded, cdc_loaded, load_pipeline
from pgflow.bindings.row_counts import per_partition
from pgflow.bindings.step_errors import step_errors
from pgflow.bindings.try_history import FIRST_TRY, TryHistory, try_metadata
from pgflow.config.model import PipelineSpec, SinkMode, TableName
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections
from pgflow.flows.cdc.model import CdcResult
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
    tries: TryHistory = FIRST_TRY  # this step's earlier failed tries in the run


@dataclass(frozen=True)
class CdcApplied:
    """A group step's output for one of its tables: the changes are applied; the IO manager
    reports them (metadata, row count) as for any other run."""

    pipeline: PipelineSpec
    result: CdcResult
    tries: TryHistory = FIRST_TRY


@dataclass(frozen=True)
class TableLoaded:
    """A schema step's output for one of its tables: loaded already (bindings/loads.py); the
    IO manager only reports it."""

    pipeline: PipelineSpec
    loaded: Loaded
    tries: TryHistory = FIRST_TRY


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

    def handle_output(
        self, context: dg.OutputContext, obj: PipelineRead | CdcApplied | TableLoaded
    ) -> None:
        if isinstance(obj, TableLoaded):  # a schema step loaded it already
            _report(context, obj.loaded, obj.tries)
            return
        if isinstance(obj, CdcApplied):  # a shared slot's group step applied it already
            with step_errors(obj.pipeline):
                loaded = cdc_loaded(self.connections, self.delta, obj.pipeline, obj.result)
            _report(context, loaded, obj.tries)
            return
        spec = obj.pipeline
        if spec.sink.strategy.mode != self.mode:
            raise dg.DagsterInvariantViolationError(
                f"pipeline '{spec.name}' uses mode {spec.sink.strategy.mode}, "
                f"but was given the {self.mode} IO manager"
            )
        reset = _effective_reset(context, obj)
        with step_errors(spec):
            loaded = load_pipeline(
                self.connections,
                self.delta,
                spec,
                reset,
                obj.window,
                context.log.info,
                context.run_id,
            )
        _report(context, loaded, obj.tries)

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


def _report(context: dg.OutputContext, loaded: Loaded, tries: TryHistory) -> None:
    """The one place every sink's materialization metadata is attached."""
    context.log.info(loaded.summary)
    metadata = {**loaded.metadata, **try_metadata(tries)}
    context.add_output_metadata(per_partition(context, metadata))


def _upstream_pipeline(context: dg.InputContext) -> dict[str, str]:
    upstream = context.upstream_output
    spec = upstream.definition_metadata.get("pgflow/pipeline") if upstream else None
    if spec is None:
        raise dg.DagsterInvariantViolationError(
            f"asset {'/'.join(context.asset_key.path)} is not a pgflow table"
        )
    pipeline: dict[str, str] = spec  # assets.asset_metadata's `pgflow/pipeline`
    return pipeline


class DeltaSinkIOManager(dg.ConfigurableIOManager):
    """Postgres -> Delta, for every mode: the mode is the spec's; one IO manager per mode keeps
    the UI's resource list the same as for Postgres sinks."""

    connections: PostgresConnections
    delta: DeltaStorage

    def handle_output(
        self, context: dg.OutputContext, obj: PipelineRead | CdcApplied | TableLoaded
    ) -> None:
        if isinstance(obj, TableLoaded):  # a schema step loaded it already
            loaded = obj.loaded
        elif isinstance(obj, CdcApplied):  # a shared slot's group step applied it already
            with step_errors(obj.pipeline):
                loaded = cdc_loaded(self.connections, self.delta, obj.pipeline, obj.result)
        else:
            reset = _effective_reset(context, obj)
            with step_errors(obj.pipeline):
                loaded = load_pipeline(
                    self.connections,
                    self.delta,
                    obj.pipeline,
                    reset,
                    obj.window,
                    context.log.info,
                    context.run_id,
                )
        _report(context, loaded, obj.tries)

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
