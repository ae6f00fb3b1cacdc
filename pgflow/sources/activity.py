"""How much a source table has been written, from the cumulative statistics (no table scan).

`pg_stat_user_tables` counts rows inserted, updated and deleted per table since the
statistics were last reset. A load records the count it started from; a later, higher count
means the table was written since (committed or not: aborted writes count too, which only
costs an extra run). Partitioned tables keep no counts of their own: their leaf partitions'
counts are summed.
"""

from __future__ import annotations

import psycopg

from pgflow.config.model import TableName

# pg_partition_tree() of a plain table is empty, so the table itself is matched too.
_MODIFICATIONS = """
SELECT sum(s.n_tup_ins + s.n_tup_upd + s.n_tup_del)::bigint
FROM pg_stat_user_tables AS s
WHERE s.relid = to_regclass(%(table)s)
   OR s.relid IN (SELECT relid FROM pg_partition_tree(to_regclass(%(table)s)) WHERE isleaf)
"""


def table_modifications(conn: psycopg.Connection, table: TableName) -> int | None:
    """Rows inserted + updated + deleted in `table` (all partitions); None if it is unknown.

    Statistics reach the view within about a second of a commit (they are flushed by each
    backend when idle); `pg_stat_reset` sets them back, which a caller sees as a smaller count.
    """
    qualified = table.identifier().as_string(conn)
    row = conn.execute(_MODIFICATIONS, {"table": qualified}).fetchone()
    return None if row is None or row[0] is None else int(row[0])
