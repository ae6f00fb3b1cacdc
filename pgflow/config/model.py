"""Typed pipeline specs: what a YAML file says once it has been validated.

Every class is a frozen dataclass so a spec can be shared between the code location,
sensors and runs without anyone mutating it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from psycopg import sql

from pgflow.config.value_parity_spec import ValueParitySpec as ValueParitySpec

if TYPE_CHECKING:
    from pgflow.config.cdc_groups import CdcGroupSpec
    from pgflow.config.wildcards import SchemaListing

ConnectionType = Literal["env", "vault"]
SourceType = Literal["postgres", "delta"]
SinkType = Literal["postgres", "delta"]
IncrementalStrategy = Literal["full", "column", "xmin", "cdc"]
SinkMode = Literal[
    "full_refresh",
    "incremental_append",
    "incremental_merge",
    "replace",
    "partition_replace",
    "update",
    "delete",
]
FullRefreshMethod = Literal["truncate_insert", "exchange"]
MergePolicy = Literal["delete_insert", "upsert", "shadow_swap"]
DuplicatePolicy = Literal["fail", "keep_last"]
UnmatchedPolicy = Literal["ignore", "fail"]
NativeMode = Literal["auto", "required", "disabled"]
SchemaChangePolicy = Literal["fail", "add_columns", "sync"]
NumericAs = Literal["decimal", "string"]
NullCursorPolicy = Literal["exclude", "include", "fail"]
SnapshotMode = Literal["initial", "never"]
TruncatePolicy = Literal["apply", "fail"]
DeltaDeletes = Literal["none", "cdf", "key_pass"]
PartitionType = Literal["daily", "monthly"]
# The width of a RANGE partition create_partitions makes (inferred when not given).
PartitionInterval = Literal["day", "month", "year"]
# What `source.table.kinds` of a schema-wide spec may list. "table" is an ordinary or a
# partitioned table (the parent; its partitions are never listed, so no row loads twice).
RelationKind = Literal["table", "view", "materialized_view", "foreign_table"]
KeylessPolicy = Literal["fail", "full_refresh", "skip"]

# The values a spec may choose, in the order messages list them (one home: the Literals above).
CONNECTION_TYPES: tuple[ConnectionType, ...] = get_args(ConnectionType)
ENDPOINT_TYPES: tuple[SourceType, ...] = get_args(SourceType)
INCREMENTAL_STRATEGIES: tuple[IncrementalStrategy, ...] = get_args(IncrementalStrategy)
SINK_MODES: tuple[SinkMode, ...] = get_args(SinkMode)
FULL_REFRESH_METHODS: tuple[FullRefreshMethod, ...] = get_args(FullRefreshMethod)
MERGE_POLICIES: tuple[MergePolicy, ...] = get_args(MergePolicy)
DUPLICATE_POLICIES: tuple[DuplicatePolicy, ...] = get_args(DuplicatePolicy)
UNMATCHED_POLICIES: tuple[UnmatchedPolicy, ...] = get_args(UnmatchedPolicy)
# Modes that change rows the target already holds and never add any: the target is not a
# copy of the source, and must exist before the first load.
KEYED_CHANGE_MODES: tuple[SinkMode, ...] = ("update", "delete")
NATIVE_MODES: tuple[NativeMode, ...] = get_args(NativeMode)
SCHEMA_CHANGE_POLICIES: tuple[SchemaChangePolicy, ...] = get_args(SchemaChangePolicy)
NUMERIC_AS: tuple[NumericAs, ...] = get_args(NumericAs)
NULL_CURSOR_POLICIES: tuple[NullCursorPolicy, ...] = get_args(NullCursorPolicy)
SNAPSHOT_MODES: tuple[SnapshotMode, ...] = get_args(SnapshotMode)
TRUNCATE_POLICIES: tuple[TruncatePolicy, ...] = get_args(TruncatePolicy)
DELTA_DELETES: tuple[DeltaDeletes, ...] = get_args(DeltaDeletes)
PARTITION_TYPES: tuple[PartitionType, ...] = get_args(PartitionType)
PARTITION_INTERVALS: tuple[PartitionInterval, ...] = get_args(PartitionInterval)
RELATION_KINDS: tuple[RelationKind, ...] = get_args(RelationKind)
KEYLESS_POLICIES: tuple[KeylessPolicy, ...] = get_args(KeylessPolicy)


@dataclass(frozen=True)
class TableName:
    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"

    def identifier(self) -> sql.Identifier:
        """The table's name for `psycopg.sql` composition: schema and name, each quoted."""
        return sql.Identifier(self.schema, self.name)


@dataclass(frozen=True)
class SourceOptions:
    incremental_strategy: IncrementalStrategy = "full"
    incremental_column: str | None = None
    # A duration for date/time cursors, a number for numeric ones.
    lookback: timedelta | Decimal | None = None
    on_null_cursor: NullCursorPolicy = "exclude"
    # CDC (logical replication) settings.
    slot_name: str | None = None  # filled by the loader: pgflow_<pipeline> unless named
    slot_named: bool = False  # the spec named the slot: pipelines naming it share it
    publication_name: str | None = None
    snapshot: SnapshotMode = "initial"
    auto_cleanup: bool = False
    deleted_column: str | None = None
    on_truncate: TruncatePolicy = "apply"
    target_batch_size: int | None = None
    max_changes_per_run: int | None = None
    include_columns: tuple[str, ...] | None = None
    reset: bool = False
    # Delta sources: how rows deleted from the Delta table leave the target.
    deletes: DeltaDeletes = "none"


@dataclass(frozen=True)
class SourceSpec:
    type: SourceType
    connection_id: str | None
    connection_type: ConnectionType
    table: TableName | None
    path: str | None = None
    options: SourceOptions = field(default_factory=SourceOptions)
    query: str | None = None  # `source.query`: a SELECT read instead of `table`
    # The tables the query reads (config/query_cache.py); None: not known at this load.
    reads: tuple[TableName, ...] | None = None


@dataclass(frozen=True)
class StrategySpec:
    mode: SinkMode
    method: FullRefreshMethod = "truncate_insert"
    unique_key: tuple[str, ...] = ()
    merge_policy: MergePolicy = "delete_insert"
    duplicate_policy: DuplicatePolicy = "fail"
    only_new_rows: bool = False
    custom_predicate: str | None = None
    partition_column: str | None = None
    native_mode: NativeMode = "auto"
    on_schema_change: SchemaChangePolicy = "add_columns"
    fillfactor: int | None = None  # None: pgflow's choice for a target it creates
    parallelism: int = 1  # full_refresh exchange: COPY streams over one shared snapshot
    # A staged value no partition of a partitioned target accepts gets one (in the load).
    create_partitions: bool = False
    partition_interval: PartitionInterval | None = None  # None: inferred from the partitions
    on_unmatched: UnmatchedPolicy = "ignore"  # mode update: staged keys the target lacks
    update_columns: tuple[str, ...] | None = None  # upsert: the columns a conflict updates
    on_bad_rows: Literal["fail", "reject"] = "fail"  # reject: bad rows to _pgflow_rejected_*
    max_rejected: int = 0  # the rejected_rows check fails above this

    @property
    def variant(self) -> str:
        """The full_refresh method or the merge policy; "" for the modes that have none."""
        if self.mode == "full_refresh":
            return self.method
        if self.mode == "incremental_merge":
            return self.merge_policy
        return ""

    @property
    def key(self) -> str:
        """The strategy's name, mode and variant: `full_refresh/exchange`, `replace`."""
        return f"{self.mode}/{self.variant}" if self.variant else self.mode

    @property
    def keyed(self) -> bool:
        """Whether rows are matched by unique_key (merges, and appends of only new rows)."""
        return (
            self.mode == "incremental_merge"
            or self.mode in KEYED_CHANGE_MODES
            or (self.mode == "incremental_append" and self.only_new_rows)
        )


@dataclass(frozen=True)
class ScheduleSpec:
    cron: str
    timezone: str = "UTC"


DEFAULT_VACUUM_RETENTION = timedelta(days=7)  # delta's own deletedFileRetentionDuration


@dataclass(frozen=True)
class DeltaMaintenance:
    """`sink.options.maintenance` of a Delta sink: compaction, vacuum and checkpoints."""

    optimize_every: int = 0  # after a load, when this many commits since the last; 0: never
    target_file_size: int | None = None  # bytes; None: the table's delta.targetFileSize
    vacuum_retention: timedelta = DEFAULT_VACUUM_RETENTION
    allow_short_retention: bool = False  # below the table's own retention check
    checkpoint: bool = True
    schedule: ScheduleSpec | None = None  # the maintenance job's own schedule


@dataclass(frozen=True)
class SinkSpec:
    type: SinkType
    connection_id: str | None
    connection_type: ConnectionType
    table: TableName | None
    strategy: StrategySpec
    path: str | None = None
    # Delta sinks: how an unconstrained numeric is written (exact decimal, or its text)
    numeric_as: NumericAs = "decimal"
    maintenance: DeltaMaintenance | None = None  # Delta sinks only

    @property
    def target_id(self) -> str:
        """What two pipelines must never share: the physical target they write."""
        if self.type == "delta":
            return f"delta:{self.path}"
        return f"postgres:{self.connection_id}:{self.table}"


@dataclass(frozen=True)
class FreshnessSpec:
    fail_after: timedelta
    warn_after: timedelta | None = None


@dataclass(frozen=True)
class PartitionsSpec:
    """Time partitions of a partition_replace asset: one Dagster partition per day or month."""

    type: PartitionType
    start: date
    timezone: str = "UTC"
    end_offset: int = 0  # 1 also offers the current, still open day or month


# One GiB of WAL held back by a slot is worth a warning by default.
DEFAULT_RETAINED_WAL_WARN = 1024**3


# The scan checks (those that read a whole table) run daily on their own unless the spec says
# otherwise: incremental loads leave them out, and without a schedule they would never run.
DEFAULT_SCAN_SCHEDULE = ScheduleSpec("0 3 * * *", "UTC")


@dataclass(frozen=True)
class ChecksSpec:
    """Thresholds of the pipeline's asset checks, and when its scan checks run on their own."""

    # Allowed |target - source| / source rows where the load is not one consistent snapshot.
    row_count_tolerance: float = 0.01
    # A CDC slot retaining more WAL than this makes the slot check warn.
    retained_wal_warn_bytes: int = DEFAULT_RETAINED_WAL_WARN
    value_parity: ValueParitySpec = field(default_factory=ValueParitySpec)
    # The scan checks' own schedule (pgflow_scan_checks job); None: only by hand.
    scan_schedule: ScheduleSpec | None = DEFAULT_SCAN_SCHEDULE
    # Also run them in the run of every whole load (a full read, a reset, a CDC snapshot).
    scan_after_load: bool = False


# Tables of one schema-wide spec loaded at once in its step, unless it says `parallel_tables`.
DEFAULT_PARALLEL_TABLES = 2


@dataclass(frozen=True)
class Expansion:
    """How a schema-wide spec made a pipeline: one of the tables its glob matched."""

    wildcard: str  # the schema-wide spec's name: its pipelines run as one subsettable step
    kind: RelationKind
    parallel_tables: int = DEFAULT_PARALLEL_TABLES  # of that step (each holds 2 connections)
    note: str | None = None  # what the expansion decided for it, e.g. "keyless: full_refresh"
    dropped_at: str | None = None  # the source table was found dropped then (ISO 8601, UTC)


@dataclass(frozen=True)
class WildcardSpec:
    """A schema-wide spec: `source.table: {schema, name: <glob>, exclude, kinds}`."""

    name: str
    file: Path
    connection_id: str
    connection_type: ConnectionType
    schema: str
    pattern: str  # a glob on the raw identifier: *, ?, [..]
    exclude: tuple[str, ...] = ()  # globs too
    kinds: tuple[RelationKind, ...] = ("table",)
    keyless: KeylessPolicy = "fail"
    parallel_tables: int = DEFAULT_PARALLEL_TABLES
    line: int | None = None  # where the spec starts in `file`


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    file: Path
    source: SourceSpec
    sink: SinkSpec
    asset_key: tuple[str, ...]
    group: str
    description: str | None = None
    schedule: ScheduleSpec | None = None
    freshness: FreshnessSpec | None = None
    tags: dict[str, str] = field(default_factory=dict)
    owners: tuple[str, ...] = ()
    partitions: PartitionsSpec | None = None
    checks: ChecksSpec = field(default_factory=ChecksSpec)
    expansion: Expansion | None = None  # None: an explicit spec for one table
    # Where the spec starts in `file` (1-based): the pipeline's entry, or a schema-wide spec's
    # `tables:` entry of this table (else the schema-wide spec's own); None: not from a file.
    line: int | None = None


@dataclass(frozen=True)
class SensorSpec:
    """The staleness sensor of one source connection."""

    minimum_interval_seconds: int = 60
    running: bool = False  # Dagster's default: a new sensor starts stopped


@dataclass(frozen=True)
class SessionValue:
    """One `session_settings` entry: a value written in the spec, or (secret) the name of
    the environment variable that holds it, read at connect and never shown."""

    name: str
    value: str | None = None
    env: str | None = None

    @property
    def secret(self) -> bool:
        return self.env is not None


@dataclass(frozen=True)
class SessionSetup:
    """What every session opened for a connection runs first: SET of `settings`, then
    SET ROLE `set_role`."""

    set_role: str | None = None
    settings: tuple[SessionValue, ...] = ()

    def __bool__(self) -> bool:
        return self.set_role is not None or bool(self.settings)


@dataclass(frozen=True)
class ConnectionSpec:
    """A connection declared under `connections:`; pipelines may also use undeclared ones."""

    connection_id: str
    type: ConnectionType = "env"
    file: Path | None = None
    sensor: SensorSpec = field(default_factory=SensorSpec)
    session: SessionSetup = field(default_factory=SessionSetup)


@dataclass(frozen=True)
class GroupSpec:
    """Settings of an asset group, declared under `groups:`."""

    name: str
    file: Path
    schedule: ScheduleSpec | None = None


@dataclass(frozen=True)
class Project:
    pipelines: tuple[PipelineSpec, ...]
    connections: dict[str, ConnectionSpec] = field(default_factory=dict)
    groups: dict[str, GroupSpec] = field(default_factory=dict)
    # What loading decided that the user should hear: tables a wildcard skipped, explicit
    # specs that win over a wildcard. Logged as warnings when the code location loads.
    notes: tuple[str, ...] = ()
    wildcards: tuple[WildcardSpec, ...] = ()
    # The source schemas the wildcards were expanded against (cached or listed at load).
    listings: tuple[SchemaListing, ...] = ()

    def source_connection_ids(self) -> list[str]:
        ids = {p.source.connection_id for p in self.pipelines if p.source.connection_id}
        return sorted(ids)

    def sensor_settings(self, connection_id: str) -> SensorSpec:
        declared = self.connections.get(connection_id)
        return declared.sensor if declared else SensorSpec()

    def cdc_group_of(self, pipeline_name: str) -> CdcGroupSpec | None:
        """The slot group of the CDC pipeline named so; None for any other pipeline."""
        # cdc_groups builds on this module, so it is imported on use.
        from pgflow.config.cdc_groups import cdc_group_of

        return cdc_group_of(self, pipeline_name)
