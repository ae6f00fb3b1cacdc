"""The Delta sync's hold on its target: a position that outlived it, a first sync that failed.

- The stored position (Delta version, file, row) describes the target it was applied to
  (position_owner). When that target was dropped, or another table took its name, the
  position is forgotten before anything is planned, and a table under the name is emptied:
  the sync then starts over as a first sync, so the target becomes the Delta table, never the
  old position's "already synced" or "only the new files".
- A run that created the target and fails (a non-transient error, or retries run out) before
  its first batch committed drops the table again: a failed first sync leaves no empty table.
  Once a batch has committed, the rows stay with their position and the next run resumes
  there (a first sync of a large table is not thrown away). A killed process drops nothing;
  the next run finds the empty table and fills it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres import ddl, position_owner, state
from pgflow.sinks.postgres.row_change import UNKNOWN, RowChange
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.base import Position

log = logging.getLogger(__name__)

# The stored position is of another Delta table that was at the source's path (its id differs).
SOURCE_REPLACED = "the Delta table at the source path was re-created (its table id changed)"


def claim_position(
    log_: SqlLog, target: TableName, pipeline: str
) -> tuple[Position | None, str | None]:
    """The stored position, when it still describes `target`, and why it was discarded
    otherwise (then forgotten and a foreign target emptied, committed at once: a retry of
    this run or the next run finds a first sync to do)."""
    owned = position_owner.owned_position(log_.conn, target)
    if owned.reset is not None:
        empty = owned.reset == position_owner.TARGET_REPLACED
        forget_position(log_, target, pipeline, empty=empty)
    return owned.position, owned.reset


def forget_position(log_: SqlLog, target: TableName, pipeline: str, *, empty: bool) -> None:
    """Store no position for `target` (and empty it), committed at once."""
    with log_.conn.transaction():
        ddl.lock_target(log_, target)
        # An emptied target holds no rows: the ledger starts from 0. Else the count is unknown.
        state.write_position(log_, target, pipeline, None, RowChange.exact(0) if empty else UNKNOWN)
        if empty:
            log_.execute(sql.SQL("TRUNCATE {}").format(target.identifier()))


def drop_failed_first_sync(connect: Callable[[], psycopg.Connection], target: TableName) -> None:
    """Drop the target a failed run created while no batch has committed to it (no stored
    position; a run after this one would have stored one). Best effort: a sink that is down
    keeps the empty table, which the next run fills."""
    try:
        with contextlib.closing(connect()) as conn:
            conn.autocommit = True
            sql_log = SqlLog(conn)
            with conn.transaction():
                ddl.lock_target(sql_log, target)
                if state.read_position(conn, target) is not None:
                    return  # batches committed: the next run resumes them
                name = target.identifier()
                sql_log.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
    except Exception as error:  # the sync's own error is the one to raise
        log.warning("sync into %s failed; its new table could not be dropped: %s", target, error)
        return
    log.warning("sync into %s failed before its first batch; its new table was dropped", target)
