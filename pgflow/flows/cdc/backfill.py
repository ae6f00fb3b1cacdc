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

from pgflow.flows.cdc.group_context import GroupRun
from pgflow.flows.cdc.group_model import MemberRun
from pgflow.flows.cdc.member_sink import member_sink
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
                start_member(run, member, start_lsn, snapshot)
            except Exception as error:  # this member's sink or table; the others go on
                run.fail(member, error)


def temporary_slot_name(slot: str) -> str:
    return f"{slot[:40]}_backfill_{os.getpid()}"


def start_member(
    run: GroupRun, member: MemberRun, start_lsn: int, snapshot: str, joining: bool = False
) -> None:
    """Load `member` as of `snapshot` (or only store the start, snapshot: never)."""
    member.result.snapshot_reason = member.snapshot_reason or ""
    member_sink(member).start(run, member, start_lsn, snapshot, joining=joining)
    member.position = start_lsn
