"""What the checks comparing the target with the source share: which pipelines they mean
something for, what the last load promised, and probing both sides at once."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import dagster as dg

from pgflow.bindings.assets import latest_materialization
from pgflow.bindings.checks.context import (
    WARN,
    CheckRun,
    result,
    source_name,
)
from pgflow.bindings.checks.target import missing_target, target_table
from pgflow.config.model import PipelineSpec

# Materialization metadata of a load whose target must equal one source snapshot.
EXACT_ROWS = "pgflow/source_rows_exact"

SourceResult = TypeVar("SourceResult")
TargetResult = TypeVar("TargetResult")


def counts_comparable(pipeline: PipelineSpec) -> bool:
    # A plain append grows by every read, and time partitions hold only the slices loaded so
    # far: neither target is meant to have the source's row count.
    strategy = pipeline.sink.strategy
    plain_append = strategy.mode == "incremental_append" and not strategy.only_new_rows
    return not plain_append and pipeline.partitions is None


@dataclass(frozen=True)
class LastLoad:
    """The latest materialization a comparison judges the target by."""

    entry: dg.EventLogEntry

    @property
    def exact_rows(self) -> int | None:
        """The source rows of the snapshot the load made the target equal to, if it did."""
        materialization = self.entry.asset_materialization
        value = materialization.metadata.get(EXACT_ROWS) if materialization else None
        if value is None:
            return None
        assert isinstance(value.value, int)  # an IntMetadataValue
        return value.value


def last_load(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance, name: str
) -> LastLoad | dg.AssetCheckResult:
    """The last load to compare against, or the check's result when there is no target to
    compare yet."""
    latest = latest_materialization(instance, pipeline)
    if latest is None:
        text = "the asset was never materialized: no target to compare with the source yet"
        return result(pipeline, name, False, WARN, text)
    if not target_table(run).exists():
        return missing_target(pipeline, name, instance)
    return LastLoad(latest)


def source_not_found(pipeline: PipelineSpec, name: str) -> dg.AssetCheckResult:
    text = f"{source_name(pipeline)} not found: nothing to compare the target with"
    return result(pipeline, name, False, WARN, text)


def both_sides(
    run: CheckRun,
    source: Callable[[], SourceResult],
    target: Callable[[], TargetResult],
    thread_name: str,
) -> tuple[SourceResult, TargetResult]:
    """Both sides at once on their own connections: two scans of a large table cost the time
    of the longer one, not of both."""
    run.open_postgres_sides()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name) as pool:
        theirs = pool.submit(source)
        ours = target()
        return theirs.result(), ours
