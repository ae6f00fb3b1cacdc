"""A table joining a running group is backfilled while the others keep streaming.

The joining tables' boundary is a TEMPORARY slot's start L (backfill.py says why it is exact).
L becomes their position at once, before a row is loaded: the slot is never confirmed past it,
so their changes after L stay in the slot. Their loads run in a thread, each on a sink
connection of its own that holds the target's lock (a Postgres target's, taken over from the
run's applying connection, whose applies go on meanwhile). The other tables stream in rounds until the loads
are done; then the joined tables take their place in the stream.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from pgflow.flows.cdc import backfill
from pgflow.flows.cdc.group_context import GroupRun
from pgflow.flows.cdc.group_model import MemberRun
from pgflow.flows.cdc.member_sink import member_sink
from pgflow.sources import cdc


@contextmanager
def backfilling(run: GroupRun, members: list[MemberRun]) -> Iterator[threading.Thread | None]:
    """Backfill `members` in a thread while the block streams the others; None when they
    could not start (no temporary slot: they fail, the others go on)."""
    with ExitStack() as stack:
        slot = backfill.temporary_slot_name(run.settings.slot)
        try:
            exported = cdc.exported_snapshot_slot(run.connect_source, slot, temporary=True)
            start_lsn, snapshot = stack.enter_context(exported)
        except cdc.ReplicationError as error:
            for member in members:
                run.fail(member, error)
            yield None
            return
        for member in members:
            member.position, member.backfilling = start_lsn, True  # holds the slot at L
            member_sink(member).lend(run, member, stack)
        stack.callback(_streaming_again, members)
        loads = threading.Thread(
            target=_load_all,
            args=(run, members, start_lsn, snapshot),
            name="pgflow-cdc-backfill",
            daemon=True,
        )
        loads.start()
        try:
            yield loads
        finally:
            loads.join()  # inside the block: the snapshot lives with the temporary slot


def _streaming_again(members: list[MemberRun]) -> None:
    for member in members:
        member.backfilling = False


def _load_all(run: GroupRun, members: list[MemberRun], start_lsn: int, snapshot: str) -> None:
    for member in members:
        try:
            backfill.start_member(run, member, start_lsn, snapshot, True)  # joining
        except Exception as error:  # this member's sink or table; the others go on
            run.fail(member, error)
