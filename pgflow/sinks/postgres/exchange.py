"""full_refresh, `method: exchange`: build the new table beside the target, then swap by rename.

Readers keep reading the old table while the new one is filled and indexed; the ACCESS
EXCLUSIVE lock is held only for the swap. A plain rename would break what points at the old
table by OID, so the swap re-creates it on the new one: indexes and constraints (same names),
outbound foreign keys, grants (table and column), owner, comment, storage options, replica
identity, triggers, sequence ownership and identity positions, and dependent views
(`CREATE OR REPLACE VIEW` keeps their OIDs, grants and the views built on them).

What cannot be carried over safely is refused before anything changes: partitioned tables or
partitions, inheritance, inbound foreign keys, dependent materialized views, rules,
row-level security, publication membership.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgflow.config.model import TableName
from pgflow.sinks.postgres import staging
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sinks.postgres.strategy import DirectStrategy, Fill

SWAP_LOCK_TIMEOUT = "30s"


class ExchangeRefused(RuntimeError):
    """The target has something a rename swap would break; nothing was changed."""

    def __init__(self, message: str, reasons: tuple[str, ...] = ()):
        super().__init__(message)
        self.reasons = reasons  # what blocks the swap, for callers that word their own advice


@dataclass(frozen=True)
class IndexPlan:
    name: str
    constraint_def: str | None  # ADD CONSTRAINT body for PK/UNIQUE/EXCLUDE-backed indexes
    index_tail: str | None  # "USING btree (...) WHERE ..." for plain indexes
    is_unique: bool
    is_replica_identity: bool


@dataclass(frozen=True)
class ExchangePlan:
    oid: int
    owner: str
    comment: str | None
    reloptions: list[str]
    replica_identity: str
    grants: list[dict]
    indexes: list[IndexPlan]
    foreign_keys: list[tuple[str, str]]
    triggers: list[str]
    views: list[dict]
    serial_sequences: list[tuple[str, str]]  # (qualified sequence, column)
    identity_columns: list[tuple[str, str]]  # (qualified old sequence, column)


def exchange(log: SqlLog, target: TableName, fill: Callable[[TableName], int]) -> int:
    """full_refresh `method: exchange`: the source is COPYed into the new table, then swapped in.

    The new table is invisible until the swap commits, so it needs no staging table before it.
    """
    staging.drop_orphaned_staging(log, target)  # a killed parallel exchange's new table
    return swap_in(log, target, fill)


def swap_in(log: SqlLog, target: TableName, fill: Callable[[TableName], int]) -> int:
    """Build a table like the target, `fill` it, and swap it in place of the target.

    `fill(shadow)` writes the new contents and returns the rows written; everything the target
    carries (indexes, grants, views, ...) is moved over. Used by exchange and shadow_swap.
    """
    plan = plan_exchange(log.conn, target)
    tag = secrets.token_hex(4)
    shadow = TableName(target.schema, shadow_name(target, tag))
    create_shadow(log, target, shadow)
    rows = fill(shadow)
    swap(log, target, shadow, plan, tag)
    return rows


def shadow_name(target: TableName, tag: str) -> str:
    return _short(target.name, f"__pgflow_new_{tag}")


def create_shadow(log: SqlLog, target: TableName, shadow: TableName) -> None:
    """An empty table with the target's columns, defaults and constraints, but no indexes:
    they are built once the rows are in."""
    log.execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL EXCLUDING INDEXES)").format(
            shadow.identifier(), target.identifier()
        )
    )


def swap(log: SqlLog, target: TableName, shadow: TableName, plan: ExchangePlan, tag: str) -> None:
    """Index the filled `shadow` (in the target's schema) and put it in the target's place."""
    identity_names = _identity_sequence_names(log.conn, plan)
    backup = TableName(target.schema, _short(target.name, f"__pgflow_old_{tag}"))
    build_indexes(log, shadow, plan.indexes, plan.foreign_keys, lambda i: _temp_index(tag, i))
    log.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(SWAP_LOCK_TIMEOUT)))
    log.execute(_rename(target, backup.name))
    log.execute(_rename(shadow, target.name))
    restore_properties(log, target, plan)
    _rebind_dependents(log, target, backup, plan)
    log.execute(sql.SQL("DROP TABLE {}").format(backup.identifier()))  # never CASCADE
    for i, index in enumerate(plan.indexes):
        log.execute(
            sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(target.schema, _temp_index(tag, i)), sql.Identifier(index.name)
            )
        )
    restore_replica_identity(log, target, plan)
    # The new table's identity sequences were named after the shadow; take the old names back.
    for column, name in identity_names:
        sequence = log.conn.execute(
            "SELECT pg_get_serial_sequence(%s, %s)",
            (target.identifier().as_string(log.conn), column),
        ).fetchone()
        assert sequence is not None and sequence[0] is not None
        log.execute(
            sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(
                sql.SQL(sequence[0]), sql.Identifier(name)
            )
        )


def plan_exchange(conn: psycopg.Connection, target: TableName) -> ExchangePlan:
    with conn.cursor(row_factory=dict_row) as cur:
        table = cur.execute(_TABLE_SQL, {"schema": target.schema, "name": target.name}).fetchone()
        assert table is not None, f"{target} must exist before an exchange"
        _refuse_unsafe(cur, target, table)
        oid = table["oid"]
        return ExchangePlan(
            oid=oid,
            owner=table["owner"],
            comment=table["comment"],
            reloptions=list(table["reloptions"] or []),
            replica_identity=table["relreplident"],
            grants=cur.execute(_GRANTS_SQL, {"oid": oid}).fetchall(),
            indexes=indexes_of(conn, oid),
            foreign_keys=[(r["conname"], r["def"]) for r in cur.execute(_FKS_SQL, {"oid": oid})],
            triggers=[r["def"] for r in cur.execute(_TRIGGERS_SQL, {"oid": oid})],
            views=_dependent_views(cur, oid),
            serial_sequences=_owned_sequences(cur, oid, "a"),
            identity_columns=_owned_sequences(cur, oid, "i"),
        )


def indexes_of(conn: psycopg.Connection, oid: int) -> list[IndexPlan]:
    """How to re-create each index of table `oid` (and the constraint it backs)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return [IndexPlan(**r) for r in cur.execute(_INDEXES_SQL, {"oid": oid}).fetchall()]


def _refuse_unsafe(cur: psycopg.Cursor, target: TableName, table: dict) -> None:
    reasons = [r["reason"] for r in cur.execute(_BLOCKERS_SQL, {"oid": table["oid"]})]
    if reasons:
        raise ExchangeRefused(
            f"method exchange cannot swap {target} without breaking it: {'; '.join(reasons)}. "
            f"Nothing was changed. Use method truncate_insert for this table, or remove the blocker.",
            tuple(reasons),
        )


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


class TableProperties(Protocol):
    """What a swap re-applies to the new table; exchange's and partition_replace's plans."""

    owner: str
    comment: str | None
    reloptions: list[str]
    replica_identity: str
    grants: list[dict]
    indexes: list[IndexPlan]
    triggers: list[str]


def restore_properties(log: SqlLog, target: TableName, plan: TableProperties) -> None:
    table = target.identifier()
    current = log.conn.execute("SELECT current_user").fetchone()
    if current and current[0] != plan.owner:
        log.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, sql.Identifier(plan.owner)))
    for grant in plan.grants:
        if grant["grantee"] != plan.owner:  # the owner's privileges come with ownership
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


def _rebind_dependents(
    log: SqlLog, target: TableName, backup: TableName, plan: ExchangePlan
) -> None:
    for sequence, column in plan.serial_sequences:
        log.execute(
            sql.SQL("ALTER SEQUENCE {} OWNED BY {}").format(
                sql.SQL(sequence), sql.Identifier(target.schema, target.name, column)
            )
        )
    for old_sequence, column in plan.identity_columns:
        log.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({}, {}), last_value, is_called) FROM {}"
            ).format(
                sql.Literal(target.identifier().as_string(log.conn)),
                sql.Literal(column),
                sql.SQL(old_sequence),
            )
        )
    for view in plan.views:
        options = view["options"]
        log.execute(
            sql.SQL("CREATE OR REPLACE VIEW {}{} AS {}").format(
                sql.Identifier(view["schema"], view["name"]),
                sql.SQL(" WITH ({})").format(sql.SQL(", ").join(sql.SQL(o) for o in options))
                if options
                else sql.SQL(""),
                sql.SQL(view["definition"].rstrip().rstrip(";")),
            )
        )


def restore_replica_identity(log: SqlLog, target: TableName, plan: TableProperties) -> None:
    table = target.identifier()
    if plan.replica_identity == "f":
        log.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(table))
    elif plan.replica_identity == "n":
        log.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY NOTHING").format(table))
    elif plan.replica_identity == "i":
        index = next(i.name for i in plan.indexes if i.is_replica_identity)
        log.execute(
            sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(
                table, sql.Identifier(index)
            )
        )


def _grant_sql(table: sql.Composable, grant: dict) -> sql.Composed:
    grantee = sql.SQL("PUBLIC") if grant["grantee"] is None else sql.Identifier(grant["grantee"])
    columns = (
        sql.SQL(" ({})").format(sql.Identifier(grant["column"])) if grant["column"] else sql.SQL("")
    )
    option = sql.SQL(" WITH GRANT OPTION") if grant["is_grantable"] else sql.SQL("")
    return sql.SQL("GRANT {}{} ON {} TO {}{}").format(
        sql.SQL(grant["privilege_type"]), columns, table, grantee, option
    )


def _dependent_views(cur: psycopg.Cursor, oid: int) -> list[dict]:
    # Fully qualified definitions, so re-creating them cannot resolve names differently.
    previous = cur.execute("SELECT current_setting('search_path') AS p").fetchone()["p"]
    cur.execute("SELECT set_config('search_path', '', true)")
    views = cur.execute(_VIEWS_SQL, {"oid": oid}).fetchall()
    cur.execute("SELECT set_config('search_path', %s, true)", (previous,))
    return views


def _identity_sequence_names(conn: psycopg.Connection, plan: ExchangePlan) -> list[tuple[str, str]]:
    """(column, unqualified name of its identity sequence), read while the old one exists."""
    names = []
    for sequence, column in plan.identity_columns:
        row = conn.execute("SELECT relname FROM pg_class WHERE oid = %s::regclass", (sequence,))
        names.append((column, row.fetchone()[0]))  # type: ignore[index]
    return names


def _owned_sequences(cur: psycopg.Cursor, oid: int, deptype: str) -> list[tuple[str, str]]:
    rows = cur.execute(_SEQUENCES_SQL, {"oid": oid, "deptype": deptype}).fetchall()
    return [(r["sequence"], r["column"]) for r in rows]


def _rename(table: TableName, new_name: str) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} RENAME TO {}").format(
        table.identifier(), sql.Identifier(new_name)
    )


def _short(name: str, suffix: str) -> str:
    return name.encode()[: 63 - len(suffix)].decode(errors="ignore") + suffix


def _temp_index(tag: str, i: int) -> str:
    return f"pgflow_{tag}_{i}"


_TABLE_SQL = """
SELECT c.oid, pg_get_userbyid(c.relowner) AS owner, obj_description(c.oid, 'pg_class') AS comment,
       c.reloptions, c.relreplident
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(name)s
"""

_BLOCKERS_SQL = """
SELECT 'it is a partitioned table' AS reason FROM pg_class WHERE oid = %(oid)s AND relkind = 'p'
UNION ALL SELECT 'it is a partition of ' || inhparent::regclass FROM pg_inherits
  WHERE inhrelid = %(oid)s
UNION ALL SELECT 'table ' || inhrelid::regclass || ' inherits from it' FROM pg_inherits
  WHERE inhparent = %(oid)s
UNION ALL SELECT 'foreign key ' || quote_ident(conname) || ' on ' || conrelid::regclass
  || ' references it' FROM pg_constraint WHERE confrelid = %(oid)s AND contype = 'f'
UNION ALL SELECT DISTINCT 'materialized view ' || r.ev_class::regclass || ' depends on it'
  FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
  WHERE d.refobjid = %(oid)s AND d.classid = 'pg_rewrite'::regclass AND v.relkind = 'm'
UNION ALL SELECT 'rule ' || quote_ident(rulename) || ' is defined on it' FROM pg_rewrite
  WHERE ev_class = %(oid)s
UNION ALL SELECT 'row-level security is enabled or a policy exists' FROM pg_class c
  WHERE c.oid = %(oid)s AND (c.relrowsecurity OR EXISTS (SELECT 1 FROM pg_policy p
  WHERE p.polrelid = c.oid))
UNION ALL SELECT 'it is in publication ' || quote_ident(p.pubname) FROM pg_publication_rel pr
  JOIN pg_publication p ON p.oid = pr.prpubid WHERE pr.prrelid = %(oid)s
"""

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

_FKS_SQL = """
SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
WHERE conrelid = %(oid)s AND contype = 'f' ORDER BY conname
"""

_TRIGGERS_SQL = """
SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger
WHERE tgrelid = %(oid)s AND NOT tgisinternal ORDER BY tgname
"""

_VIEWS_SQL = """
SELECT DISTINCT n.nspname AS schema, v.relname AS name, pg_get_viewdef(v.oid) AS definition,
       COALESCE(v.reloptions, '{}') AS options
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v'
JOIN pg_namespace n ON n.oid = v.relnamespace
WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %(oid)s AND v.oid <> %(oid)s
"""

_SEQUENCES_SQL = """
SELECT s.oid::regclass::text AS sequence, a.attname AS column
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.refobjid = %(oid)s AND d.classid = 'pg_class'::regclass AND d.deptype = %(deptype)s
"""


class Exchange(DirectStrategy):
    """full_refresh `method: exchange`, the strategy `exchange` runs (strategies.py)."""

    key = "full_refresh/exchange"
    parallel = True

    def fill_target(self, log: SqlLog, target: TableName, fill: Fill) -> int:
        return exchange(log, target, fill)
