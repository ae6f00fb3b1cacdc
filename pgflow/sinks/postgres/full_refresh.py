"""full_refresh, `method: truncate_insert` (default): the target becomes exactly the staged rows.

TRUNCATE and INSERT run in the load's transaction, so readers see the old rows until commit
and never an empty or half-filled table. TRUNCATE holds an ACCESS EXCLUSIVE lock until then;
`method: exchange` shortens that window to a rename.
"""

from __future__ import annotations

from psycopg import sql

from pgflow.sinks.postgres.apply import ApplyContext, insert_from_staging


def truncate_insert(ctx: ApplyContext) -> int:
    ctx.log.execute(sql.SQL("TRUNCATE {}").format(ctx.target_sql))
    return insert_from_staging(ctx)
