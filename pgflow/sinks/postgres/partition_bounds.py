"""The partition layout of a partition_replace target: its key, its partitions, their bounds.

Everything here only reads the catalog and the staged rows; nothing is changed. Postgres
itself decides which partition a staged value belongs to (its partition constraints are
evaluated on the typed staged values), so a value lands where row routing would put it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row

from pgflow.config.model import TableName
from pgflow.sinks.partition_slice import PartitionSlice
from pgflow.sinks.postgres.apply import ApplyContext

# Values named in an error about staged values (the rest are counted).
SAMPLE_VALUES = 5


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

    @property
    def is_default(self) -> bool:
        return self.bound == "DEFAULT"

    def label(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class PartitionKey:
    """The target table and its partition key, as _KEY_SQL reads them (None: not partitioned,
    or the key is not on the column)."""

    oid: int
    relkind: str
    keydef: str | None
    strategy: str | None
    natts: int | None
    is_column: bool
    default_opclass: bool
    same_collation: bool | None
    collation: str | None  # the column's own collation, qualified; None: the default
    default_partition: str | None


@dataclass(frozen=True)
class Layout:
    """A target partitioned by RANGE or LIST on exactly partition_column, and its partitions."""

    key: PartitionKey
    partitions: list[Partition]

    @property
    def oid(self) -> int:
        return self.key.oid

    @property
    def default_partition(self) -> str | None:
        return self.key.default_partition


@dataclass(frozen=True)
class StagedGroup:
    """The distinct staged values that fall in one partition (None: in no partition)."""

    partition: int | None
    values: int  # how many distinct values
    sample: list[str | None]  # the first SAMPLE_VALUES of them, as text, in the column's order


def read_layout(ctx: ApplyContext, column: str) -> Layout | Blocker:
    """The target's partitions by `column`, or why it is not partitioned by `column` alone."""
    target = ctx.target
    with ctx.conn.cursor(row_factory=class_row(PartitionKey)) as cur:
        key = cur.execute(
            _KEY_SQL, {"schema": target.schema, "name": target.name, "column": column}
        ).fetchone()
    assert key is not None, f"{target} must exist before partition_replace"
    if key.relkind != "p":
        return Blocker(
            f"{target} is not a partitioned table",
            f"re-create it with PARTITION BY RANGE ({column}) (or LIST) and one partition per "
            f"slice",
        )
    if key.strategy not in ("r", "l") or key.natts != 1 or not key.is_column:
        return Blocker(
            f"{target} is partitioned by {key.keydef}, not by RANGE or LIST on {column} alone",
            "set sink.strategy.partition_column to its partition key column, or re-partition "
            f"it by RANGE ({column}) or LIST ({column})",
        )
    if not key.default_opclass or not key.same_collation:
        return Blocker(
            f"{target} is partitioned by {key.keydef}, whose operator class or collation "
            f"is not the column's own, so partition bounds and the slice could disagree",
            f"partition it by {column} with the default operator class and collation",
        )
    return Layout(key, _partitions(ctx.conn, key.oid))


def _partitions(conn: psycopg.Connection, parent_oid: int) -> list[Partition]:
    pending = "i.inhdetachpending" if conn.info.server_version >= 140000 else "false"
    with conn.cursor(row_factory=class_row(Partition)) as cur:
        return cur.execute(
            sql.SQL(_PARTITIONS_SQL).format(pending=sql.SQL(pending)), {"oid": parent_oid}
        ).fetchall()


def staged_groups(ctx: ApplyContext, column: str, partitions: list[Partition]) -> list[StagedGroup]:
    """Distinct staged values grouped by the partition whose constraint accepts them.

    One pass over the distinct staged values; only the first few of each group leave the
    server, so memory stays bounded however many values there are.
    """
    case: sql.Composable
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
        "SELECT {case} AS part, count(*) AS n,"
        " (array_agg({value}::text ORDER BY {value} NULLS FIRST))[1:{limit}] AS sample"
        " FROM (SELECT DISTINCT {col} FROM {staging}) AS v GROUP BY 1 ORDER BY 1"
    ).format(
        case=case,
        value=value,
        limit=sql.Literal(SAMPLE_VALUES),
        col=sql.Identifier(column),
        staging=ctx.staging_sql,
    )
    rows = ctx.conn.execute(query).fetchall()
    return [StagedGroup(part, n, list(sample)) for part, n, sample in rows]


def unrouted_values(ctx: ApplyContext, column: str, parents: list[Partition]) -> StagedGroup:
    """The `column` values of staged rows that no leaf under `parents` (sub-partitioned
    partitions) accepts. Leaf constraints may name other columns, so every staged row is
    checked; this runs only when a touched partition is itself partitioned."""
    leaves: list[str] = []
    for parent in parents:
        leaves += [
            r[0]
            for r in ctx.conn.execute(
                "SELECT pg_get_partition_constraintdef(relid) FROM pg_partition_tree(%s)"
                " WHERE isleaf",
                (parent.oid,),
            )
        ]
    inside = (
        sql.SQL(" OR ").join(sql.SQL("({})").format(sql.SQL(c)) for c in leaves)
        if leaves
        else sql.SQL("false")
    )
    within = sql.SQL(" OR ").join(sql.SQL("({})").format(sql.SQL(p.constraint)) for p in parents)
    value = sql.Identifier("v", column)
    query = sql.SQL(
        "SELECT count(*), (array_agg({value}::text ORDER BY {value} NULLS FIRST))[1:{limit}]"
        " FROM (SELECT DISTINCT {col} FROM {staging} WHERE ({within}) AND ({inside}) IS NOT TRUE)"
        " AS v"
    ).format(
        value=value,
        limit=sql.Literal(SAMPLE_VALUES),
        col=sql.Identifier(column),
        staging=ctx.staging_sql,
        within=within,
        inside=inside,
    )
    row = ctx.conn.execute(query).fetchone()
    assert row is not None
    return StagedGroup(None, row[0], list(row[1] or []))


def covered_by_slice(
    ctx: ApplyContext,
    column: str,
    key: PartitionKey,
    partitions: list[Partition],
    window: PartitionSlice,
) -> list[Partition] | Blocker:
    """The partitions overlapping the slice, if each of them lies wholly inside it."""
    if not partitions:
        return []
    declared = ctx.target_info.column(column)
    assert declared is not None  # read_layout found it as the partition key column
    type_sql = sql.SQL(declared.type_sql)
    collate = (
        sql.SQL(" COLLATE {}").format(sql.SQL(key.collation)) if key.collation else sql.SQL("")
    )
    rows: list[sql.Composable] = []
    for i, partition in enumerate(partitions):
        datums = bound_datums(partition.bound, key.strategy)
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


def bound_datums(bound: str, strategy: str | None) -> list[tuple[str, str | None]] | None:
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


_RANGE_BOUND = re.compile(r"FOR VALUES FROM \((?P<lo>.*)\) TO \((?P<hi>.*)\)", re.S)
_LIST_BOUND = re.compile(r"FOR VALUES IN \((?P<values>.*)\)", re.S)

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
