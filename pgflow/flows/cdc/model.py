"""The values a CDC run is described by and reports: its settings and target, what one batch
did and what the run did, and the context every step of one run shares."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg

from pgflow.config.model import NumericAs, StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult
from pgflow.sinks.postgres.row_change import NO_CHANGE, RowChange
from pgflow.sources import cdc
from pgflow.sources.base import Position

if TYPE_CHECKING:  # deltalake and polars load only for runs that write Delta (memory)
    from pgflow.flows.delta_load import DeltaLoadResult

DEFAULT_BATCH_CHANGES = 100_000
# Opens a further sink connection (keyword arguments as for psycopg.connect, e.g.
# autocommit=True); the connection resource owns how, secrets included.
ConnectSink = Callable[..., AbstractContextManager[psycopg.Connection]]


class CdcApplyError(RuntimeError):
    """The stream asks for something the target cannot take; the message says what to do."""


@dataclass(frozen=True)
class CdcSettings:
    slot: str
    publication: str
    snapshot: str = "initial"  # initial | never
    batch_changes: int = DEFAULT_BATCH_CHANGES
    max_changes: int | None = None  # per run
    reset: bool = False
    auto_cleanup: bool = False  # `pgflow cdc cleanup` may drop slot and publication


@dataclass(frozen=True)
class CdcTarget:
    table: TableName
    strategy: StrategySpec
    deleted_column: str | None = None  # soft deletes: the commit time of the delete
    on_truncate: str = "apply"


@dataclass(frozen=True)
class DeltaCdcTarget:
    """A Delta table a CDC member writes: each batch ONE Delta commit (a merge) carrying the
    batch's end LSN as an app transaction (`delta_cdc_app_id`), so a retry skips what the
    table already holds. The member's `connect_sink` opens connections to the SOURCE
    database: the changes are typed there, in temporary tables of the run's own session."""

    path: str
    strategy: StrategySpec  # incremental_merge on unique_key (the source's key by default)
    storage_options: dict[str, str] | None = field(default=None, repr=False)  # secrets
    deleted_column: str | None = None  # soft deletes: the commit time of the delete
    on_truncate: str = "apply"  # apply: the table is emptied at that place in the stream
    numeric_as: NumericAs = "decimal"


AnyCdcTarget = CdcTarget | DeltaCdcTarget


@dataclass
class BatchResult:
    """One applied batch: the changes it held, and what they did to the target."""

    transactions: int = 0  # source transactions whose changes the batch held
    upserts: int = 0  # insert and update messages, before the last change per key wins
    deletes: int = 0  # delete messages
    truncates: int = 0  # TRUNCATE messages, each applied where it stood in the stream
    rows_applied: int = 0  # target rows written (inserted or updated)
    rows_deleted: int = 0  # target rows deleted (or soft-deleted)
    end_lsn: int | None = None  # stored with the batch, in its transaction
    row_change: RowChange = NO_CHANGE  # a Postgres target's row count after it (the ledger)
    statements: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return self.upserts + self.deletes + self.truncates


@dataclass
class CdcResult:
    position_before: Position | None
    position_after: Position | None = None
    snapshot: LoadResult | DeltaLoadResult | None = None
    snapshot_reason: str = ""
    batches: list[BatchResult] = field(default_factory=list)
    slot: cdc.SlotInfo | None = None
    publication_changed: bool = False
    caught_up_slot: bool = False  # the slot was behind the sink (a run died before advancing)
    position_reset: str | None = None  # why the stored LSN was discarded (position_owner)
    delta_version: int | None = None  # a Delta target: the table's version after the run

    @property
    def changes(self) -> int:
        return sum(b.changes for b in self.batches)

    @property
    def rows_applied(self) -> int:
        return sum(b.rows_applied for b in self.batches)


def position_source(table: TableName, slot: str) -> str:
    return f"cdc:{table}:{slot}"
