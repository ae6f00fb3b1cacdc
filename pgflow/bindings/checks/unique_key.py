"""The `unique_key` check: no two target rows share a value of `sink.strategy.unique_key`."""

from __future__ import annotations

import dagster as dg

from pgflow.bindings.checks.context import ERROR, CheckRun, result, target_name
from pgflow.bindings.checks.names import UNIQUE_KEY
from pgflow.bindings.checks.target import missing_target, target_table
from pgflow.config.model import PipelineSpec
from pgflow.sinks.postgres.inspect import DuplicateKeys


def offered(pipeline: PipelineSpec) -> bool:
    return bool(pipeline.sink.strategy.unique_key)


def describe(pipeline: PipelineSpec) -> str:
    return (
        f"No two rows of the target share a value of the key "
        f"({', '.join(pipeline.sink.strategy.unique_key)}). Fails (ERROR) naming the number of "
        "repeated keys and a few examples."
    )


def check(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    found = _check(pipeline, run, instance, scan=True)
    assert found is not None
    return found


def from_catalog(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult | None:
    """The check where the catalog settles it (a unique index, a missing key column), None
    where only grouping every row could."""
    return _check(pipeline, run, instance, scan=False)


def _check(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance, scan: bool
) -> dg.AssetCheckResult | None:
    key = pipeline.sink.strategy.unique_key
    target = target_table(run)
    if not target.exists():
        return missing_target(pipeline, UNIQUE_KEY, instance)
    columns = target.column_names()
    missing = [k for k in key if k not in columns]
    if missing:
        return result(
            pipeline,
            UNIQUE_KEY,
            False,
            ERROR,
            f"key column(s) {', '.join(missing)} of sink.strategy.unique_key are not in "
            f"{target_name(pipeline)}: keyed loads fail; fix the key or the target",
        )
    # A unique index settles it without grouping every row (seconds on a large target).
    index = target.enforcing_index(key)
    if index is not None:
        return _enforced_unique(pipeline, index)
    if not scan:
        return None
    found = target.duplicate_keys(key)
    metadata = {
        "unique_key": dg.MetadataValue.text(", ".join(key)),
        "duplicate_keys": dg.MetadataValue.int(found.keys),
        "duplicate_rows": dg.MetadataValue.int(found.rows),
        "examples": dg.MetadataValue.json(
            [{"key": values, "rows": rows} for values, rows in found.examples]
        ),
    }
    if found.keys == 0:
        description = f"({', '.join(key)}) is unique in {target_name(pipeline)}"
        return result(pipeline, UNIQUE_KEY, True, ERROR, description, metadata)
    return result(pipeline, UNIQUE_KEY, False, ERROR, _duplicates_text(pipeline, found), metadata)


def _enforced_unique(pipeline: PipelineSpec, index: str) -> dg.AssetCheckResult:
    key = ", ".join(pipeline.sink.strategy.unique_key)
    metadata = {
        "unique_key": dg.MetadataValue.text(key),
        "duplicate_keys": dg.MetadataValue.int(0),
        "duplicate_rows": dg.MetadataValue.int(0),
        "examples": dg.MetadataValue.json([]),
        "enforced_by": dg.MetadataValue.text(index),
    }
    description = f"({key}) is unique in {target_name(pipeline)}: unique index {index} enforces it"
    return result(pipeline, UNIQUE_KEY, True, ERROR, description, metadata)


def _duplicates_text(pipeline: PipelineSpec, found: DuplicateKeys) -> str:
    examples = "; ".join(
        ", ".join(f"{k}={v}" for k, v in values.items()) + f" ({rows} rows)"
        for values, rows in found.examples
    )
    return (
        f"{found.keys:,} value(s) of the key ({', '.join(pipeline.sink.strategy.unique_key)}) "
        f"occur more than once in {target_name(pipeline)} ({found.rows:,} rows), e.g. "
        f"{examples}. Merges on this key now match several rows; remove the extra rows, or "
        "materialize with run config reset: true to rebuild the target from the source"
    )
