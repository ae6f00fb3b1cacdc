"""What a table carries that `CREATE TABLE ... (LIKE ...)` does not copy, and putting it back.

A table built to replace another (exchange's new table, partition_swap's new partition,
index_rebuild's emptied table) is given the old one's indexes (built once the rows are in),
owner, grants (table and column), comment, storage options, triggers and replica identity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from pgflow.config.model import TableName
from pgflow.sinks.postgres.sql_log import SqlLog


@dataclass(frozen=True)
class IndexPlan:
    name: str
    constraint_def: str | None  # ADD CONSTRAINT body for PK/UNIQUE/EXCLUDE-backed indexes
    index_tail: str | None  # "USING btree (...) WHERE ..." for plain indexes
    is_unique: bool
    is_replica_identity: bool


@dataclass(frozen=True)
class Grant:
    """One privilege on the table (`column` None) or on one of its columns."""

    grantee: str | None  # None: PUBLIC
    privilege_type: str
    is_grantable: bool
    column: str | None


@dataclass(frozen=True)
class TableProperties:
    """What a swap re-applies to the new table; exchange's and partition_swap's plans."""

    owner: str
    comment: str | None
    reloptions: list[str]
    replica_identity: str
    grants: list[Grant]
    indexes: list[IndexPlan]
    triggers: list[str]


def indexes_of(conn: psycopg.Connection, oid: int) -> list[IndexPlan]:
    """How to re-create each index of table `oid` (and the constraint it backs)."""
    with conn.cursor(row_factory=class_row(IndexPlan)) as cur:
        return cur.execute(_INDEXES_SQL, {"oid": oid}).fetchall()


def grants_of(conn: psycopg.Connection, oid: int) -> list[Grant]:
    """The privileges granted on table `oid` and on its columns."""
    with conn.cursor(row_factory=class_row(Grant)) as cur:
        return cur.execute(_GRANTS_SQL, {"oid": oid}).fetchall()


def build_indexes(
    log: SqlLog,
    shadow: TableName,
    indexes: list[IndexPlan],
    foreign_keys: list[tuple[str, str]],
    temp_name: Callable[[int], str],
) -> None:
    """Re-create a table's indexes (under temporary names) and outbound FKs on `shadow`.

    Called after the data is in: one sorted build per index instead of row-by-row maintenance.
    """
    for i, index in enumerate(indexes):
        temp = sql.Identifier(temp_name(i))
        if index.constraint_def:
            log.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    shadow.identifier(), temp, sql.SQL(index.constraint_def)
                )
            )
        else:
            log.execute(
                sql.SQL("CREATE {}INDEX {} ON {} {}").format(
                    sql.SQL("UNIQUE " if index.is_unique else ""),
                    temp,
                    shadow.identifier(),
                    sql.SQL(str(index.index_tail)),
                )
            )
    for name, definition in foreign_keys:
        log.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                shadow.identifier(), sql.Identifier(name), sql.SQL(definition)
            )
        )


def restore_properties(log: SqlLog, target: TableName, plan: TableProperties) -> None:
    table = target.identifier()
    current = log.conn.execute("SELECT current_user").fetchone()
    if current and current[0] != plan.owner:
        log.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, sql.Identifier(plan.owner)))
    for grant in plan.grants:
        if grant.grantee != plan.owner:  # the owner's privileges come with ownership
            log.execute(_grant_sql(table, grant))
    if plan.comment is not None:
        log.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(plan.comment)))
    if plan.reloptions:
        log.execute(
            sql.SQL("ALTER TABLE {} SET ({})").format(
                table, sql.SQL(", ").join(sql.SQL(o) for o in plan.reloptions)
            )
        )
    for trigger in plan.triggers:
        log.execute(sql.SQL(trigger))


def restore_replica_identity(log: SqlLog, target: TableName, plan: TableProperties) -> None:
    table = target.identifier()
    if plan.replica_identity == "f":
        log.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(table))
    elif plan.replica_identity == "n":
        log.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY NOTHING").format(table))
    elif plan.replica_identity == "i":
        replica_identity_index(log, target, plan.indexes)


def replica_identity_index(log: SqlLog, target: TableName, indexes: list[IndexPlan]) -> None:
    """Make the index that was the replica identity the replica identity again."""
    index = next(i.name for i in indexes if i.is_replica_identity)
    log.execute(
        sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(
            target.identifier(), sql.Identifier(index)
        )
    )


def _grant_sql(table: sql.Composable, grant: Grant) -> sql.Composed:
    grantee = sql.SQL("PUBLIC") if grant.grantee is None else sql.Identifier(grant.grantee)
    columns = sql.SQL(" ({})").format(sql.Identifier(grant.column)) if grant.column else sql.SQL("")
    option = sql.SQL(" WITH GRANT OPTION") if grant.is_grantable else sql.SQL("")
    return sql.SQL("GRANT {}{} ON {} TO {}{}").format(
        sql.SQL(grant.privilege_type), columns, table, grantee, option
    )


_GRANTS_SQL = """
SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END AS grantee,
       a.privilege_type, a.is_grantable, NULL::name AS column
FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = %(oid)s
UNION ALL
SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
       a.privilege_type, a.is_grantable, att.attname
FROM pg_attribute att, aclexplode(att.attacl) a
WHERE att.attrelid = %(oid)s AND att.attnum > 0 AND NOT att.attisdropped
"""

# Plain indexes keep what follows "CREATE [UNIQUE] INDEX <name> ON <schema>.<table> " in
# pg_get_indexdef (which always schema-qualifies the table): "USING btree (...) WHERE ...".
_INDEXES_SQL = """
SELECT ic.relname AS name,
       CASE WHEN con.oid IS NOT NULL THEN pg_get_constraintdef(con.oid) END AS constraint_def,
       CASE WHEN con.oid IS NULL THEN
         substr(pg_get_indexdef(i.indexrelid),
           length(format('CREATE %%sINDEX %%I ON %%I.%%I ', CASE WHEN i.indisunique
             THEN 'UNIQUE ' ELSE '' END, ic.relname, tn.nspname, t.relname)) + 1)
       END AS index_tail,
       i.indisunique AS is_unique,
       i.indisreplident AS is_replica_identity
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
  AND con.contype IN ('p', 'u', 'x')
WHERE i.indrelid = %(oid)s
ORDER BY ic.relname
"""
