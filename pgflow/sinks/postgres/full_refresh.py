"""full_refresh, `method: truncate_insert` (default): the target becomes exactly the staged rows.

TRUNCATE and INSERT run in the load's transaction, so readers see the old rows until commit
and never an empty or half-filled table. TRUNCATE holds an ACCESS EXCLUSIVE lock until then;
`method: exchange` shortens that window to a rename.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres.sql_log import SqlLog


def insert_from_staging(
    log: SqlLog, target: TableName, staging: TableName, columns: Sequence[str]
) -> int:
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    cur = log.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
            sql.Identifier(target.schema, target.name),
            names,
            names,
            sql.Identifier(staging.schema, staging.name),
        )
    )
    return cur.rowcount


def truncate_insert(
    log: SqlLog, target: TableName, staging: TableName, columns: Sequence[str]
) -> int:
    log.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(target.schema, target.name)))
    return insert_from_staging(log, target, staging, columns)
