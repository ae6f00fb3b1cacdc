"""The set-up of a group run: each member's catalog and stored position, the slot checked
against them, and the publication made to hold exactly the group's tables.

A problem of one table (no replica identity, a position the slot has moved past, a sink that
cannot be reached) fails that member only; a problem of the slot or the server fails the run.
"""

from __future__ import annotations

import psycopg

from pgflow.flows.cdc.group_context import GroupRun
from pgflow.flows.cdc.group_model import MemberRun
from pgflow.flows.cdc.member_sink import member_sink
from pgflow.flows.cdc.model import CdcResult
from pgflow.sources import cdc
from pgflow.sources.base import Position, SourceConfigError
from pgflow.sources.catalog import TableInfo, describe_table, restrict_columns
from pgflow.sources.pgoutput import lsn_to_int, lsn_to_text


def read_members(run: GroupRun) -> None:
    """Every member's stored position, then the catalog and checks of the selected ones. A
    member that fails keeps its position, which holds the slot for it."""
    for member in run.members:
        if run.failures.failed(member):
            member.position = run.slot_confirmed  # its sink is out of reach: hold the slot
            continue
        try:
            _read_position(run, member)
        except (psycopg.Error, cdc.ReplicationError) as error:
            member.position = run.slot_confirmed  # unknown: hold the slot where it is
            if member.selected:
                run.fail(member, error)
            continue
        if member.selected:
            try:
                member.info = _checked_catalog(run.control, member)
            except (cdc.ReplicationError, psycopg.Error, SourceConfigError) as error:
                run.fail(member, error)


def _checked_catalog(control: psycopg.Connection, member: MemberRun) -> TableInfo:
    table = member.member.table
    info = restrict_columns(describe_table(control, table), member.member.include_columns, table)
    cdc.check_replica_identity(control, table)
    _check_key_is_identity(control, member)
    return info


def _check_key_is_identity(conn: psycopg.Connection, member: MemberRun) -> None:
    table, target = member.member.table, member.member.target
    identity = cdc.identity_columns(conn, table)
    key = target.strategy.unique_key
    if identity is not None and not set(key) <= set(identity):
        raise cdc.ReplicationError(
            f"sink.strategy.unique_key ({', '.join(key)}) must be among the replica identity "
            f"columns of {table} ({', '.join(identity)}): deletes carry only those. Use them as "
            f"the key, or ALTER TABLE {table} REPLICA IDENTITY FULL"
        )


def _read_position(run: GroupRun, member: MemberRun) -> None:
    owned = member_sink(member).read_position(run, member)
    stored = owned.position
    member.result = CdcResult(position_before=stored, position_reset=owned.reset)
    ours = stored is not None and stored.source == member.identity
    member.position = lsn_to_int(stored.value) if ours and stored else None
    if member.selected:
        member.snapshot_reason = owned.reset or _snapshot_reason(stored, member)


def _snapshot_reason(stored: Position | None, member: MemberRun) -> str | None:
    if member.member.reset:
        return "reset requested"
    if stored is None:
        return "first run: no stored position"
    if stored.source != member.identity:
        return f"the stored position is for {stored.source}, this pipeline reads {member.identity}"
    return None


def needs_snapshot(run: GroupRun) -> list[MemberRun]:
    return [m for m in run.healthy() if m.snapshot_reason]


def check_slot(run: GroupRun) -> cdc.SlotInfo | None:
    """The slot, usable (else the run fails), or None when a new one must be made: missing or
    lost, and a member starts over. Members whose changes the slot no longer has fail."""
    name, database = run.settings.slot, run.control.info.dbname
    slot = cdc.slot_info(run.control, name)
    starting = needs_snapshot(run)
    if starting and slot is not None:
        check_slot_is_ours(run)  # a new member reads it, or a broken one is dropped
    if slot is not None:
        cdc.check_slot_usable(slot, name, database)  # plugin, database, not in use
    if slot is None or slot.wal_status == "lost" or slot.confirmed_flush is None:
        if not starting:
            cdc.check_slot(slot, name, database)  # raises: dropped or invalidated
        _fail_positions_the_slot_lost(run, slot)
        if slot is not None:
            cdc.drop_slot(run.control, name)  # invalidated: nothing can be read from it
        return None
    run.slot_confirmed = slot.confirmed_flush
    _fail_positions_behind(run, slot.confirmed_flush)
    if starting and not any(m.position is not None and not m.snapshot_reason for m in run.members):
        # No table holds a position in it: start the slot over with them, at one snapshot.
        cdc.drop_slot(run.control, name)
        return None
    return slot


def check_slot_is_ours(run: GroupRun) -> None:
    """A slot is read for a new member, or dropped, only if pgflow made it for this group."""
    settings = run.settings
    if not run.owns_publication():
        raise cdc.ReplicationError(
            f"replication slot {settings.slot} already exists and pgflow did not create it for "
            f"'{settings.name}'; reading or starting it over could take the changes it holds "
            "from its consumer. Choose another source.options.slot_name, or drop the slot if "
            "it is unused"
        )


def _fail_positions_the_slot_lost(run: GroupRun, slot: cdc.SlotInfo | None) -> None:
    why = "does not exist (dropped outside pgflow?)" if slot is None else "was invalidated"
    for member in run.members:
        if member.position is None or member.snapshot_reason:
            continue
        member.position = None  # nothing to hold: the changes after it are gone
        if member.selected:
            run.fail(
                member,
                cdc.ReplicationError(
                    f"replication slot {run.settings.slot} {why}; the changes since "
                    f"{member.pipeline}'s last run cannot be recovered from it; {cdc.RESNAPSHOT}"
                ),
            )


def _fail_positions_behind(run: GroupRun, confirmed: int) -> None:
    for member in run.members:
        position = member.position
        if position is None or position >= confirmed or member.snapshot_reason:
            continue
        member.position = None
        if member.selected:
            run.fail(
                member,
                cdc.ReplicationError(
                    f"replication slot {run.settings.slot} is at {lsn_to_text(confirmed)}, ahead "
                    f"of the position stored with {member_sink(member).describe(member)} "
                    f"({lsn_to_text(position)}): changes in between were consumed but never "
                    f"applied here (a restored target, or another consumer?); {cdc.RESNAPSHOT}"
                ),
            )
