"""One CDC run of a group: the tables that share one slot, read once, applied per table.

Order of effects, which is what makes it exactly-once for every table:
1. a batch is applied to each table in ONE sink transaction that also stores the batch's end
   LSN as that table's position;
2. only then is the slot confirmed, and only up to the lowest position of the group's tables
   (those this run did not select included: their changes stay in the slot until they run).
A crash between 1 and 2 leaves the slot behind: the next run starts at the lowest position
and each table skips what it already holds. A crash before 1 loses nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import ExitStack
from dataclasses import replace

from pgflow.flows.cdc.backfill import backfill
from pgflow.flows.cdc.group_context import GroupRun
from pgflow.flows.cdc.group_model import (
    Failures,
    GroupMember,
    GroupSettings,
    MemberRun,
    low_position,
)
from pgflow.flows.cdc.group_publication import ensure_publication
from pgflow.flows.cdc.group_setup import check_slot, needs_snapshot, read_members
from pgflow.flows.cdc.group_stream import drop_leftover_staging, stream_group
from pgflow.flows.cdc.live_add import backfilling
from pgflow.flows.cdc.member_sink import member_sink
from pgflow.flows.cdc.model import CdcResult
from pgflow.flows.cdc.sink_connections import SinkConnections
from pgflow.sources import cdc, publication

GroupOutcome = dict[str, CdcResult | BaseException]
# While a joining table loads, the others stream in rounds at most this far apart.
ROUND_PAUSE_SECONDS = 1.0  # per pipeline: its result or its error


def replicate_group(
    connect_source: cdc.ConnectSource,
    settings: GroupSettings,
    members: list[GroupMember],
    selected: Collection[str],
) -> GroupOutcome:
    """Bring the `selected` members' targets up to date through the group's slot.

    Raises for what fails the whole group (the server, the slot); a member's own failure is its
    entry in the outcome. Each selected target's lock is held for the whole run."""
    with ExitStack() as stack:
        control = stack.enter_context(connect_source(autocommit=True))
        # One run per slot at a time, whichever tables it selected: a run confirms the slot
        # from the positions it read at its start, so another run must not move them meanwhile
        # (a table joining the group in a parallel run would lose its changes).
        control.execute(
            "SELECT pg_advisory_lock(hashtextextended(%s, 0))", (f"pgflow:slot:{settings.slot}",)
        )
        runs = [MemberRun(m, settings.slot, m.pipeline in selected) for m in members]
        run = GroupRun(connect_source, control, settings, runs, SinkConnections(stack), Failures())
        cdc.check_server(control)
        _hold_targets(run, stack)
        _run(run)
        return _outcome(run)


def _hold_targets(run: GroupRun, stack: ExitStack) -> None:
    for member in run.selected:
        try:
            member_sink(member).hold(run, member, stack)
        except Exception as error:
            run.fail(member, error)


def _run(run: GroupRun) -> None:
    existing = cdc.slot_info(run.control, run.settings.slot)
    run.slot_confirmed = existing.confirmed_flush if existing else None
    if existing is not None:
        run.settings = _with_former_publication(run)
    read_members(run)
    if not run.healthy():
        return  # every selected member failed already: leave slot and publication alone
    slot = check_slot(run)
    starting = needs_snapshot(run)
    for member in starting:
        member.position = None  # starts over at its snapshot: its old position holds nothing
    changed = ensure_publication(run)
    for member in run.selected:
        member.result.publication_changed = changed
    confirmed = slot.confirmed_flush if slot else None
    joining = needs_snapshot(run)
    if slot is None or not joining or run.settings.max_changes is not None:
        backfill(run, joining, new_slot=slot is None)  # a new slot: nobody streams before
        _stream(run, confirmed)
        return
    with backfilling(run, joining) as loads:
        while True:  # the others, round after round, until the joining tables are loaded
            _stream(run, confirmed)
            if loads is None or not loads.is_alive():
                break
            loads.join(timeout=ROUND_PAUSE_SECONDS)
    _stream(run, confirmed)  # everyone, the joined tables from their start


def _stream(run: GroupRun, confirmed: int | None) -> None:
    """One round: the streaming members from the group's lowest position to the WAL's end."""
    _prepare_targets(run)
    drop_leftover_staging(run)
    start = low_position(run.members)
    if start is None or not any(m.streaming for m in run.members):
        return
    if confirmed is not None and start > confirmed:
        for member in run.selected:
            member.result.caught_up_slot = True  # a run died between its commit and confirm
    stream_group(run, start)


def _with_former_publication(run: GroupRun) -> GroupSettings:
    """A slot named before publications defaulted to the slot's name streams through
    `pgflow_<pipeline>`; a publication made now would be missing from the WAL before it, which
    the slot must still decode. Keep streaming through the one the slot already has."""
    settings = run.settings
    if publication.published_tables(run.control, settings.publication) is not None:
        return settings
    for name, owner in publication.owned_publications(run.control):
        if owner.slot == settings.slot:
            return replace(settings, publication=name)
    return settings


def _prepare_targets(run: GroupRun) -> None:
    """Create or reconcile each streaming target first, so that staging tables made on the
    other connection can take its column types."""
    for member in run.members:
        if not member.streaming:
            continue
        try:
            member_sink(member).prepare(run, member)
        except Exception as error:
            run.fail(member, error)


def _outcome(run: GroupRun) -> GroupOutcome:
    slot = cdc.slot_info(run.control, run.settings.slot)
    outcome: GroupOutcome = {}
    for member in run.selected:
        if member.error is not None:
            outcome[member.pipeline] = member.error
            continue
        member.result.slot = slot
        after = member_sink(member).position_after(run, member)
        member.result.position_after, member.result.delta_version = after
        outcome[member.pipeline] = member.result
    return outcome
