"""What every pipeline's asset is made of (its key, pool, metadata, output), and an upstream
spec per source table. pipeline_asset.py builds a pipeline's own step.

No `from __future__ import annotations` here: pydantic reads PipelineRunConfig's annotations.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from pgflow.bindings.code_references import code_references
from pgflow.bindings.io_managers import io_manager_key
from pgflow.bindings.metadata import endpoint_table_name
from pgflow.config.model import PartitionsSpec, PipelineSpec, Project, SinkSpec, SourceSpec
from pgflow.config.naming import dagster_name, source_key


class PipelineRunConfig(dg.Config):
    """Run-time options of a pgflow asset (Launchpad or `dagster asset materialize -c`)."""

    reset: bool = Field(
        default=False,
        description="Ignore the stored cursor: read the whole source and rebuild the target.",
    )


# Inferred once: Dagster would infer it from a `config: PipelineRunConfig` parameter again for
# every asset, a fifth of what building one costs. A multi-asset takes its fields as a dict.
_RUN_CONFIG_SHAPE: Any = PipelineRunConfig.to_config_schema().config_type  # a Shape
RUN_CONFIG_FIELDS: dict[str, dg.Field] = dict(_RUN_CONFIG_SHAPE.fields)


def pool_for(connection_id: str) -> str:
    """One Dagster concurrency pool per source connection: caps loads hitting one OLTP database."""
    return f"pgflow/source/{connection_id}"


def run_tags(pipeline: PipelineSpec) -> dict[str, str]:
    """Tags of runs that sensors and schedules request for `pipeline`.

    `pgflow/source` lets dagster.yaml's `tag_concurrency_limits` cap queued runs per source
    connection; `pgflow/pipeline` names what the run loads.
    """
    tags = {"pgflow/pipeline": pipeline.name}
    if pipeline.source.connection_id:
        tags["pgflow/source"] = pipeline.source.connection_id
    return tags


def asset_key(pipeline: PipelineSpec) -> dg.AssetKey:
    return dg.AssetKey(list(pipeline.asset_key))


def latest_materialization(
    instance: dg.DagsterInstance, pipeline: PipelineSpec
) -> dg.EventLogEntry | None:
    return instance.get_latest_materialization_event(asset_key(pipeline))


def source_asset_key(source: SourceSpec) -> dg.AssetKey:
    return dg.AssetKey(list(source_key(source)))


def read_sources(source: SourceSpec) -> list[SourceSpec]:
    """What the pipeline's asset depends on: its table, or the tables its query reads (as
    SourceSpecs of the same connection, so their keys are those a table pipeline gets)."""
    if source.query is None:
        return [source]
    return [
        SourceSpec("postgres", source.connection_id, source.connection_type, table)
        for table in source.reads or ()
    ]


def source_specs(project: Project) -> list[dg.AssetSpec]:
    """External tables the pipelines read, so the UI shows source -> target lineage; a
    query's tables too (config/query_cache.py), though no pipeline reads them directly."""
    specs: dict[dg.AssetKey, dg.AssetSpec] = {}
    for pipeline in project.pipelines:
        for source in read_sources(pipeline.source):
            key = source_asset_key(source)
            if key not in specs:
                specs[key] = _source_spec(key, source)
    return list(specs.values())


def _source_spec(key: dg.AssetKey, source: SourceSpec) -> dg.AssetSpec:
    where = f"table {source.table} on connection '{source.connection_id}'"
    if source.type == "delta":
        where = f"Delta table {source.path}"
    return dg.AssetSpec(
        key=key,
        description=f"Source {where}, read by pgflow.",
        group_name=dagster_name(source.connection_id or "sources"),
        kinds={source.type},
        metadata={"dagster/table_name": endpoint_table_name(source)},
    )


def freshness_policy(pipeline: PipelineSpec) -> dg.FreshnessPolicy | None:
    if pipeline.freshness is None:
        return None
    return dg.FreshnessPolicy.time_window(
        fail_window=pipeline.freshness.fail_after, warn_window=pipeline.freshness.warn_after
    )


def asset_out(pipeline: PipelineSpec) -> dg.AssetOut:
    """The pipeline's asset as an output of its step: its own, or a shared slot's or a
    schema's multi-asset step."""
    sink = pipeline.sink
    return dg.AssetOut(
        key=asset_key(pipeline),
        description=pipeline.description or default_description(pipeline),
        is_required=False,
        io_manager_key=io_manager_key(sink.strategy.mode, sink.type),
        metadata=asset_metadata(pipeline),
        group_name=pipeline.group,
        owners=list(pipeline.owners),
        tags=pipeline.tags,
        kinds={sink.type},
        freshness_policy=freshness_policy(pipeline),
    )


def partitions_definition(
    partitions: PartitionsSpec | None,
) -> dg.TimeWindowPartitionsDefinition | None:
    return None if partitions is None else time_partitions(partitions)


def time_partitions(partitions: PartitionsSpec) -> dg.TimeWindowPartitionsDefinition:
    start = partitions.start.isoformat()
    if partitions.type == "daily":
        return dg.DailyPartitionsDefinition(
            start_date=start, timezone=partitions.timezone, end_offset=partitions.end_offset
        )
    return dg.MonthlyPartitionsDefinition(
        start_date=start, timezone=partitions.timezone, end_offset=partitions.end_offset
    )


def default_description(pipeline: PipelineSpec) -> str:
    return f"{endpoint_text(pipeline.source)} replicated into {endpoint_text(pipeline.sink)} ({pipeline.sink.strategy.mode})."


def endpoint_text(endpoint: SourceSpec | SinkSpec) -> str:
    if endpoint.type == "delta":
        return f"Delta table {endpoint.path}"
    if isinstance(endpoint, SourceSpec) and endpoint.query is not None:
        return f"a query on '{endpoint.connection_id}'"
    return f"{endpoint.table} on '{endpoint.connection_id}'"


def asset_metadata(pipeline: PipelineSpec) -> dict[str, object]:
    """The definition's metadata: the target's `dagster/table_name`, the spec's lines as
    `dagster/code_references`, and pgflow's own facts. Column schema and lineage need the
    table, so its materializations carry them."""
    metadata = {
        "dagster/table_name": endpoint_table_name(pipeline.sink),
        "dagster/code_references": code_references(pipeline),
        "pgflow/pipeline": pipeline_metadata(pipeline),
    }
    if pipeline.source.query is not None:
        metadata["pgflow/source_query"] = dg.MetadataValue.md(
            f"```sql\n{pipeline.source.query}\n```"
        )
    return metadata


def pipeline_metadata(pipeline: PipelineSpec) -> dict[str, str]:
    """Non-secret facts about the pipeline, shown in the UI and used by load_input."""
    sink = pipeline.sink
    return {
        "name": pipeline.name,
        "spec_file": str(pipeline.file),
        "sink_connection_id": sink.connection_id or "",
        "sink_connection_type": sink.connection_type,
        "sink_schema": sink.table.schema if sink.table else "",
        "sink_table": sink.table.name if sink.table else "",
        "sink_path": sink.path or "",
        "mode": sink.strategy.mode,
    }
