"""One step per shared replication slot: a multi-asset over the slot's pipelines.

The step reads the slot once and applies every selected table's changes, each in its own sink
transaction (flows/cdc/group_run.py); each table stays its own asset, with its own
materialization, metadata, checks and history. A subset (one table's asset materialized
alone) is allowed: the other tables' changes stay in the slot until they run. A table that
fails fails its asset only; the others are materialized, then the step fails naming it.
"""

from collections.abc import Iterator

import dagster as dg
from dagster import AssetExecutionContext

from pgflow.bindings.assets import (
    PipelineRunConfig,
    asset_key,
    asset_out,
    pool_for,
    source_asset_key,
)
from pgflow.bindings.cdc_runs import run_cdc_group
from pgflow.bindings.io_managers import CdcApplied
from pgflow.bindings.retries import retry_policy
from pgflow.bindings.step_errors import step_errors
from pgflow.bindings.try_history import try_history
from pgflow.config.cdc_groups import CdcGroupSpec
from pgflow.config.model import PipelineSpec
from pgflow.config.naming import dagster_name
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections


def output_name(pipeline: PipelineSpec) -> str:
    return dagster_name(pipeline.name)


def cdc_group_asset(group: CdcGroupSpec) -> dg.AssetsDefinition:
    pipelines = {output_name(p): p for p in group.pipelines}

    @dg.multi_asset(
        name=f"cdc_slot_{dagster_name(group.connection_id)}_{dagster_name(group.slot_name)}",
        description=f"Replication slot {group.slot_name} on '{group.connection_id}', read once "
        f"for {len(pipelines)} tables.",
        outs={name: asset_out(p) for name, p in pipelines.items()},
        deps=[source_asset_key(p.source) for p in group.pipelines],
        internal_asset_deps={name: {source_asset_key(p.source)} for name, p in pipelines.items()},
        can_subset=True,
        pool=pool_for(group.connection_id),
        op_tags={"pgflow/slot": group.slot_name},
        retry_policy=retry_policy(),
    )
    def _slot(
        context: AssetExecutionContext,
        config: PipelineRunConfig,
        pg: PostgresConnections,
        delta: DeltaStorage,
    ) -> Iterator[dg.Output[CdcApplied]]:
        selected = [p for p in group.pipelines if asset_key(p) in context.selected_asset_keys]
        names = [p.name for p in selected]
        context.log.info(
            f"slot {group.slot_name} on '{group.connection_id}': {', '.join(names)}"
            + (" (reset requested: re-snapshot)" if config.reset else "")
        )
        with step_errors(selected[0]):  # the slot's own errors: the server, the slot
            outcome = run_cdc_group(pg, delta, group, names, config.reset)
        failed = []
        tries = try_history(context)
        for pipeline in selected:
            result = outcome[pipeline.name]
            if isinstance(result, BaseException):
                context.log.error(f"pipeline '{pipeline.name}' ({pipeline.file}): {result}")
                failed.append((pipeline, result))
                continue
            yield dg.Output(CdcApplied(pipeline, result, tries), output_name=output_name(pipeline))
        if failed:
            pipeline, error = failed[0]
            with step_errors(pipeline):
                raise error

    return _slot
