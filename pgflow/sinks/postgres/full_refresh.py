"""full_refresh, `method: truncate_insert` (default): the target becomes exactly the source.

TRUNCATE and the COPY run in the load's transaction, so readers see the old rows until commit
and never an empty or half-filled table. The source is COPYed straight into the truncated
target: nothing outside the transaction can see it, so a staging table in front of it would
only copy every row twice. Its indexes are dropped before the COPY and built after it
(`index_rebuild`). TRUNCATE holds an ACCESS EXCLUSIVE lock until commit, so readers of the
target wait for the whole load; `method: exchange` shortens that wait to a rename.
"""

from __future__ import annotations

from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres import index_rebuild
from pgflow.sinks.postgres.apply import ApplyContext, insert_from_staging
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sinks.postgres.strategy import DirectStrategy, Fill


def truncate_copy(log: SqlLog, target: TableName, fill: Fill) -> int:
    """full_refresh truncate_insert: empty the target, then `fill` it from the source (its
    indexes are built once the rows are in)."""
    log.execute(sql.SQL("TRUNCATE {}").format(target.identifier()))
    return index_rebuild.fill_then_index(log, target, fill)


class TruncateInsert(DirectStrategy):
    key = "full_refresh/truncate_insert"

    def fill_target(self, log: SqlLog, target: TableName, fill: Fill) -> int:
        return truncate_copy(log, target, fill)


def truncate_insert(ctx: ApplyContext) -> int:
    """A reset of a staged strategy: the target becomes exactly the staged rows."""
    ctx.log.execute(sql.SQL("TRUNCATE {}").format(ctx.target_sql))
    return insert_from_staging(ctx)
