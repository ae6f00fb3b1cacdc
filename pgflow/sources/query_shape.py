"""A source query as Postgres sees it, before anything is read or written: one statement that
only reads, its output columns (exact types, typmods included) and the tables it reads.

Everything runs in the read's own transaction, which is READ ONLY: a function that writes
fails there too. Statements go through the extended protocol (`prepare=True`), where Postgres
refuses a string holding two statements; the wrapped subquery refuses what is no SELECT
(INSERT ... RETURNING, CREATE TABLE AS, a data-modifying WITH).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgflow.config.model import TableName
from pgflow.sources.base import SourceConfigError
from pgflow.sources.catalog import RESOLVED_COLUMNS_SQL, Column, catalog_column

FIELD = "source.query"
# SQLSTATE classes that say the query itself is wrong (not the server or the network): syntax
# and access (42), data (22), cardinality (21), not supported (0A), read-only transaction (25),
# invalid schema (3F), an error raised by PL/pgSQL (P0). Others stay transient.
QUERY_ERROR_CLASSES = {"42", "22", "21", "0A", "25", "3F", "P0"}

# The output columns, typed as the row description gives them, made catalog-like columns.
_OUTPUT_COLUMNS_SQL = (
    """
WITH RECURSIVE cols AS (
    SELECT o.attnum::int AS attnum, o.attname, false AS attnotnull, o.atttypid, o.atttypmod,
           false AS has_default, NULL::text AS generation,
           format_type(o.atttypid, o.atttypmod) AS type_sql
    FROM unnest(%(names)s::text[], %(types)s::oid[], %(typmods)s::int[])
         WITH ORDINALITY AS o(attname, atttypid, atttypmod, attnum)
)"""
    + RESOLVED_COLUMNS_SQL
)

# Where a plain column reference in the output comes from (the row description's table OID
# and column number): for column lineage.
_ORIGINS_SQL = """
SELECT o.ord::int, n.nspname, c.relname, a.attname
FROM unnest(%(tables)s::oid[], %(attnums)s::int[]) WITH ORDINALITY AS o(relid, attnum, ord)
JOIN pg_class c ON c.oid = o.relid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = o.relid AND a.attnum = o.attnum
"""


class QueryName(TableName):
    """Stands for a table in messages: `source.query`; its name is the query's digest."""

    def __str__(self) -> str:
        return FIELD


def query_name(query: str) -> QueryName:
    """The query's stand-in name; the digest ignores how blanks are laid out."""
    digest = hashlib.sha256(" ".join(query.split()).encode()).hexdigest()[:16]
    return QueryName("", digest)


def as_subquery(query: str) -> sql.Composed:
    """`(query) AS q`; on lines of their own: a query ending in a `--` comment must not
    swallow the closing parenthesis. The query is the spec author's SQL, sent as written."""
    return sql.SQL("(\n{}\n) AS q").format(sql.SQL(query))


@dataclass(frozen=True)
class QueryShape:
    columns: tuple[Column, ...]
    tables: tuple[TableName, ...]  # the tables its plan reads (views resolved to theirs)
    origins: dict[str, tuple[TableName, str]]  # output column -> the table column it is


def inspect_query(conn: psycopg.Connection, query: str) -> QueryShape:
    """Check `query` in the current transaction and describe it; SourceConfigError naming
    source.query when Postgres refuses it, or it writes, or it is not one SELECT."""
    plan = _explain(conn, query)
    _refuse_writes(plan)
    with refused_as_field("must be one SELECT (or VALUES, or WITH ... SELECT) that reads"):
        cur = conn.execute(
            sql.SQL("SELECT * FROM {} LIMIT 0").format(as_subquery(query)), prepare=True
        )
    description, result = cur.description or [], cur.pgresult
    assert result is not None
    names = [d.name for d in description]
    _refuse_names(names)
    types = [d.type_code for d in description]
    typmods = [result.fmod(i) for i in range(len(names))]
    with conn.cursor(row_factory=dict_row) as dict_cur:
        dict_cur.execute(_OUTPUT_COLUMNS_SQL, {"names": names, "types": types, "typmods": typmods})
        columns = tuple(catalog_column(r) for r in dict_cur.fetchall())
    sources = [(result.ftable(i), result.ftablecol(i)) for i in range(len(names))]
    return QueryShape(columns, _plan_tables(plan), _origins(conn, names, sources))


@contextmanager
def refused_as_field(what: str = "") -> Iterator[None]:
    """Turn Postgres' refusal of the query (not a lost connection) into a SourceConfigError
    naming source.query: `<what> (Postgres: <its message>)`."""
    try:
        yield
    except psycopg.Error as error:
        state = error.sqlstate or ""
        if state[:2] not in QUERY_ERROR_CLASSES:
            raise
        message = error.diag.message_primary or str(error)
        if "multiple commands" in message:  # the extended protocol's refusal
            detail = "holds more than one statement; give one SELECT (it is read as a subquery)"
        else:
            detail = f"{what} (Postgres: {message})" if what else f"Postgres: {message}"
        raise SourceConfigError(FIELD, detail) from None


def _explain(conn: psycopg.Connection, query: str) -> dict[str, Any]:
    statement = sql.SQL("EXPLAIN (FORMAT JSON, VERBOSE) {}").format(sql.SQL(query))
    with refused_as_field():
        row = conn.execute(statement, prepare=True).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _refuse_writes(plan: dict[str, Any]) -> None:
    """A plan that inserts, updates, deletes or merges (at the top or in a WITH) is refused."""
    for node in _nodes(plan):
        if node.get("Node Type") == "ModifyTable":
            operation = str(node.get("Operation", "write")).upper()
            table = f"{node.get('Schema')}.{node.get('Relation Name')}"
            raise SourceConfigError(
                FIELD,
                f"writes ({operation} on {table}); a source query must only read: give one "
                "SELECT (pgflow reads it in a read-only transaction)",
            )


def _refuse_names(names: list[str]) -> None:
    if not names:
        raise SourceConfigError(FIELD, "has no output columns; select the columns to load")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SourceConfigError(
            FIELD,
            f"names the output column(s) {', '.join(repeated)} more than once; give each "
            "column of the target its own name with AS",
        )


def _plan_tables(plan: dict[str, Any]) -> tuple[TableName, ...]:
    found = {
        TableName(str(node["Schema"]), str(node["Relation Name"]))
        for node in _nodes(plan)
        if "Relation Name" in node and "Schema" in node
    }
    return tuple(sorted(found, key=lambda t: (t.schema, t.name)))


def _origins(
    conn: psycopg.Connection, names: list[str], sources: list[tuple[int, int]]
) -> dict[str, tuple[TableName, str]]:
    tables = [relid for relid, _ in sources]
    attnums = [attnum for _, attnum in sources]
    rows = conn.execute(_ORIGINS_SQL, {"tables": tables, "attnums": attnums}).fetchall()
    return {
        names[ord_ - 1]: (TableName(schema, table), column) for ord_, schema, table, column in rows
    }
