"""The `schema` check (postgres sources): the source's columns vs the target's, judged by what
the next load will do under `on_schema_change` (absorbed: WARN, refused: ERROR)."""

from __future__ import annotations

import dagster as dg

from pgflow.bindings.checks.context import (
    ERROR,
    WARN,
    CheckRun,
    result,
    source_name,
    target_name,
)
from pgflow.bindings.checks.names import SCHEMA
from pgflow.bindings.checks.target import missing_target, target_table
from pgflow.config.model import PipelineSpec
from pgflow.sinks.postgres.inspect import SchemaComparison
from pgflow.sources.base import SourceConfigError
from pgflow.sources.catalog import TableInfo, TableNotFound, describe_table, restrict_columns
from pgflow.sources.query import describe_query


def offered(pipeline: PipelineSpec) -> bool:
    return pipeline.source.type == "postgres"


def describe(pipeline: PipelineSpec) -> str:
    return (
        "The source's columns (names and types) match the target's. A difference the next "
        f"load absorbs under on_schema_change: {pipeline.sink.strategy.on_schema_change} warns; "
        "one that will stop the load is an ERROR naming the fix."
    )


def check(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    try:
        source_info = _describe_source(pipeline, run)
    except TableNotFound:
        return result(
            pipeline,
            SCHEMA,
            False,
            ERROR,
            f"{source_name(pipeline)} not found: the next load will fail; check source.table",
        )
    except SourceConfigError as exc:
        return result(
            pipeline, SCHEMA, False, ERROR, f"the next load will fail: {exc.field}: {exc.detail}"
        )
    target = target_table(run)
    if not target.exists():
        return missing_target(pipeline, SCHEMA, instance)
    comparison = target.compare(source_info)
    metadata = {
        "added_at_source": dg.MetadataValue.text(", ".join(comparison.added)),
        "dropped_at_source": dg.MetadataValue.text(", ".join(comparison.dropped)),
        "retyped": dg.MetadataValue.text(", ".join(comparison.retyped)),
        "on_schema_change": dg.MetadataValue.text(pipeline.sink.strategy.on_schema_change),
        "source_columns": dg.MetadataValue.int(len(source_info.columns)),
    }
    if not comparison:
        description = (
            f"{source_name(pipeline)} and {target_name(pipeline)} agree on every column "
            f"({len(source_info.columns)} in the source)"
        )
        return result(pipeline, SCHEMA, True, WARN, description, metadata)
    differences = _differences_text(comparison)
    if comparison.refused:
        description = (
            f"the next load will fail: {differences} ({'; '.join(comparison.refused)}). "
            f"{_schema_fix(pipeline, comparison)}"
        )
        return result(pipeline, SCHEMA, False, ERROR, description, metadata)
    description = f"{differences}; {_absorbed_text(pipeline)}"
    return result(pipeline, SCHEMA, False, WARN, description, metadata)


def _describe_source(pipeline: PipelineSpec, run: CheckRun) -> TableInfo:
    source, conn = pipeline.source, run.source()
    with conn.transaction():  # READ ONLY: the checks' connections are
        if source.query is not None:
            info = describe_query(conn, source.query)
        else:
            assert source.table
            info = describe_table(conn, source.table)
    # The target holds only the included columns: the others are not the load's.
    return restrict_columns(info, pipeline.source.options.include_columns)


def _differences_text(comparison: SchemaComparison) -> str:
    parts = []
    if comparison.added:
        parts.append(f"added at the source: {', '.join(comparison.added)}")
    if comparison.dropped:
        parts.append(f"dropped at the source: {', '.join(comparison.dropped)}")
    if comparison.retyped:
        parts.append(f"retyped at the source: {', '.join(comparison.retyped)}")
    return "; ".join(parts)


def _absorbed_text(pipeline: PipelineSpec) -> str:
    strategy = pipeline.sink.strategy
    if pipeline.sink.type == "delta":
        if strategy.mode == "full_refresh":
            return "the next load absorbs it (full_refresh overwrites the Delta table's schema)"
        if pipeline.source.options.incremental_strategy == "cdc":
            return "the next CDC run adds the new columns in its merge (schema evolution)"
        return (
            "the next load absorbs it: new columns are added, values of retyped columns are "
            "cast to the table's existing types (a value that does not cast fails the load; "
            "run once with run config reset: true to take the new types)"
        )
    does = (
        "adds, drops and retypes target columns"
        if strategy.on_schema_change == "sync"
        else "adds the new columns"
    )
    return f"the next load absorbs it (on_schema_change: {strategy.on_schema_change} {does})"


def _schema_fix(pipeline: PipelineSpec, comparison: SchemaComparison) -> str:
    policy = pipeline.sink.strategy.on_schema_change
    if pipeline.sink.type == "delta":
        if comparison.dropped or comparison.retyped:  # retyped: refused by CDC only
            return (
                "Fix: materialize once with run config reset: true to rebuild the Delta table "
                "from the source"
            )
        return (
            "Fix: set sink.strategy.on_schema_change: add_columns, or materialize once with "
            "run config reset: true"
        )
    if comparison.dropped or comparison.retyped:
        return (
            "Fix: set sink.strategy.on_schema_change: sync (pgflow then drops and retypes "
            "target columns to match), or ALTER the target yourself"
        )
    return (
        f"Fix: set sink.strategy.on_schema_change: add_columns or sync (it is {policy}), or "
        "add the columns to the target yourself"
    )
