"""partition_replace: staged rows replace whole slices of `partition_column`.

What is replaced
    With a partition slice (`ApplyContext.partition_slice`, e.g. a Dagster time window):
    exactly the target rows with lower <= column < upper, even when staging has none of them
    (the slice is then emptied). Staged rows outside the slice are an error, raised before
    anything changes. Without a slice: the target rows whose partition value (typed,
    null-safe: NULL replaces NULL) is one of the staged values. Either way the replaced rows
    are then exactly the staged ones; every other row is untouched.

How: native partition swap, or delete/insert
    The two paths give the same rows; native is an optimization, never a change of meaning.
    Native is used (`native_mode: auto`, the default) when all of these hold:

    1. the target is declaratively partitioned by RANGE or LIST on exactly `partition_column`
       (default operator class, the column's collation), with no default partition;
    2. every staged value falls in an existing partition, and the partitions to replace cover
       exactly what is replaced: with a slice, every partition overlapping the slice lies
       inside it; without one, each partition holding a staged value holds only staged values
       (checked by reading it), so swapping it loses no other rows;
    3. those partitions are plain tables (no sub-partitioning, no foreign table), and nothing
       the swap cannot carry over points at them: views or rules, row-level security, inbound
       foreign keys, owned sequences (identity/serial), publications of them or their parent.

    Per partition: `CREATE TABLE new (LIKE old INCLUDING ALL EXCLUDING INDEXES)`, a CHECK
    equal to the partition constraint (so ATTACH needs no validation scan), INSERT its staged
    rows, build the old partition's indexes; then, under `SET LOCAL lock_timeout`: DETACH old,
    ATTACH new `FOR VALUES <the old bound>`, DROP old, rename new (and its indexes) to the old
    names, drop the helper CHECK, restore owner, grants, comment, storage options, tablespace,
    local triggers and replica identity. Readers keep reading the old partitions until the
    DETACH; the parent's ACCESS EXCLUSIVE lock is held from there to COMMIT only.

    Carried over: columns, defaults, NOT NULL and CHECK constraints, generated columns,
    column storage, compression and comments, extended statistics (under new names), indexes
    and PK/UNIQUE/EXCLUDE constraints (rebuilt from their definitions under the old names, and
    attached to the parent's indexes), partition-local foreign keys and triggers, the parent's
    foreign keys and row triggers (re-cloned by ATTACH, which validates those foreign keys),
    table and column grants, owner, table comment, reloptions, tablespace, replica identity.
    Not carried over: the partition's OID, its planner and cumulative statistics (the load's
    ANALYZE redoes the planner's), per-column statistics targets, security labels, comments on
    its indexes and index-backed constraints, the tablespace of individual indexes; CHECK
    constraints inherited from the parent also become local (they would survive dropping the
    parent's). Triggers do not fire for the swapped rows (the delete/insert fallback fires
    them). Whatever would break instead (views, rules, RLS, inbound foreign keys, owned
    sequences, publications) makes the swap refuse, see 3.

    Otherwise the fallback runs: DELETE the replaced rows (slice range, or `column IN (staged
    values)` plus `column IS NULL` when NULL is staged), then INSERT every staged row.
    `native_mode: required` raises NativePartitionRefused instead, naming the reason and the
    fix, before anything changes; `native_mode: disabled` always deletes/inserts. Why native
    was not used is recorded as a comment in the load's statements.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgflow.config.model import TableName
from pgflow.sinks.postgres.apply import ApplyContext, PartitionSlice, insert_from_staging
from pgflow.sinks.postgres.exchange import (
    _GRANTS_SQL,
    _INDEXES_SQL,
    SWAP_LOCK_TIMEOUT,
    IndexPlan,
    _short,
    build_indexes,
    restore_properties,
    restore_replica_identity,
)
from pgflow.sinks.postgres.sql_log import SqlLog


class PartitionSliceError(ValueError):
    """The staged rows do not fit the requested partition slice; nothing was written."""


class NativePartitionRefused(RuntimeError):
    """native_mode: required, but the partitions cannot be swapped; nothing was changed."""


class PartitionColumnMissing(ValueError):
    """partition_column is not a column of the staged rows or of the target."""


@dataclass(frozen=True)
class Blocker:
    """Why the native swap cannot be used, and what would make it possible."""

    reason: str
    fix: str


@dataclass(frozen=True)
class Partition:
    oid: int
    schema: str
    name: str
    relkind: str
    bound: str  # pg_get_expr(relpartbound): "FOR VALUES FROM (...) TO (...)" / "IN (...)"
    constraint: str  # pg_get_partition_constraintdef: the bound as a condition on the column
    detach_pending: bool

    @property
    def table(self) -> TableName:
        return TableName(self.schema, self.name)

    def label(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class SwapPlan:
    """What the old partition carries that LIKE does not copy."""

    owner: str
    comment: str | None
    reloptions: list[str]
    tablespace: str | None
    replica_identity: str
    grants: list[dict]
    indexes: list[IndexPlan]
    foreign_keys: list[tuple[str, str]]  # partition-local only; ATTACH clones the parent's
    triggers: list[str]  # partition-local only; ATTACH clones the parent's


def partition_replace(ctx: ApplyContext) -> int:
    """Replace the slice (or the staged partition values) with the staged rows; rows inserted."""
    column = _partition_column(ctx)
    window = ctx.partition_slice
    if window is not None:
        _check_slice(ctx, column, window)
    if ctx.strategy.native_mode == "disabled":
        return _delete_insert(ctx, column, window, "native_mode is disabled")
    planned = _plan_native(ctx, column, window)
    if isinstance(planned, Blocker):
        if ctx.strategy.native_mode == "required":
            raise NativePartitionRefused(
                f"partition_replace with native_mode: required cannot swap partitions of "
                f"{ctx.target}: {planned.reason}. Nothing was changed. Fix: {planned.fix}, or "
                f"set sink.strategy.native_mode: auto to fall back to delete/insert"
            )
        return _delete_insert(ctx, column, window, planned.reason)
    return _swap_partitions(ctx, planned)


# --- checks shared by both paths ---------------------------------------------------------


def _partition_column(ctx: ApplyContext) -> str:
    column = ctx.strategy.partition_column
    if not column or column not in ctx.columns or ctx.target_info.column(column) is None:
        raise PartitionColumnMissing(
            f"sink.strategy.partition_column {column!r} must be a column of both the source "
            f"({', '.join(ctx.columns)}) and the target {ctx.target}"
        )
    return column


def _check_slice(ctx: ApplyContext, column: str, window: PartitionSlice) -> None:
    if window.lower is None or window.upper is None:
        raise PartitionSliceError(
            f"partition slice [{window.lower}, {window.upper}) needs both bounds"
        )
    try:
        empty = not window.lower < window.upper  # type: ignore[operator]
    except TypeError:
        empty = False  # not comparable in Python: leave it to the typed checks below
    if empty:
        raise PartitionSliceError(
            f"partition slice [{window.lower}, {window.upper}) is empty: lower must be below upper"
        )
    outside = ctx.log.execute(
        sql.SQL(
            "SELECT {col}::text FROM {staging} AS s WHERE ({inside}) IS NOT TRUE LIMIT 1"
        ).format(
            col=sql.Identifier("s", column),
            staging=ctx.staging_sql,
            inside=_in_slice(sql.Identifier("s", column), window),
        )
    ).fetchone()
    if outside is not None:
        value = "NULL" if outside[0] is None else outside[0]
        raise PartitionSliceError(
            f"the source has rows outside the partition slice [{window.lower}, {window.upper}) "
            f"of {column}, e.g. {column} = {value}; nothing was written. Filter the source to "
            f"the slice, or widen the slice"
        )


def _in_slice(column: sql.Composable, window: PartitionSlice) -> sql.Composed:
    # Literals keep their own type (date, timestamptz, ...): Postgres compares them with the
    # column's type exactly (a timestamptz bound is not truncated to a date column).
    return sql.SQL("{col} >= {lower} AND {col} < {upper}").format(
        col=column, lower=sql.Literal(window.lower), upper=sql.Literal(window.upper)
    )


# --- fallback: delete/insert ---------------------------------------------------------------


def _delete_insert(
    ctx: ApplyContext, column: str, window: PartitionSlice | None, reason: str
) -> int:
    ctx.log.record(_comment(f"partition_replace: delete/insert, no partition swap: {reason}"))
    target_col = sql.Identifier("t", column)
    if window is not None:
        ctx.log.execute(
            sql.SQL("DELETE FROM {} AS t WHERE {}").format(
                ctx.target_sql, _in_slice(target_col, window)
            )
        )
    else:
        # Typed, and null-safe in two statements so that the first stays a hashable semi-join.
        ctx.log.execute(
            sql.SQL("DELETE FROM {} AS t WHERE {} IN (SELECT {} FROM {} AS s)").format(
                ctx.target_sql, target_col, sql.Identifier("s", column), ctx.staging_sql
            )
        )
        staged_null = ctx.conn.execute(
            sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE {} IS NULL)").format(
                ctx.staging_sql, sql.Identifier(column)
            )
        ).fetchone()
        if staged_null and staged_null[0]:
            ctx.log.execute(
                sql.SQL("DELETE FROM {} AS t WHERE {} IS NULL").format(ctx.target_sql, target_col)
            )
    return insert_from_staging(ctx)


# --- native: can the partitions be swapped? ------------------------------------------------


def _plan_native(
    ctx: ApplyContext, column: str, window: PartitionSlice | None
) -> list[Partition] | Blocker:
    """The partitions to swap, or why a swap would not give exactly the delete/insert rows."""
    conn, target = ctx.conn, ctx.target
    with conn.cursor(row_factory=dict_row) as cur:
        key = cur.execute(
            _KEY_SQL, {"schema": target.schema, "name": target.name, "column": column}
        ).fetchone()
    assert key is not None, f"{target} must exist before partition_replace"
    if key["relkind"] != "p":
        return Blocker(
            f"{target} is not a partitioned table",
            f"re-create it with PARTITION BY RANGE ({column}) (or LIST) and one partition per "
            f"slice",
        )
    if key["strategy"] not in ("r", "l") or key["natts"] != 1 or not key["is_column"]:
        return Blocker(
            f"{target} is partitioned by {key['keydef']}, not by RANGE or LIST on {column} alone",
            "set sink.strategy.partition_column to its partition key column, or re-partition "
            f"it by RANGE ({column}) or LIST ({column})",
        )
    if not key["default_opclass"] or not key["same_collation"]:
        return Blocker(
            f"{target} is partitioned by {key['keydef']}, whose operator class or collation "
            f"is not the column's own, so partition bounds and the slice could disagree",
            f"partition it by {column} with the default operator class and collation",
        )
    if key["default_partition"]:
        return Blocker(
            f"{target} has a default partition {key['default_partition']}",
            "move its rows into regular partitions and detach it",
        )
    partitions = _partitions(conn, key["oid"])
    covered: list[Partition] | None = None
    if window is not None:
        found = _covered_by_slice(ctx, column, key, partitions, window)
        if isinstance(found, Blocker):
            return found
        covered = found
    groups = _staged_groups(ctx, column, partitions)
    for group in groups:
        if group["part"] is None:
            value = group["sample"] if group["sample"] is not None else "NULL"
            return Blocker(
                f"value {value} of {column} has no partition",
                f"create the partition for it (CREATE TABLE ... PARTITION OF {target} "
                f"FOR VALUES ...)",
            )
    staged = sorted({g["part"] for g in groups})
    if covered is not None:
        outside = [partitions[i] for i in staged if partitions[i] not in covered]
        if outside:  # cannot happen when the slice check passed; kept as a guard
            return Blocker(
                f"staged rows fall in partition {outside[0].label()} outside the slice",
                "filter the source to the slice",
            )
        affected = covered
    else:
        affected = [partitions[i] for i in staged]
    for partition in affected:
        blocker = _partition_blocker(ctx, key["oid"], partition)
        if blocker is not None:
            return blocker
    if covered is None:
        has_null = any(g["has_null"] for g in groups)
        for partition in affected:
            blocker = _unstaged_rows(ctx, column, partition, has_null)
            if blocker is not None:
                return blocker
    return affected


def _partitions(conn: psycopg.Connection, parent_oid: int) -> list[Partition]:
    pending = "i.inhdetachpending" if conn.info.server_version >= 140000 else "false"
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            sql.SQL(_PARTITIONS_SQL).format(pending=sql.SQL(pending)), {"oid": parent_oid}
        ).fetchall()
    return [Partition(**row) for row in rows]


def _staged_groups(ctx: ApplyContext, column: str, partitions: list[Partition]) -> list[dict]:
    """Distinct staged values grouped by the partition whose constraint accepts them.

    The partition constraints are evaluated by Postgres on the staged (typed) values, so a
    value lands where the partition routing would put it.
    """
    if partitions:
        case = sql.SQL("CASE {} END").format(
            sql.SQL(" ").join(
                sql.SQL("WHEN ({}) THEN {}").format(sql.SQL(p.constraint), sql.Literal(i))
                for i, p in enumerate(partitions)
            )
        )
    else:
        case = sql.SQL("NULL::int")
    value = sql.Identifier("v", column)
    query = sql.SQL(
        "SELECT {case} AS part, min({value}::text) AS sample, bool_or({value} IS NULL) AS has_null"
        " FROM (SELECT DISTINCT {col} FROM {staging}) AS v GROUP BY 1 ORDER BY 1"
    ).format(case=case, value=value, col=sql.Identifier(column), staging=ctx.staging_sql)
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query).fetchall()


def _covered_by_slice(
    ctx: ApplyContext,
    column: str,
    key: dict,
    partitions: list[Partition],
    window: PartitionSlice,
) -> list[Partition] | Blocker:
    """The partitions overlapping the slice, if each of them lies wholly inside it."""
    if not partitions:
        return []
    type_sql = sql.SQL(ctx.target_info.column(column).type_sql)  # type: ignore[union-attr]
    collate = (
        sql.SQL(" COLLATE {}").format(sql.SQL(key["collation"]))
        if key["collation"]
        else sql.SQL("")
    )
    rows: list[sql.Composable] = []
    for i, partition in enumerate(partitions):
        datums = _bound_datums(partition.bound, key["strategy"])
        if datums is None:
            return Blocker(
                f"the bound of partition {partition.label()} ({partition.bound}) cannot be read",
                "use plain literal bounds",
            )
        for datum in datums:
            rows.append(
                sql.SQL("({}, {}, {})").format(
                    sql.Literal(i), sql.Literal(datum[0]), _typed(datum[1], type_sql)
                )
            )
    # Per partition: does it overlap the slice, and does it lie inside it? A RANGE partition
    # has a 'lo' and a 'hi' datum (NULL for MINVALUE/MAXVALUE), a LIST one 'v' datums (NULL
    # for NULL). The bounds are compared as the column's type, in the column's collation.
    query = sql.SQL(_COVERAGE_SQL).format(
        rows=sql.SQL(", ").join(rows),
        lower=sql.Literal(window.lower),
        upper=sql.Literal(window.upper),
        collate=collate,
    )
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        coverage = cur.execute(query).fetchall()
    covered = []
    for row in coverage:
        partition = partitions[row["i"]]
        if row["overlaps"] and not row["inside"]:
            return Blocker(
                f"partition {partition.label()} ({partition.bound}) extends beyond the slice "
                f"[{window.lower}, {window.upper})",
                "align the slice with whole partitions (e.g. monthly Dagster partitions for "
                "monthly table partitions)",
            )
        if row["overlaps"]:
            covered.append(partition)
    return covered


def _typed(datum: str | None, type_sql: sql.Composable) -> sql.Composable:
    if datum is None:
        return sql.SQL("CAST(NULL AS {})").format(type_sql)
    # The datum is a constant as Postgres deparsed it from the catalog ('2024-01-01', 10, true).
    return sql.SQL("CAST({} AS {})").format(sql.SQL(datum), type_sql)


_RANGE_BOUND = re.compile(r"FOR VALUES FROM \((?P<lo>.*)\) TO \((?P<hi>.*)\)", re.S)
_LIST_BOUND = re.compile(r"FOR VALUES IN \((?P<values>.*)\)", re.S)


def _bound_datums(bound: str, strategy: str) -> list[tuple[str, str | None]] | None:
    """('lo'|'hi'|'v', constant text or None for MINVALUE/MAXVALUE/NULL); None if unreadable."""
    if strategy == "r":
        match = _RANGE_BOUND.fullmatch(bound)
        if not match:
            return None
        lo, hi = _split_datums(match["lo"]), _split_datums(match["hi"])
        if lo is None or hi is None or len(lo) != 1 or len(hi) != 1:
            return None
        if lo[0].upper() == "MAXVALUE" or hi[0].upper() == "MINVALUE":
            return None
        return [
            ("lo", None if lo[0].upper() == "MINVALUE" else lo[0]),
            ("hi", None if hi[0].upper() == "MAXVALUE" else hi[0]),
        ]
    match = _LIST_BOUND.fullmatch(bound)
    values = _split_datums(match["values"]) if match else None
    if not values:
        return None
    return [("v", None if v.upper() == "NULL" else v) for v in values]


def _split_datums(text: str) -> list[str] | None:
    """Split deparsed constants on top-level commas: 'a', 'it''s', 10, NULL, MINVALUE.

    A quoted constant ends at a lone quote; the regexes' greedy `.*` is only trusted when
    every piece is a whole constant, so "FROM ('x) TO (y')" style values are read correctly or
    rejected.
    """
    items: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] == " ":
            i += 1
        start = i
        if i < n and text[i] == "'":
            i += 1
            while i < n:
                if text[i] == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        i += 2
                        continue
                    break
                i += 1
            if i >= n:
                return None
            i += 1
        else:
            while i < n and text[i] not in ",'()":
                i += 1
            if i < n and text[i] in "'()":
                return None
        item = text[start:i].strip()
        if not item:
            return None
        items.append(item)
        while i < n and text[i] == " ":
            i += 1
        if i < n:
            if text[i] != ",":
                return None
            i += 1
    return items


def _partition_blocker(ctx: ApplyContext, parent_oid: int, partition: Partition) -> Blocker | None:
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


def _unstaged_rows(
    ctx: ApplyContext, column: str, partition: Partition, has_null: bool
) -> Blocker | None:
    """Without a slice a swap is exact only if the partition holds nothing but staged values."""
    old = sql.Identifier("t", column)
    condition = sql.SQL("NOT EXISTS (SELECT FROM {} AS s WHERE {} = {})").format(
        ctx.staging_sql, sql.Identifier("s", column), old
    )
    if has_null:
        condition = sql.SQL("{} IS NOT NULL AND {}").format(old, condition)
    row = ctx.conn.execute(
        sql.SQL("SELECT {}::text, {} IS NULL FROM {} AS t WHERE {} LIMIT 1").format(
            old, old, sql.Identifier(partition.schema, partition.name), condition
        )
    ).fetchone()
    if row is None:
        return None
    value = "NULL" if row[1] else row[0]
    return Blocker(
        f"partition {partition.label()} also holds rows with {column} = {value}, which the "
        f"source did not send; swapping the partition would delete them",
        "pass the partition's window as the partition slice (a Dagster partition does), or "
        f"send every {column} value of the partition",
    )


# --- native: the swap ----------------------------------------------------------------------


def _swap_partitions(ctx: ApplyContext, partitions: list[Partition]) -> int:
    log, conn = ctx.log, ctx.conn
    tag = secrets.token_hex(4)
    check = sql.Identifier(f"pgflow_bound_{tag}")
    built: list[tuple[Partition, SwapPlan, TableName]] = []
    rows = 0
    # Build every new partition first: readers keep using the old ones meanwhile.
    for p_i, partition in enumerate(partitions):
        plan = _plan_swap(conn, partition)
        new = TableName(partition.schema, _short(partition.name, f"__pgflow_new_{tag}"))
        tablespace = (
            sql.SQL(" TABLESPACE {}").format(sql.Identifier(plan.tablespace))
            if plan.tablespace
            else sql.SQL("")
        )
        log.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL EXCLUDING INDEXES){}").format(
                _ident(new), _ident(partition.table), tablespace
            )
        )
        # The partition constraint as a CHECK: ATTACH sees it implied and skips its scan.
        log.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})").format(
                _ident(new), check, sql.SQL(partition.constraint)
            )
        )
        rows += log.execute(
            sql.SQL(
                "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} AS s WHERE {}"
            ).format(
                _ident(new),
                ctx.column_list(),
                ctx.column_list("s"),
                ctx.staging_sql,
                sql.SQL(partition.constraint),
            )
        ).rowcount
        _build_indexes(log, new, plan, _index_prefix(tag, p_i))
        built.append((partition, plan, new))
    log.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(SWAP_LOCK_TIMEOUT)))
    for p_i, (partition, plan, new) in enumerate(built):
        log.execute(
            sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                ctx.target_sql, _ident(partition.table)
            )
        )
        log.execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
                ctx.target_sql, _ident(new), sql.SQL(partition.bound)
            )
        )
        log.execute(sql.SQL("DROP TABLE {}").format(_ident(partition.table)))  # never CASCADE
        log.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                _ident(new), sql.Identifier(partition.name)
            )
        )
        prefix = _index_prefix(tag, p_i)
        for i_i, index in enumerate(plan.indexes):
            log.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(partition.schema, f"{prefix}_{i_i}"),
                    sql.Identifier(index.name),
                )
            )
        log.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(_ident(partition.table), check)
        )
        _restore_properties(log, partition.table, plan)
    return rows


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
            grants=cur.execute(_GRANTS_SQL, {"oid": partition.oid}).fetchall(),
            indexes=[IndexPlan(**r) for r in cur.execute(_INDEXES_SQL, {"oid": partition.oid})],
            foreign_keys=[
                (r["conname"], r["def"])
                for r in cur.execute(_LOCAL_FKS_SQL, {"oid": partition.oid})
            ],
            triggers=[r["def"] for r in cur.execute(_LOCAL_TRIGGERS_SQL, {"oid": partition.oid})],
        )


def _build_indexes(log: SqlLog, new: TableName, plan: SwapPlan, prefix: str) -> None:
    # ATTACH then adopts them as the partitions of the parent's indexes (and constraints)
    # instead of building its own.
    build_indexes(log, new, plan.indexes, plan.foreign_keys, lambda i: f"{prefix}_{i}")


def _restore_properties(log: SqlLog, table: TableName, plan: SwapPlan) -> None:
    restore_properties(log, table, plan)
    restore_replica_identity(log, table, plan)


def _ident(table: TableName) -> sql.Identifier:
    return sql.Identifier(table.schema, table.name)


def _index_prefix(tag: str, partition_index: int) -> str:
    return f"pgflow_{tag}_{partition_index}"


def _comment(text: str) -> str:
    return "/* " + text.replace("*/", "* /") + " */"


_KEY_SQL = """
SELECT c.oid, c.relkind, pg_get_partkeydef(c.oid) AS keydef, pt.partstrat AS strategy,
       pt.partnatts AS natts, a.attname IS NOT NULL AS is_column,
       COALESCE(opc.opcdefault, false) AS default_opclass,
       pt.partcollation[0] = a.attcollation AS same_collation,
       CASE WHEN a.attcollation NOT IN (0, 100)
            THEN format('%%I.%%I', cn.nspname, co.collname) END AS collation,
       CASE WHEN pt.partdefid <> 0 THEN pt.partdefid::regclass::text END AS default_partition
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
  AND a.attname = %(column)s
LEFT JOIN pg_opclass opc ON opc.oid = pt.partclass[0]
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND c.relkind IN ('r', 'p')
"""

_PARTITIONS_SQL = """
SELECT p.oid, n.nspname AS schema, p.relname AS name, p.relkind,
       pg_get_expr(p.relpartbound, p.oid) AS bound,
       pg_get_partition_constraintdef(p.oid) AS constraint, {pending} AS detach_pending
FROM pg_inherits i
JOIN pg_class p ON p.oid = i.inhrelid
JOIN pg_namespace n ON n.oid = p.relnamespace
WHERE i.inhparent = %(oid)s
ORDER BY n.nspname, p.relname
"""

_COVERAGE_SQL = """
SELECT i,
       CASE WHEN bool_or(side = 'v') THEN bool_or(hit) ELSE bool_and(hit) END AS overlaps,
       bool_and(inside) AS inside
FROM (
  SELECT i, side,
         CASE side WHEN 'lo' THEN value IS NULL OR value{collate} < {upper}
                   WHEN 'hi' THEN value IS NULL OR value{collate} > {lower}
                   ELSE COALESCE(value{collate} >= {lower} AND value{collate} < {upper}, false)
         END AS hit,
         CASE side WHEN 'lo' THEN COALESCE(value{collate} >= {lower}, false)
                   WHEN 'hi' THEN COALESCE(value{collate} <= {upper}, false)
                   ELSE COALESCE(value{collate} >= {lower} AND value{collate} < {upper}, false)
         END AS inside
  FROM (VALUES {rows}) AS bounds(i, side, value)
) AS datums
GROUP BY i
ORDER BY i
"""

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
