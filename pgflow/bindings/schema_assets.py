"""One step per schema-wide spec: a multi-asset over the tables its wildcard matched.

Each table stays its own asset, with its own key, materialization, metadata, checks and
history; the step loads the selected ones `parallel_tables` at a time in threads
(bindings/loads.py), so 200 tables cost one op and one step process, not 200. A subset (one
table's asset materialized alone) loads only it. A table that fails fails its asset only: the
others are materialized, then the step fails naming every failed table; a retry (a lost
connection) loads only the tables the run has not materialized yet. CDC and
time-partitioned pipelines keep steps of their own (`in_schema_step`).

No `from __future__ import annotations` here: Dagster inspects the `context` annotation.
"""

import queue
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import dagster as dg
from dagster import AssetExecutionContext

from pgflow.bindings.assets import (
    PipelineRunConfig,
    asset_key,
    asset_out,
    pool_for,
    source_asset_key,
)
from pgflow.bindings.cdc_assets import output_name
from pgflow.bindings.io_managers import TableLoaded
from pgflow.bindings.loads import Loaded, load_pipeline
from pgflow.bindings.retries import retry_policy
from pgflow.bindings.step_errors import step_errors
from pgflow.bindings.try_history import try_history
from pgflow.config.model import PipelineSpec
from pgflow.config.naming import dagster_name
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections

# How often the step's thread wakes to pass the loads' progress lines on to the run's log.
_LOG_INTERVAL_SECONDS = 1.0


def in_schema_step(pipeline: PipelineSpec) -> bool:
    """A schema-wide spec's table that loads in its spec's step: CDC tables share a slot's
    step instead, and a time partition is a run of its own asset."""
    return (
        pipeline.expansion is not None
        and pipeline.source.options.incremental_strategy != "cdc"
        and pipeline.partitions is None
    )


def schema_steps(pipelines: Iterable[PipelineSpec]) -> list[list[PipelineSpec]]:
    """The pipelines that load in schema steps, one list per schema-wide spec."""
    steps: dict[str, list[PipelineSpec]] = {}
    for pipeline in pipelines:
        if in_schema_step(pipeline):
            assert pipeline.expansion is not None
            steps.setdefault(pipeline.expansion.wildcard, []).append(pipeline)
    return list(steps.values())


def schema_asset(pipelines: Sequence[PipelineSpec]) -> dg.AssetsDefinition:
    """The step of one schema-wide spec's `pipelines` (same wildcard, same source)."""
    first = pipelines[0]
    expansion, connection_id = first.expansion, first.source.connection_id
    assert expansion is not None and connection_id is not None
    sources = {output_name(p): source_asset_key(p.source) for p in pipelines}

    @dg.multi_asset(
        name=f"schema_{dagster_name(expansion.wildcard)}",
        description=f"The {len(pipelines)} tables of schema-wide spec '{expansion.wildcard}' "
        f"({first.file}), loaded {expansion.parallel_tables} at a time.",
        outs={output_name(p): asset_out(p) for p in pipelines},
        deps=list(dict.fromkeys(sources.values())),
        internal_asset_deps={name: {key} for name, key in sources.items()},
        can_subset=True,
        pool=pool_for(connection_id),
        op_tags={"pgflow/wildcard": expansion.wildcard},
        retry_policy=retry_policy(),
    )
    def _schema(
        context: AssetExecutionContext,
        config: PipelineRunConfig,
        pg: PostgresConnections,
        delta: DeltaStorage,
    ) -> Iterator[dg.Output[TableLoaded]]:
        done = _loaded_in_earlier_attempts(context)
        selected = [p for p in pipelines if asset_key(p) in context.selected_asset_keys - done]
        context.log.info(
            f"schema-wide spec '{expansion.wildcard}': {len(selected)} of {len(pipelines)} "
            f"tables, {expansion.parallel_tables} at a time"
            + (f" ({len(done)} loaded by the earlier attempts)" if done else "")
            + (" (reset requested: full reload of each)" if config.reset else "")
        )
        if not selected:
            return
        with step_errors(selected[0]):  # every table needs these connections' secrets
            _resolve_connections(pg, selected)
        failed: list[tuple[PipelineSpec, dg.Failure]] = []
        tries = try_history(context)
        outcomes = load_tables(
            pg, delta, selected, config.reset, expansion.parallel_tables, context.log.info
        )
        for pipeline, outcome in outcomes:
            if isinstance(outcome, Loaded):
                loaded = TableLoaded(pipeline, outcome, tries)
                yield dg.Output(loaded, output_name=output_name(pipeline))
                continue
            failure = _as_failure(pipeline, outcome)
            context.log.error(failure.description or str(outcome))
            failed.append((pipeline, failure))
        if failed:
            raise _step_failure(expansion.wildcard, failed)

    return _schema


def _loaded_in_earlier_attempts(context: AssetExecutionContext) -> set[dg.AssetKey]:
    """On a retry, the tables this run's earlier attempts materialized: not loaded again."""
    if context.retry_number == 0:
        return set()
    records = context.instance.get_records_for_run(
        context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    events = (r.event_log_entry.dagster_event for r in records)
    return {e.asset_key for e in events if e is not None and e.asset_key is not None}


def load_tables(
    connections: PostgresConnections,
    delta: DeltaStorage,
    pipelines: Sequence[PipelineSpec],
    reset: bool,
    parallel: int,
    log: Callable[[str], None],
) -> Iterator[tuple[PipelineSpec, Loaded | Exception]]:
    """Load `pipelines`, `parallel` at a time, each yielded with its result or error as it
    finishes. `log` is called from the caller's thread only: Dagster's log belongs to it."""
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    order = {p.name: position for position, p in enumerate(pipelines)}  # report in spec order
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="pgflow-table") as pool:
        running: dict[Future[Loaded], PipelineSpec] = {
            pool.submit(_load_one, connections, delta, p, reset, lines.put): p for p in pipelines
        }
        try:
            while running:
                done, _ = wait(running, timeout=_LOG_INTERVAL_SECONDS, return_when=FIRST_COMPLETED)
                _drain(lines, log)
                for future in sorted(done, key=lambda f: order[running[f].name]):
                    pipeline = running.pop(future)
                    error = future.exception()
                    if error is not None and not isinstance(error, Exception):
                        raise error  # KeyboardInterrupt and the like end the step
                    yield pipeline, error if error is not None else future.result()
        finally:
            for future in running:  # the step stops early: start no further table
                future.cancel()


def _load_one(
    connections: PostgresConnections,
    delta: DeltaStorage,
    pipeline: PipelineSpec,
    reset: bool,
    log: Callable[[str], None],
) -> Loaded:
    """In a worker thread: one table, with the reset its spec may ask for on every run."""
    log(f"pipeline '{pipeline.name}': loading {pipeline.source.table} -> {pipeline.sink.table}")
    reset = reset or pipeline.source.options.reset
    return load_pipeline(connections, delta, pipeline, reset, None, log)


def _drain(lines: "queue.SimpleQueue[str]", log: Callable[[str], None]) -> None:
    while True:
        try:
            log(lines.get_nowait())
        except queue.Empty:
            return


def _resolve_connections(
    connections: PostgresConnections, pipelines: Sequence[PipelineSpec]
) -> None:
    """Read each connection's secret once, here, rather than racing for it in every thread."""
    wanted = {
        (endpoint.connection_id, endpoint.connection_type)
        for p in pipelines
        for endpoint in (p.source, p.sink)
        if endpoint.connection_id
    }
    for connection_id, connection_type in sorted(wanted):
        connections.conninfo(connection_id, connection_type)


def _as_failure(pipeline: PipelineSpec, error: Exception) -> dg.Failure:
    """The Failure `step_errors` makes of `error` (retriable or not, explained or not)."""
    try:
        with step_errors(pipeline):
            raise error
    except dg.Failure as failure:
        return failure
    raise AssertionError("step_errors turns every error into a Failure")


def _step_failure(wildcard: str, failed: list[tuple[PipelineSpec, dg.Failure]]) -> dg.Failure:
    """One Failure naming every failed table; retried only when all of them may be."""
    names = ", ".join(f"'{p.name}'" for p, _ in failed)
    first = failed[0][1]
    description = (
        f"schema-wide spec '{wildcard}': {len(failed)} table(s) failed: {names}; "
        f"the others are materialized. First: {first.description}"
    )
    allow_retries = all(f.allow_retries for _, f in failed)
    failure = dg.Failure(description, allow_retries=allow_retries)
    failure.__cause__ = first.__cause__
    return failure
