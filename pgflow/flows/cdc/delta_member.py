"""A group member writing a Delta table (DeltaCdcTarget): its position is the table's app
transaction (sinks/delta/cdc_state.py), its batches are staged in temporary tables of a
source session of the batch's own (delta_stage.py) and applied as one merge commit each
(delta_apply.py); its snapshot is a Delta load whose one commit carries the start LSN."""

from __future__ import annotations

from contextlib import ExitStack

from arro3.core import RecordBatchReader
from deltalake import DeltaTable, write_deltalake
from psycopg import sql

from pgflow.connections.delta_writes import write_storage_options
from pgflow.flows.cdc.delta_apply import apply_delta_batch
from pgflow.flows.cdc.delta_schema import check_table_shape, snapshot_columns
from pgflow.flows.cdc.delta_stage import DeltaStaged, DeltaStager
from pgflow.flows.cdc.group_context import GroupRun
from pgflow.flows.cdc.group_model import MemberRun
from pgflow.flows.cdc.member_sink import Staged, StoredPosition
from pgflow.flows.cdc.model import BatchResult, DeltaCdcTarget
from pgflow.flows.cdc.sink_connections import BatchConnections
from pgflow.flows.delta_load import DeltaLoadResult, load_delta
from pgflow.sinks.delta.cdc_state import (
    cdc_commit_properties,
    cdc_transaction,
    commit_position,
    stored_cdc_position,
)
from pgflow.sinks.delta.table import open_table
from pgflow.sources import cdc
from pgflow.sources.arrow_columns import arrow_schema
from pgflow.sources.base import Position
from pgflow.sources.changes import RelationSeen

# An idle member's position moves by an empty commit once the slot would otherwise retain
# this much WAL for it (one WAL segment): often enough not to pin the WAL, rarely enough
# that an idle table does not get a new version every run.
IDLE_COMMIT_BYTES = 16 * 1024 * 1024


def _target(member: MemberRun) -> DeltaCdcTarget:
    target = member.member.target
    assert isinstance(target, DeltaCdcTarget)
    return target


def _table(member: MemberRun) -> DeltaTable | None:
    target = _target(member)
    return open_table(target.path, target.storage_options)


class DeltaMemberSink:
    def hold(self, run: GroupRun, member: MemberRun, stack: ExitStack) -> None:
        # One run per slot holds the slot's lock; two writers of one table cannot both commit
        # (their commits carry the same app id, which delta-rs refuses to commit twice).
        return None

    def read_position(self, run: GroupRun, member: MemberRun) -> StoredPosition:
        table = _table(member)
        stored = stored_cdc_position(table, member.pipeline, member.identity)
        if table is None or stored is not None:
            return StoredPosition(stored)
        reason = (
            f"the Delta table at {_target(member).path} holds no position of "
            f"{member.pipeline} for {member.identity} (written by another slot, another "
            "pipeline or another tool)"
        )
        return StoredPosition(None, reason)

    def prepare(self, run: GroupRun, member: MemberRun) -> None:
        table = _table(member)
        assert member.info is not None
        if table is not None:
            check_table_shape(run.control, table, _target(member), member.info)

    def drop_leftovers(self, run: GroupRun, member: MemberRun) -> None:
        return None  # temporary tables die with the session that staged them

    def stager(
        self,
        run: GroupRun,
        member: MemberRun,
        relation: RelationSeen | None,
        connections: BatchConnections,
    ) -> DeltaStager:
        assert member.info is not None
        log = connections.staging(member.member)
        connections.tables += 1
        return DeltaStager(log, _target(member), member.info, relation, connections.tables)

    def apply(self, run: GroupRun, member: MemberRun, staged: Staged) -> BatchResult:
        assert isinstance(staged, DeltaStaged)
        return apply_delta_batch(_target(member), staged, member.pipeline, member.identity)

    def discard(self, run: GroupRun, member: MemberRun, staged: Staged) -> None:
        return None  # the batch's session, closed after it, takes its tables along

    def store_reached(self, run: GroupRun, member: MemberRun, lsn: int) -> bool:
        if member.position is not None and lsn - member.position < IDLE_COMMIT_BYTES:
            return False  # a commit (a table version) per run would be noise for so little WAL
        table = _table(member)
        if table is None:
            raise cdc.ReplicationError(
                f"the Delta table at {_target(member).path} is gone; re-snapshot with reset: true"
            )
        commit_position(table, member.pipeline, member.identity, lsn)
        return True

    def start(
        self, run: GroupRun, member: MemberRun, start_lsn: int, snapshot: str, *, joining: bool
    ) -> None:
        if member.member.snapshot == "never":
            _store_start(member, start_lsn)
        else:
            member.result.snapshot = _load_snapshot(run, member, start_lsn, snapshot)

    def lend(self, run: GroupRun, member: MemberRun, stack: ExitStack) -> None:
        return None  # nothing is held (hold says why)

    def position_after(
        self, run: GroupRun, member: MemberRun
    ) -> tuple[Position | None, int | None]:
        table = _table(member)
        position = stored_cdc_position(table, member.pipeline, member.identity)
        return position, None if table is None else table.version()

    def describe(self, member: MemberRun) -> str:
        return f"the Delta table at {_target(member).path}"


DELTA = DeltaMemberSink()


class _SnapshotSource(cdc.SnapshotSource):
    """The snapshot read as a Delta load selects it: the soft-delete column the source lacks
    as a bare NULL, which the Arrow read wraps in its own expressions (and names itself)."""

    def column_expression(self, name: str) -> sql.Composable:
        if name in self._extra:
            return sql.SQL("NULL::timestamptz")
        return super().column_expression(name)


def _load_snapshot(
    run: GroupRun, member: MemberRun, start_lsn: int, snapshot: str
) -> DeltaLoadResult:
    """The table as of `snapshot`, rewritten whole in one commit that also stores start_lsn."""
    target = _target(member)
    extra = (target.deleted_column,) if target.deleted_column else ()
    reason = member.snapshot_reason or ""
    with run.connect_source() as reader:
        source = _SnapshotSource(
            reader,
            member.member.table,
            member.identity,
            snapshot,
            start_lsn,
            f"initial snapshot ({reason})",
            extra_null_columns=extra,
            include_columns=member.member.include_columns,
        )
        return load_delta(
            source,
            target.path,
            target.strategy,
            storage_options=target.storage_options,
            pipeline=member.pipeline,
            reset=True,
            numeric_as=target.numeric_as,
            transactions=[cdc_transaction(member.pipeline, member.identity, start_lsn)],
        )


def _store_start(member: MemberRun, start_lsn: int) -> None:
    """snapshot: never: the table as it is (created empty in the source's shape if missing)
    with the start position."""
    target = _target(member)
    table = _table(member)
    if table is not None:
        commit_position(table, member.pipeline, member.identity, start_lsn)
        return
    assert member.info is not None
    schema = arrow_schema(snapshot_columns(member.info, target))
    write_deltalake(
        target.path,
        RecordBatchReader.from_batches(schema, []),
        mode="error",
        storage_options=write_storage_options(target.path, target.storage_options),
        commit_properties=cdc_commit_properties(member.pipeline, member.identity, start_lsn),
    )
