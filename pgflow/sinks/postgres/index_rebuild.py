"""Bulk loads into an empty table: drop its indexes, COPY, then build each index once.

A COPY into a table with indexes inserts every row into every index, one at a time; a build
after the COPY sorts the rows once per index, as pg_restore does. On the bench's 2,000,000
orders (one primary key) the COPY took 6.6-8.5 s with the key in place and 4.1-4.7 s
without it, plus 0.5-0.9 s to build it.

The builds get BUILD_MEMORY of maintenance_work_mem for the rest of the load's transaction
(SET LOCAL; a server set higher keeps its own): with the default 64MB a 2,000,000-row key
sorts on disk, and Postgres plans a parallel build only with 32MB per process.

Only for a table that is empty and locked in the load's own transaction (truncated or
created there): nobody can see it without its indexes, and a failure rolls the drop back.
The indexes are re-created exactly (names, constraints, uniqueness, predicates, expressions,
storage parameters, replica identity). A table is left as it is when an index carries
something re-creating it would lose: a comment, a CLUSTER mark, a tablespace of its own,
column statistics targets, an invalid build, or an object depending on it (a view grouping
by the primary key, a foreign key). Partitioned tables keep theirs (their indexes span the
partitions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from psycopg import sql
from psycopg.rows import dict_row

from pgflow.config.model import TableName
from pgflow.sinks.postgres.ddl import quote_table
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sinks.postgres.table_properties import (
    IndexPlan,
    build_indexes,
    indexes_of,
    replica_identity_index,
)

# maintenance_work_mem for index builds after a bulk load: a 2,000,000-row bigint key's sort
# needs about 110MB in memory (a sort tuple and an index tuple per row).
BUILD_MEMORY = "256MB"


@dataclass(frozen=True)
class TakenOff:
    """The indexes dropped from a table, to build again once the rows are in."""

    indexes: list[IndexPlan]
    replica_identity: str  # pg_class.relreplident before the drop


def fill_then_index(log: SqlLog, table: TableName, fill: Callable[[TableName], int]) -> int:
    """`fill` the empty `table` (truncated or created in this transaction) without its
    indexes, then build them; returns `fill`'s rows."""
    taken = take_off(log, table)
    rows = fill(table)
    if taken is not None:
        put_back(log, table, taken)
    return rows


def take_off(log: SqlLog, table: TableName) -> TakenOff | None:
    """Drop `table`'s indexes when they can be re-created exactly; None leaves them."""
    with log.conn.cursor(row_factory=dict_row) as cur:
        facts = cur.execute(_FACTS_SQL, {"table": quote_table(log.conn, table)}).fetchone()
    if facts is None or not facts["plain"] or facts["blockers"] or not facts["indexes"]:
        return None
    taken = TakenOff(indexes_of(log.conn, facts["oid"]), facts["replica_identity"])
    for index in taken.indexes:
        if index.constraint_def:
            log.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    table.identifier(), sql.Identifier(index.name)
                )
            )
        else:
            log.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(table.schema, index.name)))
    return taken


def raise_build_memory(log: SqlLog) -> None:
    """maintenance_work_mem of at least BUILD_MEMORY until the transaction ends (SET LOCAL),
    for the index builds that follow a bulk load. It bounds one sort; nothing is held."""
    log.execute(
        sql.SQL(
            "SELECT set_config('maintenance_work_mem', {mem}, true) WHERE"
            " pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes({mem})"
        ).format(mem=sql.Literal(BUILD_MEMORY))
    )


def put_back(log: SqlLog, table: TableName, taken: TakenOff) -> None:
    """Build the dropped indexes again, under their own names, and the replica identity."""
    raise_build_memory(log)
    build_indexes(log, table, taken.indexes, [], lambda i: taken.indexes[i].name)
    if taken.replica_identity == "i":
        replica_identity_index(log, table, taken.indexes)


# What would not survive a drop and re-create, per index of the table (and the constraint
# it backs): any of these keeps the indexes in place.
_FACTS_SQL = """
SELECT c.oid, c.relkind = 'r' AS plain, c.relreplident AS replica_identity,
       EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid) AS indexes,
       EXISTS (
         SELECT FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = c.oid
           AND con.contype IN ('p', 'u', 'x')
         WHERE i.indrelid = c.oid AND (
           NOT i.indisvalid OR NOT i.indisready OR i.indisclustered OR ic.reltablespace <> 0
           OR con.conname <> ic.relname
           OR obj_description(ic.oid, 'pg_class') IS NOT NULL
           OR (con.oid IS NOT NULL AND obj_description(con.oid, 'pg_constraint') IS NOT NULL)
           OR EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = ic.oid
                      AND a.attstattarget > 0)
           OR EXISTS (SELECT FROM pg_depend d WHERE d.deptype = 'n' AND (
                (d.refclassid = 'pg_class'::regclass AND d.refobjid = ic.oid)
                OR (d.refclassid = 'pg_constraint'::regclass AND d.refobjid = con.oid)))
         )
       ) AS blockers
FROM pg_class c WHERE c.oid = %(table)s::regclass
"""
