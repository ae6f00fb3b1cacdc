"""The native path of partition_replace: swap whole partitions of the target.

Per partition: `CREATE TABLE new (LIKE old INCLUDING ALL EXCLUDING INDEXES)`, a CHECK equal
to the partition constraint (so ATTACH needs no validation scan), INSERT the staged rows that
fall in it, build the old partition's indexes; then, under `SET LOCAL lock_timeout`: DETACH
old, ATTACH new `FOR VALUES <the old bound>`, DROP old, rename new (and its indexes) to the
old names, drop the helper CHECK, restore owner, grants, comment, storage options,
tablespace, local triggers and replica identity. Readers keep reading the old partitions
until the DETACH; the parent's ACCESS EXCLUSIVE lock is held from there to COMMIT only.
`partition_blocker` says why a partition cannot be swapped (what the swap cannot carry over).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgflow.config.model import TableName
from pgflow.sinks.postgres import table_properties
from pgflow.sinks.postgres.apply import ApplyContext
from pgflow.sinks.postgres.ddl import with_suffix
from pgflow.sinks.postgres.exchange import SWAP_LOCK_TIMEOUT
from pgflow.sinks.postgres.partition_bounds import Blocker, Partition
from pgflow.sinks.postgres.sql_log import SqlLog


@dataclass(frozen=True)
class SwapPlan(table_properties.TableProperties):
    """What the old partition carries that LIKE does not copy.

    Its `triggers`, like its `foreign_keys`, are the partition-local ones only: ATTACH clones
    the parent's.
    """

    tablespace: str | None
    foreign_keys: list[tuple[str, str]]


def partition_blocker(ctx: ApplyContext, parent_oid: int, partition: Partition) -> Blocker | None:
    name = partition.label()
    if partition.relkind == "p":
        return Blocker(
            f"partition {name} is itself partitioned (sub-partitioning)",
            "partition_replace swaps only leaf partitions of the target: drop the sub-partitioning",
        )
    if partition.relkind != "r":
        return Blocker(f"partition {name} is not a plain table", "make it a plain table")
    if partition.detach_pending:
        return Blocker(
            f"partition {name} is being detached concurrently",
            "finish it with ALTER TABLE ... DETACH PARTITION ... FINALIZE",
        )
    query = _BLOCKERS_SQL
    if ctx.conn.info.server_version >= 150000:  # FOR TABLES IN SCHEMA publications
        query += _SCHEMA_PUBLICATIONS_SQL
    reasons = [
        r[0]
        for r in ctx.conn.execute(query, {"oid": partition.oid, "parent": parent_oid}).fetchall()
    ]
    if reasons:
        return Blocker(
            f"partition {name} cannot be swapped without breaking what uses it: "
            f"{'; '.join(reasons)}",
            "remove the blocker",
        )
    return None


def swap_partitions(ctx: ApplyContext, partitions: list[Partition]) -> tuple[int, int]:
    """Swap each partition for a new one holding its staged rows; rows inserted, and the rows
    the old partitions held (counted once detached: O(partition), for the ledger)."""
    tag = secrets.token_hex(4)
    check = sql.Identifier(f"pgflow_bound_{tag}")
    built: list[tuple[Partition, SwapPlan, TableName]] = []
    rows = 0
    # Build every new partition first: readers keep using the old ones meanwhile.
    for p_i, partition in enumerate(partitions):
        plan = _plan_swap(ctx.conn, partition)
        new = TableName(partition.schema, with_suffix(partition.name, f"__pgflow_new_{tag}"))
        rows += _build_new(ctx, partition, plan, new, check)
        _build_indexes(ctx.log, new, plan, _index_prefix(tag, p_i))
        built.append((partition, plan, new))
    ctx.log.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(SWAP_LOCK_TIMEOUT)))
    removed = 0
    for p_i, (partition, plan, new) in enumerate(built):
        removed += _switch(ctx, partition, plan, new, check, _index_prefix(tag, p_i))
    return rows, removed


def _build_new(
    ctx: ApplyContext, partition: Partition, plan: SwapPlan, new: TableName, check: sql.Identifier
) -> int:
    log = ctx.log
    tablespace = (
        sql.SQL(" TABLESPACE {}").format(sql.Identifier(plan.tablespace))
        if plan.tablespace
        else sql.SQL("")
    )
    log.execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL EXCLUDING INDEXES){}").format(
            new.identifier(), partition.table.identifier(), tablespace
        )
    )
    # The partition constraint as a CHECK: ATTACH sees it implied and skips its scan.
    log.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})").format(
            new.identifier(), check, sql.SQL(partition.constraint)
        )
    )
    return log.execute(
        sql.SQL(
            "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} AS s WHERE {}"
        ).format(
            new.identifier(),
            ctx.column_list(),
            ctx.column_list("s"),
            ctx.staging_sql,
            sql.SQL(partition.constraint),
        )
    ).rowcount


def _switch(
    ctx: ApplyContext,
    partition: Partition,
    plan: SwapPlan,
    new: TableName,
    check: sql.Identifier,
    prefix: str,
) -> int:
    """Put `new` in the place of `partition`; the rows the old one held."""
    log = ctx.log
    log.execute(
        sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
            ctx.target_sql, partition.table.identifier()
        )
    )
    counted = log.conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(partition.table.identifier())
    ).fetchone()
    log.execute(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
            ctx.target_sql, new.identifier(), sql.SQL(partition.bound)
        )
    )
    log.execute(sql.SQL("DROP TABLE {}").format(partition.table.identifier()))  # never CASCADE
    log.execute(
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            new.identifier(), sql.Identifier(partition.name)
        )
    )
    for i_i, index in enumerate(plan.indexes):
        log.execute(
            sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(partition.schema, f"{prefix}_{i_i}"),
                sql.Identifier(index.name),
            )
        )
    log.execute(
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(partition.table.identifier(), check)
    )
    _restore_properties(log, partition.table, plan)
    return int(counted[0]) if counted else 0


def _plan_swap(conn: psycopg.Connection, partition: Partition) -> SwapPlan:
    with conn.cursor(row_factory=dict_row) as cur:
        table = cur.execute(_TABLE_SQL, {"oid": partition.oid}).fetchone()
        assert table is not None
        return SwapPlan(
            owner=table["owner"],
            comment=table["comment"],
            reloptions=list(table["reloptions"] or []),
            tablespace=table["tablespace"],
            replica_identity=table["relreplident"],
            grants=table_properties.grants_of(conn, partition.oid),
            indexes=table_properties.indexes_of(conn, partition.oid),
            foreign_keys=[
                (r["conname"], r["def"])
                for r in cur.execute(_LOCAL_FKS_SQL, {"oid": partition.oid})
            ],
            triggers=[r["def"] for r in cur.execute(_LOCAL_TRIGGERS_SQL, {"oid": partition.oid})],
        )


def _build_indexes(log: SqlLog, new: TableName, plan: SwapPlan, prefix: str) -> None:
    # ATTACH then adopts them as the partitions of the parent's indexes (and constraints)
    # instead of building its own.
    table_properties.build_indexes(
        log, new, plan.indexes, plan.foreign_keys, lambda i: f"{prefix}_{i}"
    )


def _restore_properties(log: SqlLog, table: TableName, plan: SwapPlan) -> None:
    table_properties.restore_properties(log, table, plan)
    table_properties.restore_replica_identity(log, table, plan)


def _index_prefix(tag: str, partition_index: int) -> str:
    return f"pgflow_{tag}_{partition_index}"


_BLOCKERS_SQL = """
SELECT DISTINCT CASE v.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END
       || v.oid::regclass || ' depends on it'
FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %(oid)s AND v.oid <> %(oid)s
UNION ALL SELECT 'rule ' || quote_ident(rulename) || ' is defined on it' FROM pg_rewrite
  WHERE ev_class = %(oid)s
UNION ALL SELECT 'row-level security is enabled on it or a policy exists' FROM pg_class c
  WHERE c.oid = %(oid)s AND (c.relrowsecurity OR EXISTS (SELECT FROM pg_policy p
  WHERE p.polrelid = c.oid))
UNION ALL SELECT DISTINCT 'foreign key ' || quote_ident(COALESCE(up.conname, c.conname)) || ' on '
  || c.conrelid::regclass || ' references it'
  FROM pg_constraint c LEFT JOIN pg_constraint up ON up.oid = c.conparentid
  WHERE c.contype = 'f' AND c.confrelid = %(oid)s
UNION ALL SELECT 'sequence ' || s.oid::regclass || ' is owned by its column '
  || quote_ident(a.attname)
  FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
  WHERE d.refobjid = %(oid)s AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
UNION ALL SELECT 'it or ' || %(parent)s::regclass || ' is in publication '
  || quote_ident(p.pubname)
  FROM pg_publication p WHERE p.puballtables OR EXISTS (SELECT FROM pg_publication_rel pr
  WHERE pr.prpubid = p.oid AND pr.prrelid IN (%(oid)s, %(parent)s))
"""

_SCHEMA_PUBLICATIONS_SQL = """
UNION ALL SELECT 'its schema or the schema of ' || %(parent)s::regclass || ' is in publication '
  || quote_ident(p.pubname)
  FROM pg_publication p JOIN pg_publication_namespace pn ON pn.pnpubid = p.oid
  WHERE pn.pnnspid IN (SELECT relnamespace FROM pg_class WHERE oid IN (%(oid)s, %(parent)s))
"""

_TABLE_SQL = """
SELECT pg_get_userbyid(c.relowner) AS owner, obj_description(c.oid, 'pg_class') AS comment,
       c.reloptions, c.relreplident, ts.spcname AS tablespace
FROM pg_class c LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace
WHERE c.oid = %(oid)s
"""

_LOCAL_FKS_SQL = """
SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
WHERE conrelid = %(oid)s AND contype = 'f' AND conparentid = 0 ORDER BY conname
"""

_LOCAL_TRIGGERS_SQL = """
SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger
WHERE tgrelid = %(oid)s AND NOT tgisinternal AND tgparentid = 0 ORDER BY tgname
"""
