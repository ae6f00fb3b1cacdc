"""The group's publication: it publishes the tables of the group's members, each with its
`include_columns` list, and no table a removed member left in it.

A table joins before its backfill's snapshot is taken, so every change committed after that
snapshot is in the stream. A column list that changed under a table with a position would
leave the new columns empty in its target: that member must start over (reset) first.
"""

from __future__ import annotations

import psycopg

from pgflow.config.model import TableName
from pgflow.flows.cdc.group_context import GroupRun
from pgflow.flows.cdc.group_model import MemberRun
from pgflow.sources import cdc, publication
from pgflow.sources.publication import Columns


def ensure_publication(run: GroupRun) -> bool:
    """Create or update the publication; True when it changed."""
    settings, control = run.settings, run.control
    owner = publication.Ownership(settings.name, settings.slot, settings.auto_cleanup)
    wanted = _wanted(run)
    published = publication.published_tables(control, settings.publication)
    if published is None:
        if not wanted:
            return False
        publication.create_publication(control, settings.publication, wanted, owner)
        return True
    if _publishes_all_tables(run):
        return False  # FOR ALL TABLES (made by hand): nothing to add or drop
    ours = run.owns_publication()
    changed = _add_or_update(run, wanted, published)
    if ours:
        changed |= _drop_removed(run, published)
    publication.set_owner(control, settings.publication, owner)
    return changed


def _wanted(run: GroupRun) -> dict[TableName, Columns]:
    """The tables this run keeps published: healthy selected members, and members that hold
    a position (their changes are kept until they run)."""
    healthy = run.healthy()
    keep = [m for m in run.members if m.position is not None or m in healthy]
    return {m.member.table: _columns(m) for m in keep}


def _columns(member: MemberRun) -> Columns:
    include = member.member.include_columns
    if include is None or member.info is None:
        return include
    return tuple(c.name for c in member.info.columns)  # the table's order


def _add_or_update(
    run: GroupRun, wanted: dict[TableName, Columns], published: dict[TableName, Columns]
) -> bool:
    changed = False
    by_table = {m.member.table: m for m in run.members}
    for table, columns in wanted.items():
        member = by_table[table]
        if table not in published:
            if member.selected:  # a member joins on its own run
                changed |= _add(run, member, columns)
        elif _differ(published[table], columns) and member.selected:
            changed |= _change_columns(run, member, columns, published[table])
    return changed


def _add(run: GroupRun, member: MemberRun, columns: Columns) -> bool:
    try:
        publication.add_table(run.control, run.settings.publication, member.member.table, columns)
    except psycopg.Error as error:  # e.g. a generated column in the list: this table only
        run.fail(member, cdc.ReplicationError(f"could not publish {member.member.table}: {error}"))
        return False
    return True


def _change_columns(run: GroupRun, member: MemberRun, columns: Columns, before: Columns) -> bool:
    if not member.snapshot_reason:
        run.fail(
            member,
            cdc.ReplicationError(
                f"source.options.include_columns of pipeline '{member.pipeline}' changed (the "
                f"publication {run.settings.publication} sends {_names(before)}, the spec asks "
                f"for {_names(columns)}); the target's rows lack the new columns' values. "
                "Re-snapshot it: materialize with run config reset: true"
            ),
        )
        return False
    publication.set_columns(run.control, run.settings.publication, member.member.table, columns)
    return True


def _drop_removed(run: GroupRun, published: dict[TableName, Columns]) -> bool:
    """Tables no member of the group names any more: their changes are nobody's."""
    members = {m.member.table for m in run.members}
    removed = [t for t in published if t not in members]
    for table in removed:
        publication.drop_table(run.control, run.settings.publication, table)
    return bool(removed)


def _differ(published: Columns, wanted: Columns) -> bool:
    if published is None or wanted is None:
        return published != wanted
    return set(published) != set(wanted)


def _names(columns: Columns) -> str:
    return "every column" if columns is None else ", ".join(columns)


def _publishes_all_tables(run: GroupRun) -> bool:
    row = run.control.execute(
        "SELECT puballtables FROM pg_publication WHERE pubname = %s", (run.settings.publication,)
    ).fetchone()
    return bool(row and row[0])
