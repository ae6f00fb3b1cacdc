"""A group member writing a Postgres table: each step on the run's sink connections
(sink_connections.py), the position stored in the target's state table."""

from __future__ import annotations

from contextlib import ExitStack, suppress

import psycopg

from pgflow.flows.cdc.apply import apply_staged, create_missing_target, prepare_target
from pgflow.flows.cdc.group_context import GroupRun
from pgflow.flows.cdc.group_model import MemberRun
from pgflow.flows.cdc.member_sink import Staged, StoredPosition
from pgflow.flows.cdc.model import BatchResult, CdcTarget
from pgflow.flows.cdc.sink_connections import BatchConnections
from pgflow.flows.cdc.stage import StagedBatch, Stager, drop_staged
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sinks.postgres import ddl, position_owner, staging, state
from pgflow.sinks.postgres.row_change import NO_CHANGE
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources import cdc
from pgflow.sources.base import Position
from pgflow.sources.changes import RelationSeen


def _target(member: MemberRun) -> CdcTarget:
    target = member.member.target
    assert isinstance(target, CdcTarget)
    return target


def _staged(staged: Staged) -> StagedBatch:
    assert isinstance(staged, StagedBatch)
    return staged


class PostgresMemberSink:
    def hold(self, run: GroupRun, member: MemberRun, stack: ExitStack) -> None:
        conn = run.sinks.applying(member.member)
        stack.enter_context(ddl.holding_target(conn, _target(member).table))

    def read_position(self, run: GroupRun, member: MemberRun) -> StoredPosition:
        sink = run.sinks.applying(member.member)
        owned = position_owner.owned_position(sink, _target(member).table)
        return StoredPosition(owned.position, owned.reset)

    def prepare(self, run: GroupRun, member: MemberRun) -> None:
        assert member.info is not None
        prepare_target(run.sinks.applying(member.member), _target(member), member.info)

    def drop_leftovers(self, run: GroupRun, member: MemberRun) -> None:
        log = run.sinks.staging(member.member)
        staging.drop_orphaned_staging(log, _target(member).table)

    def stager(
        self,
        run: GroupRun,
        member: MemberRun,
        relation: RelationSeen | None,
        connections: BatchConnections,
    ) -> Stager:
        assert member.info is not None
        log = run.sinks.staging(member.member)
        return Stager(log, _target(member), member.info, relation)

    def apply(self, run: GroupRun, member: MemberRun, staged: Staged) -> BatchResult:
        assert member.info is not None
        conn = run.sinks.applying(member.member)
        return apply_staged(
            conn, _target(member), member.info, _staged(staged), member.identity, member.pipeline
        )

    def discard(self, run: GroupRun, member: MemberRun, staged: Staged) -> None:
        # Best effort, whatever stops it: the run's own error is the one to report, and the
        # next run drops tagged leftovers.
        with suppress(Exception), member.member.connect_sink(autocommit=True) as conn:
            drop_staged(SqlLog(conn), _staged(staged))

    def store_reached(self, run: GroupRun, member: MemberRun, lsn: int) -> bool:
        sink = run.sinks.applying(member.member)
        table = _target(member).table
        log = SqlLog(sink)
        with sink.transaction():
            ddl.lock_target(log, table)
            position = cdc.lsn_position(member.identity, lsn)
            state.write_position(log, table, member.pipeline, position, NO_CHANGE)
        return True

    def start(
        self, run: GroupRun, member: MemberRun, start_lsn: int, snapshot: str, *, joining: bool
    ) -> None:
        if not joining:
            _start(run, member, run.sinks.applying(member.member), start_lsn, snapshot)
            return
        # A connection of its own, holding the target the run's connection lent it.
        with (
            member.member.connect_sink(autocommit=True) as sink,
            ddl.holding_target(sink, _target(member).table),
        ):
            _start(run, member, sink, start_lsn, snapshot)

    def lend(self, run: GroupRun, member: MemberRun, stack: ExitStack) -> None:
        conn = run.sinks.applying(member.member)
        stack.enter_context(ddl.lending_target(conn, _target(member).table))

    def position_after(
        self, run: GroupRun, member: MemberRun
    ) -> tuple[Position | None, int | None]:
        sink = run.sinks.applying(member.member)
        return state.read_position(sink, _target(member).table), None

    def describe(self, member: MemberRun) -> str:
        return str(_target(member).table)


POSTGRES = PostgresMemberSink()


def _start(
    run: GroupRun, member: MemberRun, sink: psycopg.Connection, start_lsn: int, snapshot: str
) -> None:
    if member.member.snapshot == "never":
        _store_start(sink, member, start_lsn)
    else:
        reason = member.snapshot_reason or ""
        member.result.snapshot = _load_snapshot(run, member, sink, start_lsn, snapshot, reason)


def _load_snapshot(
    run: GroupRun,
    member: MemberRun,
    sink: psycopg.Connection,
    start_lsn: int,
    snapshot: str,
    reason: str,
) -> LoadResult:
    target = _target(member)
    extra = (target.deleted_column,) if target.deleted_column else ()
    with run.connect_source() as reader:
        source = cdc.SnapshotSource(
            reader,
            member.member.table,
            member.identity,
            snapshot,
            start_lsn,
            f"initial snapshot ({reason})",
            extra_null_columns=extra,
            include_columns=member.member.include_columns,
        )
        return load_table(
            sink,
            source,
            target.table,
            target.strategy,
            pipeline=member.pipeline,
            reset=True,
        )


def _store_start(sink: psycopg.Connection, member: MemberRun, start_lsn: int) -> None:
    """snapshot: never: the target as it is (created if missing), streaming from the slot."""
    target = _target(member)
    assert member.info is not None
    log = SqlLog(sink)
    with sink.transaction():
        ddl.lock_target(log, target.table)
        create_missing_target(log, target, member.info)
        position = cdc.lsn_position(member.identity, start_lsn)
        state.write_position(log, target.table, member.pipeline, position)
