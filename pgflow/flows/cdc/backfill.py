"""Start members at an exact boundary in the slot's stream: each new (or reset) member's table
is read in a snapshot exported at LSN L and loaded with L as its position, in one sink
transaction; in the stream the member then skips what committed before L and applies the rest.

The snapshot comes from the group's new slot when the slot itself is made now, else from a
TEMPORARY slot: the way PostgreSQL's own table sync joins a table to a running subscription.
Creating a slot waits for the transactions running at that moment, and the table joined the
publication before, so every change the snapshot misses is in the stream.
"""

from __future__ import annotations

import os

import psycopg

from pgflow.flows.cdc.apply import create_missing_target
from pgflow.flows.cdc.group_context import GroupRun
from pgflow.flows.cdc.group_model import MemberRun
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sinks.postgres import ddl, state
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources import cdc


def backfill(run: GroupRun, members: list[MemberRun], new_slot: bool) -> None:
    """Snapshot `members` (new slot: in the group slot's own snapshot, which creates it)."""
    if not members:
        if new_slot:
            cdc.create_slot(run.control, run.settings.slot)
        return
    if new_slot:
        _start_in_snapshot(run, members, run.settings.slot, temporary=False)
        return
    try:
        _start_in_snapshot(run, members, temporary_slot_name(run.settings.slot), temporary=True)
    except cdc.ReplicationError as error:  # no slot for the joining tables: they wait
        for member in members:
            run.fail(member, error)


def _start_in_snapshot(run: GroupRun, members: list[MemberRun], slot: str, temporary: bool) -> None:
    with cdc.exported_snapshot_slot(run.connect_source, slot, temporary=temporary) as (
        start_lsn,
        snapshot,
    ):
        for member in members:
            try:
                start_member(run, member, run.sinks.applying(member.member), start_lsn, snapshot)
            except Exception as error:  # this member's sink or table; the others go on
                run.fail(member, error)


def temporary_slot_name(slot: str) -> str:
    return f"{slot[:40]}_backfill_{os.getpid()}"


def start_member(
    run: GroupRun, member: MemberRun, sink: psycopg.Connection, start_lsn: int, snapshot: str
) -> None:
    """Load `member` as of `snapshot` on `sink` (or only store the start, snapshot: never)."""
    reason = member.snapshot_reason or ""
    member.result.snapshot_reason = reason
    if member.member.snapshot == "never":
        _store_start(sink, member, start_lsn)
    else:
        member.result.snapshot = _load_snapshot(run, member, sink, start_lsn, snapshot, reason)
    member.position = start_lsn


def _load_snapshot(
    run: GroupRun,
    member: MemberRun,
    sink: psycopg.Connection,
    start_lsn: int,
    snapshot: str,
    reason: str,
) -> LoadResult:
    target = member.member.target
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
    target = member.member.target
    assert member.info is not None
    log = SqlLog(sink)
    with sink.transaction():
        ddl.lock_target(log, target.table)
        create_missing_target(log, target, member.info)
        position = cdc.lsn_position(member.identity, start_lsn)
        state.write_position(log, target.table, member.pipeline, position)
