"""Health of a CDC pipeline's replication slot, read from `pg_replication_slots`.

A slot keeps every WAL segment from its `restart_lsn` on, so a slot nobody reads fills the
source's disk; and a slot that lost WAL it needed (`wal_status = 'lost'`, or invalidated for
another reason on newer servers) can never stream again. This module only reads: one
catalog query, safe in a READ ONLY transaction.

Columns differ by server version (PG16 adds `conflicting`, PG17 `invalidation_reason`), so
the row is read as JSON and whatever the server has is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from pgflow.sources.cdc import PLUGIN

SlotStatus = Literal["missing", "foreign", "invalidated", "unreserved", "retaining", "healthy"]

# On a standby the current position is the replay position: pg_current_wal_lsn() fails there.
_SLOT_SQL = """
SELECT to_jsonb(s) AS slot,
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END
        - s.restart_lsn)::bigint AS retained_bytes,
       current_database() AS current_database
FROM pg_replication_slots s WHERE s.slot_name = %s
"""


@dataclass(frozen=True)
class SlotState:
    """What the server says about one slot; `exists` is False when there is no such slot."""

    name: str
    exists: bool
    database: str | None = None
    plugin: str | None = None
    active: bool = False
    active_pid: int | None = None
    wal_status: str | None = None  # reserved, extended, unreserved, lost
    restart_lsn: str | None = None
    confirmed_flush_lsn: str | None = None
    retained_bytes: int | None = None  # WAL the slot keeps from being recycled
    invalidation: str | None = None  # why the slot can no longer stream, when it cannot
    current_database: str | None = None  # the database this probe connected to


def read_slot(conn: psycopg.Connection, name: str) -> SlotState:
    """The state of slot `name`, as seen from `conn`'s database."""
    row = conn.execute(_SLOT_SQL, (name,)).fetchone()
    if row is None:
        return SlotState(name=name, exists=False, current_database=conn.info.dbname)
    slot, retained, database = row
    return SlotState(
        name=name,
        exists=True,
        database=slot.get("database"),
        plugin=slot.get("plugin"),
        active=bool(slot.get("active")),
        active_pid=slot.get("active_pid"),
        wal_status=slot.get("wal_status"),
        restart_lsn=slot.get("restart_lsn"),
        confirmed_flush_lsn=slot.get("confirmed_flush_lsn"),
        retained_bytes=retained,
        invalidation=_invalidation(slot),
        current_database=database,
    )


def _invalidation(slot: dict[str, Any]) -> str | None:
    """Why the slot is unusable: PG17 says it, PG16 flags conflicts, PG13+ reports lost WAL."""
    if slot.get("invalidation_reason"):
        return str(slot["invalidation_reason"])
    if slot.get("conflicting"):
        return "conflict with recovery (rows it needed were removed)"
    if slot.get("wal_status") == "lost":
        return "required WAL removed (wal_status lost)"
    return None


def slot_status(state: SlotState, warn_bytes: int) -> SlotStatus:
    """One word for the slot, worst first: what a check reports and a sensor acts on."""
    if not state.exists:
        return "missing"
    if state.database != state.current_database or state.plugin != PLUGIN:
        return "foreign"  # a same-named slot of another database or plugin: not ours
    if state.invalidation is not None:
        return "invalidated"
    if state.wal_status == "unreserved":
        return "unreserved"  # past max_slot_wal_keep_size: lost at the next checkpoint
    if (state.retained_bytes or 0) > warn_bytes:
        return "retaining"
    return "healthy"
