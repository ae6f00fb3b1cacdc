"""When a load refreshes the target's planner statistics, and how."""

from __future__ import annotations

from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres.sql_log import SqlLog

# Below this share of the target's rows, a load that changed rows in place leaves statistics to
# autovacuum: an ANALYZE of a large table costs more than a small incremental load itself.
ANALYZE_SHARE = 0.1


def worth_analyzing(rows_changed: int, estimated_rows: int | None) -> bool:
    """Whether `rows_changed` rows are a large enough share of the target to ANALYZE it now
    (always when the target's size is unknown)."""
    return estimated_rows is None or rows_changed >= ANALYZE_SHARE * estimated_rows


def analyze(log: SqlLog, table: TableName) -> None:
    log.execute(sql.SQL("ANALYZE {}").format(table.identifier()))
