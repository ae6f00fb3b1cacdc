"""Read a table's shape from the Postgres catalog: columns, types, key, size estimate.

Used on both ends: on the source to create a faithful target, on the sink to check that the
target still fits the source and to decide whether raw binary COPY is safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import psycopg
from psycopg.rows import DictRow, dict_row

from pgflow.config.model import TableName

# OIDs below this are built into Postgres: identical in every database, so binary-safe.
FIRST_USER_OID = 16384


class TableNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Column:
    name: str
    type_sql: str  # format_type() as the catalog reports it (schema-qualified if needed)
    type_oid: int
    kind: str  # pg_type.typtype of the column type after resolving domains: b, e, c, r, m, p
    not_null: bool
    base_type_sql: str  # domains resolved to their base type
    base_type_oid: int
    element_oid: int  # for arrays: the element type after resolving domains; else 0
    element_kind: str  # typtype of the array element ('' when not an array)
    element_type_sql: str  # format_type() of that element ('' when not an array)
    enum_name: TableName | None  # the enum behind the column (directly or as array element)
    enum_labels: tuple[str, ...] = ()
    has_default: bool = False  # a default, identity or generated value fills it when omitted
    # GENERATED ALWAYS AS (<this>) STORED; '' otherwise. Logical replication does not send
    # such columns (PostgreSQL 15), so CDC computes them in the sink from this expression.
    generation: str = ""

    @property
    def wire_type(self) -> str | None:
        """What binary COPY sends for this column, or None when it is not portable.

        Built-in types travel by OID, enums as their label text. Arrays embed their element OID,
        so arrays of user types (enums included) only travel as text.
        """
        if self.kind == "e":
            return "enum"
        if self.base_type_oid < FIRST_USER_OID:
            return f"oid:{self.base_type_oid}"
        return None


@dataclass(frozen=True)
class TableInfo:
    table: TableName
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    estimated_rows: int | None  # from pg_class.reltuples; None when never analyzed
    is_partitioned: bool

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


_TABLE_SQL = """
SELECT c.oid, c.relkind = 'p' AS is_partitioned,
       (SELECT sum(GREATEST(p.reltuples, 0))::bigint FROM pg_class p
         WHERE p.oid = c.oid OR p.oid IN (SELECT relid FROM pg_partition_tree(c.oid)))
         AS estimated_rows,
       (SELECT bool_and(p.reltuples < 0) FROM pg_class p
         WHERE p.oid = c.oid OR p.oid IN (SELECT relid FROM pg_partition_tree(c.oid) WHERE isleaf))
         AS never_analyzed
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND c.relkind IN ('r', 'p')
"""

# Domains are resolved with a recursive walk because a domain may be over another domain.
_COLUMNS_SQL = """
WITH RECURSIVE cols AS (
    SELECT a.attnum, a.attname, a.attnotnull, a.atttypid, a.atttypmod,
           a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' AS has_default,
           CASE WHEN a.attgenerated = 's' THEN
             (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
               WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum) END AS generation,
           format_type(a.atttypid, a.atttypmod) AS type_sql
    FROM pg_attribute a
    WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped
)"""

# What a column's type is made of, for the columns of a `cols` CTE (a table's, or a query's
# output: sources/query_shape.py): attnum, attname, attnotnull, atttypid, atttypmod,
# has_default, generation, type_sql.
RESOLVED_COLUMNS_SQL = """, base(attnum, typid, typmod, depth) AS (
    SELECT attnum, atttypid, atttypmod, 0 FROM cols
    UNION ALL
    SELECT b.attnum, t.typbasetype, t.typtypmod, b.depth + 1
    FROM base b JOIN pg_type t ON t.oid = b.typid WHERE t.typtype = 'd'
), resolved AS (
    SELECT DISTINCT ON (attnum) attnum, typid, typmod FROM base ORDER BY attnum, depth DESC
)
SELECT c.attname AS name, c.type_sql, c.atttypid AS type_oid, c.attnotnull AS not_null,
       c.has_default, c.generation,
       bt.typtype AS kind, format_type(r.typid, r.typmod) AS base_type_sql,
       r.typid AS base_type_oid,
       COALESCE(et_base.oid, 0) AS element_oid, COALESCE(et_base.typtype, '') AS element_kind,
       COALESCE(format_type(et_base.oid, NULL), '') AS element_type_sql,
       en.nspname AS enum_schema, enum_t.typname AS enum_type,
       (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e
         WHERE e.enumtypid = enum_t.oid) AS enum_labels
FROM cols c
JOIN resolved r ON r.attnum = c.attnum
JOIN pg_type bt ON bt.oid = r.typid
LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
LEFT JOIN pg_type et_base ON et_base.oid = CASE WHEN et.typtype = 'd'
                                                THEN et.typbasetype ELSE et.oid END
LEFT JOIN pg_type enum_t ON enum_t.oid = CASE WHEN bt.typtype = 'e' THEN bt.oid
                                              WHEN et_base.typtype = 'e' THEN et_base.oid END
LEFT JOIN pg_namespace en ON en.oid = enum_t.typnamespace
ORDER BY c.attnum
"""
_COLUMNS_SQL += RESOLVED_COLUMNS_SQL

_PRIMARY_KEY_SQL = """
SELECT a.attname FROM pg_index i
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %(oid)s AND i.indisprimary
ORDER BY k.ord
"""


def describe_table(conn: psycopg.Connection, table: TableName) -> TableInfo:
    """The table's shape; raises TableNotFound when it is not a table or partitioned table."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_TABLE_SQL, {"schema": table.schema, "name": table.name})
        row = cur.fetchone()
        if row is None:
            raise TableNotFound(f"table {table} does not exist (or is not a table)")
        cur.execute(_COLUMNS_SQL, {"oid": row["oid"]})
        columns = tuple(catalog_column(r) for r in cur.fetchall())
        cur.execute(_PRIMARY_KEY_SQL, {"oid": row["oid"]})
        primary_key = tuple(r["attname"] for r in cur.fetchall())
    return TableInfo(
        table=table,
        columns=columns,
        primary_key=primary_key,
        estimated_rows=None if row["never_analyzed"] else row["estimated_rows"],
        is_partitioned=row["is_partitioned"],
    )


def restrict_columns(
    info: TableInfo, include: Sequence[str] | None, table: TableName | None = None
) -> TableInfo:
    """`info` with only the `include` columns (source.options.include_columns), in the table's
    order; None keeps every column. A name the table lacks is a SourceConfigError naming the
    spec field (`table`, default `info.table`, is the table the message names)."""
    if include is None:
        return info
    from pgflow.sources.base import SourceConfigError  # base imports this module

    missing = [name for name in include if info.column(name) is None]
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        raise SourceConfigError(
            "source.options.include_columns",
            f"{names} not found in {table or info.table}; its columns are: "
            f"{', '.join(info.column_names)}",
        )
    wanted = set(include)
    columns = tuple(c for c in info.columns if c.name in wanted)
    # A key only partly read is no key of the read; the target then gets none from it.
    key = info.primary_key if wanted.issuperset(info.primary_key) else ()
    return replace(info, columns=columns, primary_key=key)


def table_exists(conn: psycopg.Connection, table: TableName) -> bool:
    row = conn.execute(_TABLE_SQL, {"schema": table.schema, "name": table.name}).fetchone()
    return row is not None


def catalog_column(r: DictRow) -> Column:
    """A Column from a row of `_COLUMNS_SQL` (or of RESOLVED_COLUMNS_SQL over other columns)."""
    enum_name = TableName(r["enum_schema"], r["enum_type"]) if r["enum_type"] else None
    return Column(
        name=r["name"],
        type_sql=r["type_sql"],
        type_oid=r["type_oid"],
        kind=r["kind"],
        not_null=r["not_null"],
        base_type_sql=r["base_type_sql"],
        base_type_oid=r["base_type_oid"],
        element_oid=r["element_oid"],
        element_kind=r["element_kind"],
        element_type_sql=r["element_type_sql"],
        enum_name=enum_name,
        enum_labels=tuple(r["enum_labels"] or ()),
        has_default=r["has_default"],
        generation=r["generation"] or "",
    )
