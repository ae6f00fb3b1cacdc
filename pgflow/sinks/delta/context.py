"""The contract between the Delta load and a strategy: what a strategy may touch and how it writes.

A strategy is `apply(ctx) -> DeltaWrite`: it streams `ctx.read` into the table at `ctx.path`
in exactly one Delta commit made with `ctx.commit` (which carries the pipeline's position), or
raises before that commit, leaving the table as it was. On the first load `ctx.table` is None
and the load creates the table itself; strategies only ever see an existing table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from arro3.core import RecordBatch, RecordBatchReader
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError

from pgflow.config.model import StrategySpec
from pgflow.connections.delta_writes import write_storage_options
from pgflow.sinks.delta.table import is_refused, is_storage_failure, storage_error
from pgflow.sinks.partition_slice import PartitionSlice
from pgflow.sources.arrow import ArrowRead
from pgflow.sources.arrow_columns import arrow_schema
from pgflow.sources.postgres import PostgresTableSource

SchemaMode = Literal["merge", "overwrite"] | None
# delta-rs buffers a whole Parquet row group in memory before writing it out, and its default
# row group is 1M rows (and as many bytes as they take): a smaller one bounds the memory of a
# load. Snappy is delta-rs' own default, which passing any WriterProperties would turn off.
DEFAULT_ROW_GROUP_ROWS = 32 * 1024


def default_writer_properties() -> WriterProperties:
    return WriterProperties(compression="SNAPPY", max_row_group_size=DEFAULT_ROW_GROUP_ROWS)


class ConcurrentDeltaLoad(RuntimeError):
    """Another commit won the race for the table (e.g. another run of the same pipeline)."""


@dataclass
class DeltaContext:
    path: str
    storage_options: dict[str, str] | None
    table: DeltaTable | None  # the table as this load read it (None: not created yet)
    read: ArrowRead  # the source read, not consumed yet
    source: PostgresTableSource  # open; runs queries in the read's snapshot
    strategy: StrategySpec
    commit: CommitProperties  # the pipeline's run and position: every commit must carry it
    pipeline: str
    partition_slice: PartitionSlice | None = None
    writer_properties: WriterProperties = field(default_factory=default_writer_properties)

    @property
    def schema_mode(self) -> SchemaMode:
        """Columns the source gained are added, unless on_schema_change is fail."""
        return None if self.strategy.on_schema_change == "fail" else "merge"

    @property
    def target(self) -> DeltaTable | str:
        return self.table if self.table is not None else self.path


@dataclass(frozen=True)
class DeltaWrite:
    """What a strategy did: rows it wrote (inserted + updated, or appended) and delta-rs' metrics."""

    rows: int
    metrics: dict[str, Any] = field(default_factory=dict)
    committed: bool = True  # False: delta-rs made no commit (a merge that changed nothing)
    # Figures of the strategy's own, reported as pgflow/<name> (update, delete: unmatched_keys).
    strategy_metadata: dict[str, int] = field(default_factory=dict)


class GuardedBatches:
    """The read's record batches, keeping any exception for the caller.

    delta-rs pulls the batches from Rust and reports a failing Python iterator as its own
    error: the original (a parse error, a lost connection, a failure injected by a test) is
    kept here and re-raised in its place.
    """

    def __init__(
        self,
        read: ArrowRead,
        path: str | None = None,
        storage_options: dict[str, str] | None = None,
    ):
        self._read = read
        self._path = path  # the table written: named in an object-store failure
        self._storage_options = storage_options
        self.error: BaseException | None = None

    def _batches(self) -> Iterator[RecordBatch]:
        try:
            yield from self._read.record_batches()
        except Exception as error:  # not GeneratorExit: delta-rs dropping the stream
            self.error = error
            raise

    def reader(self) -> RecordBatchReader:
        return RecordBatchReader.from_batches(arrow_schema(self._read.columns), self._batches())

    def reraise(self, error: BaseException) -> None:
        """Raise the read's own error if it caused `error`; an object-store failure (secrets
        left out) or a lost commit race as such."""
        if self.error is not None:
            raise self.error from error
        if self._path is not None and (is_storage_failure(error) or is_refused(error)):
            raise storage_error(self._path, error, self._storage_options) from None
        if isinstance(error, CommitFailedError):
            raise ConcurrentDeltaLoad(
                f"the Delta table changed while this load wrote it (delta-rs: {error}); this "
                "commit was refused. Another run of the same pipeline (or a writer whose "
                "changes conflict) committed first, or on an object store whose answer to "
                "this commit was lost, this run's own commit landed; either way the table "
                "holds a whole commit and its position: run again"
            ) from error


def write(
    ctx: DeltaContext,
    mode: Literal["append", "overwrite", "error"],
    *,
    predicate: str | None = None,
    partition_by: list[str] | None = None,
    schema_mode: SchemaMode = None,
    empty: bool = False,
) -> DeltaWrite:
    """Stream the read (or nothing, when `empty`) into the table in one commit."""
    batches = GuardedBatches(ctx.read, ctx.path, ctx.storage_options)
    if empty:
        # The table's own columns: a read may carry fewer of them (update, delete).
        schema = ctx.table.schema().to_arrow() if ctx.table is not None else None
        data = RecordBatchReader.from_batches(schema or arrow_schema(ctx.read.columns), [])
    else:
        data = batches.reader()
    options = _WriteOptions(
        partition_by=partition_by,
        schema_mode=schema_mode,
        # The first write creates the table: with the options that keep S3 commits safe.
        storage_options=(
            write_storage_options(ctx.path, ctx.storage_options) if ctx.table is None else None
        ),
        commit_properties=ctx.commit,
        writer_properties=ctx.writer_properties,
    )
    try:
        # delta-rs takes a predicate with mode overwrite only: the rows it replaces.
        if mode == "overwrite":
            write_deltalake(ctx.target, data, mode=mode, predicate=predicate, **options)
        else:
            write_deltalake(ctx.target, data, mode=mode, **options)
    except Exception as error:
        batches.reraise(error)
        raise
    return DeltaWrite(rows=0 if empty else ctx.read.rows)


class _WriteOptions(TypedDict):
    partition_by: list[str] | None
    schema_mode: SchemaMode
    storage_options: dict[str, str] | None
    commit_properties: CommitProperties
    writer_properties: WriterProperties
