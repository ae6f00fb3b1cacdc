"""The `rejected_rows` check (pipelines with `on_bad_rows: reject`): the rows the last load
rejected, from its `pgflow/rows_rejected` metadata, against `max_rejected` (ERROR above)."""

from __future__ import annotations

import dagster as dg

from pgflow.bindings.assets import latest_materialization
from pgflow.bindings.checks.context import ERROR, WARN, CheckRun, result, target_name
from pgflow.bindings.checks.names import REJECTED_ROWS
from pgflow.config.model import PipelineSpec
from pgflow.sinks.postgres.rejects import rejected_table

ROWS_REJECTED = "pgflow/rows_rejected"


def offered(pipeline: PipelineSpec) -> bool:
    return pipeline.sink.strategy.on_bad_rows == "reject"


def _rejected_name(pipeline: PipelineSpec) -> str:
    assert pipeline.sink.table
    return str(rejected_table(pipeline.sink.table))


def describe(pipeline: PipelineSpec) -> str:
    limit = pipeline.sink.strategy.max_rejected
    return (
        f"The last load rejected at most {limit} rows (ERROR above); they are kept in "
        f"{_rejected_name(pipeline)}."
    )


def check(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    latest = latest_materialization(instance, pipeline)
    value = None
    if latest is not None and latest.asset_materialization is not None:
        entry = latest.asset_materialization.metadata.get(ROWS_REJECTED)
        value = entry.value if entry is not None else None
    if not isinstance(value, int):
        text = f"no load of {target_name(pipeline)} with a rejected row count yet"
        return result(pipeline, REJECTED_ROWS, False, WARN, text)
    limit = pipeline.sink.strategy.max_rejected
    where = _rejected_name(pipeline)
    metadata = {"rows_rejected": value, "max_rejected": limit, "rejected_table": where}
    if value > limit:
        text = (
            f"the last load of {target_name(pipeline)} rejected {value} rows, above "
            f"max_rejected {limit}; see their errors in {where}"
        )
        return result(pipeline, REJECTED_ROWS, False, ERROR, text, metadata)
    text = f"the last load of {target_name(pipeline)} rejected {value} rows (max_rejected {limit})"
    return result(pipeline, REJECTED_ROWS, True, ERROR, text, metadata)
