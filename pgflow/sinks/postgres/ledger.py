"""Make a write's row change one the ledger can store: a change in place adds to the stored
count, so where no count is stored (the first load of an existing target by pgflow, a state
row of an older pgflow, a load that could not tell), the target is counted once, in the
load's transaction after its write: from then on the ledger carries the count in O(changes).
"""

from __future__ import annotations

import logging

from psycopg import errors, sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres import state
from pgflow.sinks.postgres.row_change import UNKNOWN, RowChange
from pgflow.sinks.postgres.sql_log import SqlLog

log = logging.getLogger(__name__)

# The bound of that one count: past it the ledger stays unknown and the runs count instead
# (after their commit, as without a ledger), so a load never fails for its count.
COUNT_TIMEOUT_SECONDS = 120.0


def settled(sql_log: SqlLog, target: TableName, change: RowChange) -> RowChange:
    """`change`, or the target's exact count when the count it would add to is unknown."""
    if change.total is not None:
        return change
    if change.delta is not None and state.read_target_rows(sql_log.conn, target) is not None:
        return change
    conn = sql_log.conn
    row = conn.execute("SELECT current_setting('statement_timeout')").fetchone()
    before = row[0] if row else "0"
    try:
        with conn.transaction():  # a savepoint: a cancelled count leaves the load intact
            conn.execute(
                sql.SQL("SET LOCAL statement_timeout = {}").format(
                    sql.Literal(f"{int(COUNT_TIMEOUT_SECONDS * 1000)}ms")
                )
            )
            counted = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(target.identifier())
            ).fetchone()
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(before)))
    except errors.QueryCanceled:
        log.warning("%s: counting it for the ledger took too long; its runs count it", target)
        return UNKNOWN
    return RowChange.exact(int(counted[0])) if counted else UNKNOWN
