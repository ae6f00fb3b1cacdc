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
    RunLoad,
    result,
    source_name,
)
from pgflow.bindings.checks.target import missing_target, target_table
from pgflow.config.model import KEYED_CHANGE_MODES, PipelineSpec

# Materialization metadata of a load whose target must equal one source snapshot.
EXACT_ROWS = "pgflow/source_rows_exact"
# ... of a load that created its target, and of a CDC run's initial snapshot (bindings/metadata).
CREATED_TARGET = "pgflow/created_target"
SNAPSHOT_ROWS = "pgflow/snapshot_rows"

SourceResult = TypeVar("SourceResult")
TargetResult = TypeVar("TargetResult")


def counts_comparable(pipeline: PipelineSpec) -> bool:
    # A plain append grows by every read, and time partitions hold only the slices loaded so
    # far: neither target is meant to have the source's row count. Nor is the target of an
    # update or a delete, whose source only says which rows change.
    strategy = pipeline.sink.strategy
    plain_append = strategy.mode == "incremental_append" and not strategy.only_new_rows
    changes_only = strategy.mode in KEYED_CHANGE_MODES
    return not plain_append and not changes_only and pipeline.partitions is None


@dataclass(frozen=True)
class LastLoad:
    """The latest materialization a comparison judges the target by."""

    entry: dg.EventLogEntry

    @property
    def exact_rows(self) -> int | None:
        """The source rows of the snapshot the load made the target equal to, if it did."""
        value = self._value(EXACT_ROWS)
        if value is None:
            return None
        assert isinstance(value, int)  # an IntMetadataValue
        return value

    @property
    def whole(self) -> bool:
        """The load read the whole source table: a consistent snapshot load (above), a first
        load (it created the target), or a CDC run's initial snapshot."""
        snapshot = self._value(SNAPSHOT_ROWS)
        return (
            self.exact_rows is not None
            or self._value(CREATED_TARGET) is True
            or (isinstance(snapshot, int) and snapshot > 0)
        )

    def _value(self, key: str) -> object:
        materialization = self.entry.asset_materialization
        value = materialization.metadata.get(key) if materialization else None
        return None if value is None else value.value


def run_load(pipeline: PipelineSpec, instance: dg.DagsterInstance, run_id: str) -> RunLoad:
    """What the run `run_id` did to the asset before its checks: its latest materialization is
    this run's (a whole or an incremental load), or an earlier run's (none)."""
    latest = latest_materialization(instance, pipeline)
    if latest is None or latest.run_id != run_id:
        return "none"
    return "whole" if LastLoad(latest).whole else "incremental"


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
