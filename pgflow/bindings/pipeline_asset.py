"""One software-defined asset per pipeline spec that has a step of its own (not a shared
slot's nor a schema's): the step hands the pipeline to its IO manager, which loads, then runs
the pipeline's checks where they are declared on the asset (checks/in_step.py).

The step is a subsettable multi-asset of one asset, so a run may select the asset, some of its
checks, or both: a load's run, the scan job's run of checks alone, the UI's "Execute checks".

No `from __future__ import annotations` here: Dagster inspects the `context` annotation and
the resources' types.
"""

import time
import warnings
from collections.abc import Iterator

import dagster as dg
from dagster import AssetExecutionContext

from pgflow.bindings.assets import (
    RUN_CONFIG_FIELDS,
    PipelineRunConfig,
    asset_key,
    asset_out,
    endpoint_text,
    partitions_definition,
    pool_for,
    read_sources,
    source_asset_key,
)
from pgflow.bindings.checks.context import Clock
from pgflow.bindings.checks.definitions import CheckRunner, check_specs
from pgflow.bindings.checks.in_step import step_checks
from pgflow.bindings.io_managers import PipelineRead
from pgflow.bindings.retries import retry_policy
from pgflow.bindings.try_history import try_history
from pgflow.config.model import PipelineSpec
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections
from pgflow.sources.window import TimeWindow

OUTPUT = "result"  # the output's name, as `@asset` names it

StepEvent = dg.Output[PipelineRead] | dg.AssetCheckResult


def pipeline_asset(
    pipeline: PipelineSpec,
    retries: dg.RetryPolicy | None = None,
    *,
    with_checks: bool = False,
    clock: Clock = time.time,
) -> dg.AssetsDefinition:
    """The pipeline's asset; with its checks declared on it and run in its step when
    `with_checks` (the code location's choice: checks_in_asset_step). `retries` (default:
    retry_policy()) lets a caller building many assets read the environment once."""
    key, source = asset_key(pipeline), pipeline.source

    @dg.multi_asset(
        name=key.to_python_identifier(),
        outs={OUTPUT: asset_out(pipeline)},
        deps=[source_asset_key(read) for read in read_sources(source)],
        check_specs=check_specs(pipeline) if with_checks else None,
        can_subset=True,
        pool=pool_for(source.connection_id) if source.connection_id else None,
        op_tags={"pgflow/pipeline": pipeline.name},
        retry_policy=retries or retry_policy(),
        config_schema=RUN_CONFIG_FIELDS,
        partitions_def=partitions_definition(pipeline.partitions),
        backfill_policy=_backfill_policy(pipeline),
    )
    def _step(
        context: AssetExecutionContext, pg: PostgresConnections, delta: DeltaStorage
    ) -> Iterator[StepEvent]:
        loads = key in context.selected_asset_keys
        if loads:  # the IO manager loads when the output is yielded, before the checks
            yield dg.Output(_read(context, pipeline), output_name=OUTPUT)
        names = sorted(k.name for k in context.selected_asset_check_keys)
        if names:
            instance, run_id = context.instance, context.run.run_id
            runner = CheckRunner(pg, delta, clock, instance, run_id, context.log.info)
            yield from step_checks(pipeline, names, runner, loads, context.log)

    return _step


def _read(context: AssetExecutionContext, pipeline: PipelineSpec) -> PipelineRead:
    """What the IO manager runs: the pipeline, with this run's reset and time window."""
    config = PipelineRunConfig(**(context.op_execution_context.op_config or {}))
    window = _time_window(context, pipeline)
    slice_text = f" [{window.start.isoformat()}, {window.end.isoformat()})" if window else ""
    context.log.info(
        f"pipeline '{pipeline.name}' ({pipeline.file}): {endpoint_text(pipeline.source)} -> "
        f"{endpoint_text(pipeline.sink)}, {pipeline.sink.strategy.mode}{slice_text}"
    )
    if config.reset:
        context.log.warning(f"pipeline '{pipeline.name}': reset requested, full reload")
    return PipelineRead(pipeline, config.reset, window, try_history(context))


def _backfill_policy(pipeline: PipelineSpec) -> dg.BackfillPolicy | None:
    """A backfill of a range is one run replacing the whole range in one transaction."""
    if pipeline.partitions is None:
        return None
    # Dagster flags the parameter as beta on every code-location load; it is what we want.
    warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
    return dg.BackfillPolicy.single_run()


def _time_window(context: AssetExecutionContext, pipeline: PipelineSpec) -> TimeWindow | None:
    """The slice this run replaces: one partition, or a backfill's whole range."""
    if pipeline.partitions is None:
        return None
    column = pipeline.sink.strategy.partition_column
    assert column is not None  # the loader requires it for partition_replace
    window = context.partition_time_window
    return TimeWindow(column, window.start, window.end)
