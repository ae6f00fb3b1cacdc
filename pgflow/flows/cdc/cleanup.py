"""`pgflow cdc cleanup`: drop the slots and publications of CDC pipelines that were removed.

A slot left behind retains WAL on the source forever, so removed pipelines must not leave
theirs; but dropping one loses the changes it holds, so pgflow never does it on its own. This
command lists what pgflow created (publications carry their pipeline in a comment), drops what
belongs to removed pipelines whose spec had `auto_cleanup: true`, and says how to drop the
others by hand. `--dry-run` only lists.
"""

from __future__ import annotations

import argparse

import psycopg

from pgflow.config.cdc_groups import cdc_groups
from pgflow.config.loader import load_project
from pgflow.config.model import Project
from pgflow.connections.resource import with_sessions
from pgflow.sources import cdc
from pgflow.sources.publication import drop_publication, owned_publications
from pgflow.sources.table_listing import live_lister


def cleanup_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pgflow cdc cleanup", description=__doc__)
    parser.add_argument("--config", help="spec file or folder (default: $PGFLOW_CONFIG)")
    parser.add_argument("--dry-run", action="store_true", help="list only; drop nothing")
    parser.add_argument(
        "--connection",
        action="append",
        default=[],
        help="also scan this source connection id (one no remaining pipeline uses)",
    )
    args = parser.parse_args(argv)
    project = load_project(args.config, lister=live_lister())
    connections = with_sessions(project.connections)
    scanned = sorted({*project.source_connection_ids(), *args.connection})
    for connection_id in scanned:
        declared = project.connections.get(connection_id)
        kind = declared.type if declared else "env"
        with connections.connect(connection_id, kind, autocommit=True) as conn:
            for line in clean_connection(conn, project, connection_id, args.dry_run):
                print(line)
    return 0


def clean_connection(
    conn: psycopg.Connection, project: Project, connection_id: str, dry_run: bool
) -> list[str]:
    """What was (or would be) dropped on one source connection, one line each."""
    groups = [g for g in cdc_groups(project) if g.connection_id == connection_id]
    live_slots = {g.slot_name for g in groups}
    # A publication is live when a group streams it, or when its slot is still a group's
    # (e.g. one named before the publication's default became the slot's name): dropping it
    # would drop a slot in use.
    live = {g.publication_name for g in groups} | {
        name for name, owner in owned_publications(conn) if owner.slot in live_slots
    }
    lines = []
    for publication, owner in owned_publications(conn):
        if publication in live:
            continue
        where = f"{connection_id}: pipeline '{owner.pipeline}' is gone"
        if not owner.auto_cleanup:
            lines.append(
                f"{where}; kept slot {owner.slot} and publication {publication} (auto_cleanup "
                f"is off). Drop by hand: SELECT pg_drop_replication_slot('{owner.slot}'); "
                f"DROP PUBLICATION {publication};"
            )
            continue
        slot = cdc.slot_info(conn, owner.slot)
        if slot is not None and slot.active_pid is not None:
            lines.append(f"{where}; slot {owner.slot} is in use (PID {slot.active_pid}): skipped")
            continue
        verb = "would drop" if dry_run else "dropped"
        if not dry_run:
            if slot is not None:
                cdc.drop_slot(conn, owner.slot)
            drop_publication(conn, publication)
        held = f" (it held {slot.retained_bytes or 0:,} bytes of WAL)" if slot else ""
        lines.append(f"{where}; {verb} slot {owner.slot}{held} and publication {publication}")
    if not lines:
        lines.append(f"{connection_id}: nothing to clean up")
    return lines
