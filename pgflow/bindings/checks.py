"""Asset checks of each pipeline: one multi-asset check per pipeline, its checks subsettable.

- `unique_key`: no two target rows share a `sink.strategy.unique_key` value (ERROR).
- `row_count_parity`: target rows vs source rows; exact when the last load made the target
  one consistent snapshot of the source (ERROR), within `checks.row_count_tolerance` of the
  source's live count otherwise (WARN).
- `schema` (postgres sources): the source's columns vs the target's, judged by what the next
  load will do under `on_schema_change` (absorbed: WARN, refused: ERROR).
- `freshness`: age of the latest materialization vs `freshness` (warn_after: WARN,
  fail_after or never: ERROR).
- `slot_health` (CDC): the replication slot exists, is usable, and retains less WAL than
  `checks.retained_wal_warn`.

Checks only read: source and target connections are READ ONLY, one short transaction per
probe with a statement timeout. Expected situations (no target before the first load, a
dropped source table, an unreachable database) become failed results that say so, never an
exception that would swallow the other checks' results.

No `from __future__ import annotations` here: Dagster inspects the resource annotations.
"""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType
from typing import Any, Literal

import dagster as dg
import psycopg
from psycopg import errors

from pgflow.bindings.assets import pool_for
from pgflow.bindings.humanize import human, human_bytes
from pgflow.config.model import FreshnessSpec, PipelineSpec, Project
from pgflow.config.naming import dagster_name
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections
from pgflow.connections.secrets import ConnectionConfigError
from pgflow.sinks.postgres import inspect as pg_inspect
from pgflow.sinks.postgres.inspect import DuplicateKeys, SchemaComparison
from pgflow.sources.catalog import TableNotFound, describe_table
from pgflow.sources.slot_health import SlotState, SlotStatus, read_slot, slot_status

UNIQUE_KEY = "unique_key"
ROW_COUNT_PARITY = "row_count_parity"
SCHEMA = "schema"
FRESHNESS = "freshness"
SLOT_HEALTH = "slot_health"
VALUE_PARITY = "value_parity"  # built in pgflow.bindings.value_parity
# Materialization metadata of a load whose target must equal one source snapshot.
EXACT_ROWS = "pgflow/source_rows_exact"
COUNT_TIMEOUT_SECONDS = 60

WARN = dg.AssetCheckSeverity.WARN
ERROR = dg.AssetCheckSeverity.ERROR


# What time it is for the freshness rule: a parameter so tests can move it, not sleep.
Clock = Callable[[], float]


def pipeline_checks(project: Project, clock: Clock = time.time) -> list[dg.AssetChecksDefinition]:
    return [pipeline_check(p, clock) for p in project.pipelines if check_names(p)]


def check_names(pipeline: PipelineSpec) -> list[str]:
    """The checks that mean something for `pipeline`."""
    names = []
    if pipeline.sink.strategy.unique_key:
        names.append(UNIQUE_KEY)
    if _counts_comparable(pipeline):
        names.append(ROW_COUNT_PARITY)
    if pipeline.source.type == "postgres":
        names.append(SCHEMA)
    if pipeline.freshness is not None:
        names.append(FRESHNESS)
    if _is_cdc(pipeline):
        names.append(SLOT_HEALTH)
    if _value_parity().offered(pipeline):
        names.append(VALUE_PARITY)
    return names


def check_key(pipeline: PipelineSpec, name: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(dg.AssetKey(list(pipeline.asset_key)), name)


def _counts_comparable(pipeline: PipelineSpec) -> bool:
    # A plain append grows by every read, and time partitions hold only the slices loaded so
    # far: neither target is meant to have the source's row count.
    strategy = pipeline.sink.strategy
    plain_append = strategy.mode == "incremental_append" and not strategy.only_new_rows
    return not plain_append and pipeline.partitions is None


def _delta() -> ModuleType:
    """The Delta side's reads, imported on first use (deltalake and polars are heavy)."""
    from pgflow.sinks.delta import inspect

    return inspect


def _value_parity() -> ModuleType:
    from pgflow.bindings import value_parity  # it builds on this module

    return value_parity


def _unsupported_delta() -> type[Exception]:
    from pgflow.sources.delta import UnsupportedDeltaTable

    return UnsupportedDeltaTable


def _is_cdc(pipeline: PipelineSpec) -> bool:
    return pipeline.source.options.incremental_strategy == "cdc"


def pipeline_check(pipeline: PipelineSpec, clock: Clock = time.time) -> dg.AssetChecksDefinition:
    asset_key = dg.AssetKey(list(pipeline.asset_key))
    specs = [
        dg.AssetCheckSpec(name, asset=asset_key, description=_DESCRIBE[name](pipeline))
        for name in check_names(pipeline)
    ]
    source_id = pipeline.source.connection_id

    @dg.multi_asset_check(
        name=f"{dagster_name(pipeline.name)}_checks",
        specs=specs,
        can_subset=True,
        description=f"pgflow checks of pipeline '{pipeline.name}' ({pipeline.file}).",
        op_tags={"pgflow/pipeline": pipeline.name},
        # A source count scans the table like a load does: same cap on the OLTP database.
        pool=pool_for(source_id) if source_id else None,
    )
    def _checks(
        context: dg.AssetCheckExecutionContext, pg: PostgresConnections, delta: DeltaStorage
    ) -> Iterator[dg.AssetCheckResult]:
        with ExitStack() as stack:
            run = CheckRun(pipeline, pg, delta, stack, clock)
            for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
                yield run_check(key.name, pipeline, run, context.instance)

    return _checks


class CheckRun:
    """What the checks of one run share: the connections, opened on first use and closed with
    the run, the Delta storage options and the clock.

    Connections are autocommit plus READ ONLY: each probe runs in its own short `BEGIN READ ONLY`
    transaction, and nothing stays idle in a transaction between probes.
    """

    def __init__(
        self,
        pipeline: PipelineSpec,
        pg: PostgresConnections,
        delta: DeltaStorage,
        stack: ExitStack,
        clock: Clock = time.time,
    ):
        self.pipeline, self._pg, self._stack, self.clock = pipeline, pg, stack, clock
        self.storage_options = delta.storage_options()
        self._open: dict[str, psycopg.Connection] = {}

    def source(self) -> psycopg.Connection:
        source = self.pipeline.source
        assert source.connection_id
        return self._connect("source", source.connection_id, source.connection_type)

    def target(self) -> psycopg.Connection:
        sink = self.pipeline.sink
        assert sink.connection_id
        return self._connect("target", sink.connection_id, sink.connection_type)

    def _connect(self, role: str, connection_id: str, connection_type: str) -> psycopg.Connection:
        if role not in self._open:
            conn = self._stack.enter_context(
                self._pg.connect(connection_id, connection_type, autocommit=True)
            )
            conn.read_only = True
            self._open[role] = conn
        return self._open[role]


def run_check(
    name: str, pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    """One check's result; errors a check can meet in normal operation become failed results."""
    try:
        return _RUN[name](pipeline, run, instance)
    except ConnectionConfigError as exc:  # already free of secrets
        return _result(pipeline, name, False, ERROR, f"{exc}; the check could not run")
    except errors.QueryCanceled:
        return _result(
            pipeline,
            name,
            False,
            WARN,
            f"timed out after {COUNT_TIMEOUT_SECONDS} s (statement_timeout); the check could "
            "not finish on this table",
        )
    except (psycopg.OperationalError, _unsupported_delta()) as exc:
        return _result(pipeline, name, False, ERROR, f"the check could not run: {exc}")


def _result(
    pipeline: PipelineSpec,
    name: str,
    passed: bool,
    severity: dg.AssetCheckSeverity,
    description: str,
    metadata: dict[str, Any] | None = None,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey(list(pipeline.asset_key)),
        check_name=name,
        passed=passed,
        severity=severity,
        description=description,
        metadata={k: v for k, v in (metadata or {}).items() if v is not None},
    )


def latest_materialization(
    instance: dg.DagsterInstance, pipeline: PipelineSpec
) -> dg.EventLogEntry | None:
    return instance.get_latest_materialization_event(dg.AssetKey(list(pipeline.asset_key)))


def _target_name(pipeline: PipelineSpec) -> str:
    sink = pipeline.sink
    return f"Delta table {sink.path}" if sink.type == "delta" else f"target {sink.table}"


def _source_name(pipeline: PipelineSpec) -> str:
    source = pipeline.source
    if source.type == "delta":
        return f"source Delta table {source.path}"
    return f"source table {source.table} on connection '{source.connection_id}'"


def _target_exists(pipeline: PipelineSpec, run: CheckRun) -> bool:
    sink = pipeline.sink
    if sink.type == "delta":
        assert sink.path
        return _delta().delta_exists(sink.path, run.storage_options)
    assert sink.table
    return pg_inspect.exists(run.target(), sink.table)


def _target_columns(pipeline: PipelineSpec, run: CheckRun) -> tuple[str, ...]:
    sink = pipeline.sink
    if sink.type == "delta":
        assert sink.path
        return tuple(_delta().delta_columns(sink.path, run.storage_options).names())
    assert sink.table
    conn = run.target()
    with conn.transaction():
        return describe_table(conn, sink.table).column_names


def _missing_target(
    pipeline: PipelineSpec, name: str, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    # Before the first load a missing target is expected; after one, someone dropped it.
    if latest_materialization(instance, pipeline) is None:
        return _result(
            pipeline,
            name,
            False,
            WARN,
            f"{_target_name(pipeline)} does not exist yet: nothing to check before the first "
            "load (materialize the asset)",
        )
    return _result(
        pipeline,
        name,
        False,
        ERROR,
        f"{_target_name(pipeline)} does not exist, although the asset was materialized: was it "
        "dropped? Materialize the asset (with run config reset: true) to rebuild it",
    )


# --- unique_key -------------------------------------------------------------------------


def _check_unique_key(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    sink, key = pipeline.sink, pipeline.sink.strategy.unique_key
    if not _target_exists(pipeline, run):
        return _missing_target(pipeline, UNIQUE_KEY, instance)
    missing = [k for k in key if k not in _target_columns(pipeline, run)]
    if missing:
        return _result(
            pipeline,
            UNIQUE_KEY,
            False,
            ERROR,
            f"key column(s) {', '.join(missing)} of sink.strategy.unique_key are not in "
            f"{_target_name(pipeline)}: keyed loads fail; fix the key or the target",
        )
    if sink.type == "delta":
        assert sink.path
        found = _delta().delta_duplicate_keys(sink.path, key, run.storage_options)
    else:
        assert sink.table
        # A unique index settles it without grouping every row (seconds on a large target).
        index = pg_inspect.index_enforcing_unique(run.target(), sink.table, key)
        if index is not None:
            return _enforced_unique(pipeline, index)
        found = pg_inspect.duplicate_keys(
            run.target(), sink.table, key, timeout=COUNT_TIMEOUT_SECONDS
        )
    metadata = {
        "unique_key": dg.MetadataValue.text(", ".join(key)),
        "duplicate_keys": dg.MetadataValue.int(found.keys),
        "duplicate_rows": dg.MetadataValue.int(found.rows),
        "examples": dg.MetadataValue.json(
            [{"key": values, "rows": rows} for values, rows in found.examples]
        ),
    }
    if found.keys == 0:
        description = f"({', '.join(key)}) is unique in {_target_name(pipeline)}"
        return _result(pipeline, UNIQUE_KEY, True, ERROR, description, metadata)
    return _result(pipeline, UNIQUE_KEY, False, ERROR, _duplicates_text(pipeline, found), metadata)


def _enforced_unique(pipeline: PipelineSpec, index: str) -> dg.AssetCheckResult:
    key = ", ".join(pipeline.sink.strategy.unique_key)
    metadata = {
        "unique_key": dg.MetadataValue.text(key),
        "duplicate_keys": dg.MetadataValue.int(0),
        "duplicate_rows": dg.MetadataValue.int(0),
        "examples": dg.MetadataValue.json([]),
        "enforced_by": dg.MetadataValue.text(index),
    }
    description = f"({key}) is unique in {_target_name(pipeline)}: unique index {index} enforces it"
    return _result(pipeline, UNIQUE_KEY, True, ERROR, description, metadata)


def _duplicates_text(pipeline: PipelineSpec, found: DuplicateKeys) -> str:
    examples = "; ".join(
        ", ".join(f"{k}={v}" for k, v in values.items()) + f" ({rows} rows)"
        for values, rows in found.examples
    )
    return (
        f"{found.keys:,} value(s) of the key ({', '.join(pipeline.sink.strategy.unique_key)}) "
        f"occur more than once in {_target_name(pipeline)} ({found.rows:,} rows), e.g. "
        f"{examples}. Merges on this key now match several rows; remove the extra rows, or "
        "materialize with run config reset: true to rebuild the target from the source"
    )


# --- row_count_parity --------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    target: int
    source: int
    exact: bool
    tolerance: float

    @property
    def difference(self) -> int:
        return self.target - self.source

    @property
    def allowed(self) -> float:
        return 0.0 if self.exact else self.tolerance * self.source

    @property
    def passed(self) -> bool:
        return abs(self.difference) <= self.allowed


def _nothing_to_compare(
    pipeline: PipelineSpec,
    run: CheckRun,
    instance: dg.DagsterInstance,
    name: str,
    latest: dg.EventLogEntry | None,
) -> dg.AssetCheckResult | None:
    """The result of a source-vs-target check when there is no target to compare yet."""
    if latest is None:
        text = "the asset was never materialized: no target to compare with the source yet"
        return _result(pipeline, name, False, WARN, text)
    if not _target_exists(pipeline, run):
        return _missing_target(pipeline, name, instance)
    return None


def _source_not_found(pipeline: PipelineSpec, name: str) -> dg.AssetCheckResult:
    text = f"{_source_name(pipeline)} not found: nothing to compare the target with"
    return _result(pipeline, name, False, WARN, text)


def _check_row_count(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    latest = latest_materialization(instance, pipeline)
    early = _nothing_to_compare(pipeline, run, instance, ROW_COUNT_PARITY, latest)
    if early is not None:
        return early
    assert latest is not None
    exact_rows = _exact_source_rows(latest)
    if exact_rows is not None:
        counts = Counts(_target_rows(pipeline, run), exact_rows, exact=True, tolerance=0.0)
    else:
        try:
            target_rows, source_rows = _both_counts(pipeline, run)
        except TableNotFound:
            return _source_not_found(pipeline, ROW_COUNT_PARITY)
        counts = Counts(target_rows, source_rows, False, pipeline.checks.row_count_tolerance)
    return _result(
        pipeline,
        ROW_COUNT_PARITY,
        counts.passed,
        ERROR if counts.exact else WARN,
        _counts_text(pipeline, counts),
        _counts_metadata(pipeline, counts),
    )


def _exact_source_rows(latest: dg.EventLogEntry) -> int | None:
    materialization = latest.asset_materialization
    value = materialization.metadata.get(EXACT_ROWS) if materialization else None
    return None if value is None else int(value.value)  # type: ignore[arg-type]


def _both_counts(pipeline: PipelineSpec, run: CheckRun) -> tuple[int, int]:
    """(target rows, source rows), counted at the same time on their own connections: two
    scans of a large table cost the time of the longer one, not of both."""
    # Open the connections here: the run's ExitStack is not shared between threads.
    if pipeline.source.type == "postgres":
        run.source()
    if pipeline.sink.type == "postgres":
        run.target()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgflow-source-count") as pool:
        source_rows = pool.submit(_source_rows, pipeline, run)
        return _target_rows(pipeline, run), source_rows.result()


def _target_rows(pipeline: PipelineSpec, run: CheckRun) -> int:
    sink = pipeline.sink
    if sink.type == "delta":
        assert sink.path
        return _delta().delta_row_count(sink.path, run.storage_options)
    assert sink.table
    deleted = pipeline.source.options.deleted_column
    return pg_inspect.row_count(run.target(), sink.table, deleted, COUNT_TIMEOUT_SECONDS)


def _source_rows(pipeline: PipelineSpec, run: CheckRun) -> int:
    source = pipeline.source
    if source.type == "delta":
        assert source.path
        if not _delta().delta_exists(source.path, run.storage_options):
            raise TableNotFound(source.path)
        return _delta().delta_row_count(source.path, run.storage_options)
    assert source.table
    conn = run.source()
    if not pg_inspect.exists(conn, source.table):
        raise TableNotFound(str(source.table))
    return pg_inspect.row_count(conn, source.table, timeout=COUNT_TIMEOUT_SECONDS)


def _counts_text(pipeline: PipelineSpec, counts: Counts) -> str:
    soft = " (soft-deleted rows not counted)" if pipeline.source.options.deleted_column else ""
    figures = f"{_target_name(pipeline)} has {counts.target:,} rows{soft}"
    if counts.exact:
        against = f"the source snapshot of the last load had {counts.source:,}"
        if counts.passed:
            return f"{figures}; {against}: equal, as a consistent snapshot load must be"
        return (
            f"{figures}, but {against}: the target changed since that load (or the load lost "
            "rows); materialize the asset again to rebuild it"
        )
    against = (
        f"the source has {counts.source:,} now (difference {counts.difference:+,}, "
        f"tolerance {counts.tolerance:.2%} = {counts.allowed:,.1f} rows)"
    )
    if counts.passed:
        return f"{figures}; {against}: within tolerance"
    return (
        f"{figures}; {against}: outside tolerance. Changes since the last load, rows deleted "
        "at the source (incremental loads keep them), or rows changed in the target; a load "
        "with run config reset: true makes the target exactly the source"
    )


def _counts_metadata(pipeline: PipelineSpec, counts: Counts) -> dict[str, Any]:
    return {
        "target_rows": dg.MetadataValue.int(counts.target),
        "source_rows": dg.MetadataValue.int(counts.source),
        "difference": dg.MetadataValue.int(counts.difference),
        "tolerance": dg.MetadataValue.float(0.0 if counts.exact else counts.tolerance),
        "mode": dg.MetadataValue.text("exact" if counts.exact else "tolerance"),
        "soft_delete_column": dg.MetadataValue.text(pipeline.source.options.deleted_column)
        if pipeline.source.options.deleted_column
        else None,
    }


# --- schema -----------------------------------------------------------------------------


def _check_schema(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    source, sink = pipeline.source, pipeline.sink
    assert source.table
    conn = run.source()
    try:
        with conn.transaction():
            source_info = describe_table(conn, source.table)
    except TableNotFound:
        return _result(
            pipeline,
            SCHEMA,
            False,
            ERROR,
            f"{_source_name(pipeline)} not found: the next load will fail; check source.table",
        )
    if not _target_exists(pipeline, run):
        return _missing_target(pipeline, SCHEMA, instance)
    if sink.type == "delta":
        assert sink.path
        table = _delta().delta_columns(sink.path, run.storage_options)
        comparison = _delta().compare_delta_columns(source_info, table, sink.strategy)
    else:
        assert sink.table
        target = run.target()
        with target.transaction():
            target_info = describe_table(target, sink.table)
        comparison = pg_inspect.compare_columns(
            target,
            source_info,
            target_info,
            sink.strategy.on_schema_change,
            source.options.deleted_column,
        )
    metadata = {
        "added_at_source": dg.MetadataValue.text(", ".join(comparison.added)),
        "dropped_at_source": dg.MetadataValue.text(", ".join(comparison.dropped)),
        "retyped": dg.MetadataValue.text(", ".join(comparison.retyped)),
        "on_schema_change": dg.MetadataValue.text(sink.strategy.on_schema_change),
        "source_columns": dg.MetadataValue.int(len(source_info.columns)),
    }
    if not comparison:
        description = (
            f"source {source.table} and {_target_name(pipeline)} agree on every column "
            f"({len(source_info.columns)} in the source)"
        )
        return _result(pipeline, SCHEMA, True, WARN, description, metadata)
    differences = _differences_text(comparison)
    if comparison.refused:
        description = (
            f"the next load will fail: {differences} ({'; '.join(comparison.refused)}). "
            f"{_schema_fix(pipeline, comparison)}"
        )
        return _result(pipeline, SCHEMA, False, ERROR, description, metadata)
    description = f"{differences}; {_absorbed_text(pipeline)}"
    return _result(pipeline, SCHEMA, False, WARN, description, metadata)


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
        if comparison.dropped:
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


# --- freshness --------------------------------------------------------------------------

FreshnessLevel = Literal["fresh", "warn", "fail"]


@dataclass(frozen=True)
class Freshness:
    """Where a pipeline stands against its freshness windows at one moment."""

    level: FreshnessLevel
    last: float | None  # timestamp of the latest materialization; None: never materialized
    age: timedelta | None
    spec: FreshnessSpec

    def describe(self) -> str:
        windows = (
            f"warn after {human(self.spec.warn_after)}, " if self.spec.warn_after else ""
        ) + f"fail after {human(self.spec.fail_after)}"
        if self.age is None:
            return f"never materialized ({windows})"
        return f"last materialized {human(self.age)} ago ({windows})"


def freshness(spec: FreshnessSpec, last: float | None, now: float) -> Freshness:
    """The freshness rule, shared by the check and the sensor: never or past fail_after is
    fail, past warn_after is warn, else fresh."""
    if last is None:
        return Freshness("fail", None, None, spec)
    age = timedelta(seconds=max(0.0, now - last))
    if age > spec.fail_after:
        level: FreshnessLevel = "fail"
    elif spec.warn_after is not None and age > spec.warn_after:
        level = "warn"
    else:
        level = "fresh"
    return Freshness(level, last, age, spec)


def pipeline_freshness(
    instance: dg.DagsterInstance, pipeline: PipelineSpec, now: float | None = None
) -> Freshness:
    assert pipeline.freshness
    latest = latest_materialization(instance, pipeline)
    last = latest.timestamp if latest is not None else None
    return freshness(pipeline.freshness, last, time.time() if now is None else now)


def _check_freshness(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    state = pipeline_freshness(instance, pipeline, run.clock())
    spec = state.spec
    metadata = {
        "last_materialization": dg.MetadataValue.timestamp(state.last) if state.last else None,
        "age_seconds": dg.MetadataValue.float(round(state.age.total_seconds(), 1))
        if state.age is not None
        else None,
        "warn_after": dg.MetadataValue.text(human(spec.warn_after)) if spec.warn_after else None,
        "fail_after": dg.MetadataValue.text(human(spec.fail_after)),
        "state": dg.MetadataValue.text(state.level),
    }
    text = state.describe()
    if state.level == "fresh":
        return _result(pipeline, FRESHNESS, True, WARN, text, metadata)
    if state.last is None:
        text += ": materialize the asset (is its schedule or sensor running?)"
    else:
        limit = spec.fail_after if state.level == "fail" else spec.warn_after
        assert limit is not None
        text += f": older than {human(limit)}; is its schedule or sensor running, do runs fail?"
    severity = ERROR if state.level == "fail" else WARN
    return _result(pipeline, FRESHNESS, False, severity, text, metadata)


# --- slot_health ------------------------------------------------------------------------


def _check_slot(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    slot = pipeline.source.options.slot_name
    assert slot
    conn = run.source()
    with conn.transaction():
        state = read_slot(conn, slot)
    status = slot_status(state, pipeline.checks.retained_wal_warn_bytes)
    metadata = slot_metadata(state, pipeline)
    if status == "missing" and latest_materialization(instance, pipeline) is None:
        return _result(
            pipeline,
            SLOT_HEALTH,
            False,
            WARN,
            f"replication slot {slot} does not exist yet: the first materialization creates it",
            metadata,
        )
    severity = WARN if status in ("retaining", "unreserved") else ERROR
    text = slot_text(pipeline, state, status)
    return _result(pipeline, SLOT_HEALTH, status == "healthy", severity, text, metadata)


def slot_metadata(state: SlotState, pipeline: PipelineSpec) -> dict[str, Any]:
    return {
        "slot": dg.MetadataValue.text(state.name),
        "exists": dg.MetadataValue.bool(state.exists),
        "wal_status": dg.MetadataValue.text(state.wal_status or ""),
        "retained_wal_bytes": dg.MetadataValue.int(state.retained_bytes)
        if state.retained_bytes is not None
        else None,
        "retained_wal_warn_bytes": dg.MetadataValue.int(pipeline.checks.retained_wal_warn_bytes),
        "active": dg.MetadataValue.bool(state.active),
        "confirmed_flush_lsn": dg.MetadataValue.text(state.confirmed_flush_lsn or ""),
        "restart_lsn": dg.MetadataValue.text(state.restart_lsn or ""),
        "invalidation": dg.MetadataValue.text(state.invalidation) if state.invalidation else None,
    }


def slot_text(pipeline: PipelineSpec, state: SlotState, status: SlotStatus) -> str:
    """What is wrong with the slot (or that nothing is), with the fix."""
    slot, where = state.name, f"connection '{pipeline.source.connection_id}'"
    reset = "materialize the asset with run config reset: true (re-snapshot)"
    held = f"{human_bytes(state.retained_bytes or 0)} of WAL"
    if status == "missing":
        return (
            f"replication slot {slot} does not exist on {where} (dropped outside pgflow, or by "
            f"`pgflow cdc cleanup`): changes since the last run cannot be streamed and the next "
            f"run fails. Fix: {reset}. If the pipeline is retired, remove its spec and run "
            "`pgflow cdc cleanup` to drop its publication"
        )
    if status == "invalidated":
        return (
            f"replication slot {slot} on {where} was invalidated ({state.invalidation}): it "
            f"can never stream again and the next run fails. Fix: {reset}, which replaces "
            "the slot; raise max_slot_wal_keep_size or run the pipeline more often so it does "
            "not recur"
        )
    if status == "foreign":
        return (
            f"a replication slot named {slot} exists on {where} but belongs to database "
            f"{state.database} and plugin {state.plugin}, not {state.current_database} and "
            "pgoutput: the next run fails. Fix: choose another source.options.slot_name"
        )
    if status == "unreserved":
        return (
            f"replication slot {slot} pins {held}, past max_slot_wal_keep_size (wal_status "
            "unreserved): the next checkpoint may invalidate it. Fix: materialize the asset "
            "now, which drains the slot"
        )
    limit = human_bytes(pipeline.checks.retained_wal_warn_bytes)
    if status == "retaining":
        return (
            f"replication slot {slot} pins {held} on {where} (warning above {limit}): the "
            "source keeps that WAL until the pipeline reads it. Fix: materialize the asset "
            "(it drains the slot), or raise checks.retained_wal_warn"
        )
    return (
        f"replication slot {slot} is healthy: it retains {held} (warning above {limit}), "
        f"wal_status {state.wal_status}"
    )


_DESCRIBE: dict[str, Callable[[PipelineSpec], str]] = {
    UNIQUE_KEY: lambda p: (
        f"No two rows of the target share a value of the key "
        f"({', '.join(p.sink.strategy.unique_key)}). Fails (ERROR) naming the number of "
        "repeated keys and a few examples."
    ),
    ROW_COUNT_PARITY: lambda p: (
        "The target's row count matches the source's: exactly (ERROR) when the last load made "
        "the target one consistent snapshot of the source, else within "
        f"{p.checks.row_count_tolerance:.2%} of the source's live count (WARN)"
        + (" not counting soft-deleted rows" if p.source.options.deleted_column else "")
        + "."
    ),
    SCHEMA: lambda p: (
        "The source's columns (names and types) match the target's. A difference the next "
        f"load absorbs under on_schema_change: {p.sink.strategy.on_schema_change} warns; one "
        "that will stop the load is an ERROR naming the fix."
    ),
    FRESHNESS: lambda p: (
        "The latest materialization is recent: "
        + (f"WARN after {human(p.freshness.warn_after)}, " if p.freshness.warn_after else "")
        + f"ERROR after {human(p.freshness.fail_after)} or when never materialized."
        if p.freshness
        else ""
    ),
    SLOT_HEALTH: lambda p: (
        f"Replication slot {p.source.options.slot_name} exists and can stream (ERROR "
        "otherwise), and retains at most "
        f"{human_bytes(p.checks.retained_wal_warn_bytes)} of WAL (WARN above)."
    ),
    VALUE_PARITY: lambda p: _value_parity().describe(p),
}

_RUN: dict[str, Callable[[PipelineSpec, CheckRun, dg.DagsterInstance], dg.AssetCheckResult]] = {
    UNIQUE_KEY: _check_unique_key,
    ROW_COUNT_PARITY: _check_row_count,
    SCHEMA: _check_schema,
    FRESHNESS: _check_freshness,
    SLOT_HEALTH: _check_slot,
    VALUE_PARITY: lambda p, r, i: _value_parity().check(p, r, i),
}
