"""A stored position belongs to the target it was applied to, and never outlives it.

A cursor, xmin checkpoint, LSN or Delta version says "the target holds everything up to here".
Once the target is dropped, or another table took its name, that is false: continuing from it
would load only the rows past it (a new table with a fraction of the source, and exit 0).
So each position is stored with the target's identity (state.IDENTITY), and a run that finds
the target missing or different discards the position and loads from scratch, with a WARNING
and the `pgflow/position_reset` metadata. A position stored by an older pgflow (no identity)
is kept and adopts the current target's identity when the run stores its new position; one
whose target is missing is discarded.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import psycopg

from pgflow.config.model import TableName
from pgflow.sinks.postgres import state
from pgflow.sources.base import IncrementalSource, Position, ReadPlan

log = logging.getLogger(__name__)

TARGET_DROPPED = "the target was dropped"
TARGET_REPLACED = "the target is another table than the one the position was applied to"


@dataclass(frozen=True)
class OwnedPosition:
    position: Position | None  # the stored position, when it still describes the target
    reset: str | None = None  # why a stored position was discarded (None: it was not)


def owned_position(conn: psycopg.Connection, target: TableName) -> OwnedPosition:
    stored = state.read_stored(conn, target)
    if stored is None:
        return OwnedPosition(None)
    if stored.current_identity is None:
        reason = TARGET_DROPPED
    elif stored.identity is None or stored.identity == stored.current_identity:
        return OwnedPosition(stored.position)
    else:
        reason = TARGET_REPLACED
    log.warning(
        "%s: %s; its stored position (%s %s) is discarded and the target is loaded from scratch",
        target,
        reason,
        stored.position.kind,
        stored.position.value,
    )
    return OwnedPosition(None, reason)


def plan_read(
    conn: psycopg.Connection, target: TableName, incremental: IncrementalSource, reset: bool
) -> tuple[ReadPlan, bool, str | None]:
    """The incremental read, whether the load must rebuild the target (a reset, or another
    table under its name), and why a stored position was discarded."""
    owned = owned_position(conn, target)
    read = incremental.plan(owned.position, reset)
    if owned.reset is None:
        return read, reset, None
    if not reset:
        read = dataclasses.replace(read, reason=f"position reset: {owned.reset}")
    return read, True, owned.reset
