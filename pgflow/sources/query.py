"""Reads of a `source.query`: the table readers, with `(<query>) AS q` where the table was.

The same snapshot and position machinery as a table: one REPEATABLE READ, READ ONLY
transaction holds the check of the query (query_shape.py), its shape and the COPY of its
rows; a column cursor narrows the query's output with `WHERE q.<cursor> >= <mark>`, which
Postgres pushes down into the query where it can. The shape has no primary key (a keyed
strategy names unique_key) and every column nullable (a join may NULL any of them).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import psycopg
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.rows import TupleRow

from pgflow.config.model import SourceSpec, TableName
from pgflow.sources.base import Position, ReadPlan, SourceConfigError, TableSource
from pgflow.sources.catalog import TableInfo
from pgflow.sources.column_cursor import ColumnCursorSource, NullCursorPolicy
from pgflow.sources.postgres import PostgresTableSource, set_timeout
from pgflow.sources.query_shape import (
    QueryShape,
    as_subquery,
    inspect_query,
    query_name,
    refused_as_field,
)
from pgflow.sources.window import TimeWindow


class QueryRead(PostgresTableSource):
    """What a query read does where a table read names its table."""

    _query: str
    _shape: QueryShape | None = None

    def describe(self) -> TableInfo:
        self._shape = inspect_query(self._conn, self._query)
        return query_info(self._table, self._shape)

    @property
    def shape(self) -> QueryShape:
        """What Postgres said of the query (after open()): its columns and the tables it reads."""
        if self._shape is None:
            raise RuntimeError("the source query is not open; call open() first")
        return self._shape

    @property
    def table_sql(self) -> sql.Composable:
        return sql.Identifier("q")

    @property
    def from_sql(self) -> sql.Composable:
        return as_subquery(self._query)

    def copy_select(self, copy: sql.Composed) -> Generator[Buffer, None, None]:
        with refused_as_field("failed while it was read"):
            yield from super().copy_select(copy)

    def fetch(self, query: sql.SQL | sql.Composed) -> list[TupleRow]:
        with refused_as_field("failed while it was read"):
            return super().fetch(query)


class QuerySource(QueryRead):
    """A full read of `query` (optionally one time `window` of its output)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        query: str,
        window: TimeWindow | None = None,
        include_columns: Sequence[str] | None = None,
    ):
        super().__init__(conn, query_name(query), window, include_columns)
        self._query = query


class QueryCursorSource(QueryRead, ColumnCursorSource):
    """An incremental read of `query` by one of its output columns."""

    def __init__(
        self,
        conn: psycopg.Connection,
        query: str,
        column: str,
        lookback: timedelta | Decimal | None = None,
        on_null_cursor: NullCursorPolicy = "exclude",
        include_columns: Sequence[str] | None = None,
    ):
        name = query_name(query)
        super().__init__(conn, name, column, lookback, on_null_cursor, include_columns)
        self._query = query

    @property
    def identity(self) -> str:
        """A changed query (not its layout) is another source: its first run reads it all."""
        return f"column:query:{self._table.name}:{self._column}"

    def plan(self, stored: Position | None, reset: bool) -> ReadPlan:
        if self.info.column(self._column) is None:
            raise SourceConfigError(
                "source.options.incremental_column",
                f"'{self._column}' is not an output column of source.query; its output "
                f"columns are: {', '.join(self.info.column_names)}",
            )
        with refused_as_field("failed while it was read"):
            return super().plan(stored, reset)


def query_info(name: TableName, shape: QueryShape) -> TableInfo:
    """The query's output as a table's shape: no key, no estimate, nothing partitioned."""
    columns = tuple(replace(c, not_null=False) for c in shape.columns)
    return TableInfo(name, columns, (), None, False)


def query_source(
    conn: psycopg.Connection, spec: SourceSpec, window: TimeWindow | None = None
) -> TableSource:
    """The reader of a `source.query` spec: full or by a cursor column (refused otherwise at
    load: config/read_query.py)."""
    assert spec.query is not None
    options = spec.options
    include = options.include_columns
    if options.incremental_strategy == "column":
        assert options.incremental_column is not None
        return QueryCursorSource(
            conn,
            spec.query,
            options.incremental_column,
            options.lookback,
            options.on_null_cursor,
            include_columns=include,
        )
    if options.incremental_strategy != "full":
        raise ValueError(f"incremental_strategy {options.incremental_strategy} reads no query")
    return QuerySource(conn, spec.query, window, include_columns=include)


def describe_query(conn: psycopg.Connection, query: str) -> TableInfo:
    """The query's output as a shape (in the caller's transaction: make it READ ONLY)."""
    return query_info(query_name(query), inspect_query(conn, query))


def count_query_rows(conn: psycopg.Connection, query: str, timeout: float) -> int:
    """count(*) of the query's rows, in a READ ONLY transaction bounded by `timeout` seconds
    (`conn` in autocommit mode, as the checks hold theirs)."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        set_timeout(conn, timeout)
        with refused_as_field("failed while it was counted"):
            counted = sql.SQL("SELECT count(*) FROM {}").format(as_subquery(query))
            row = conn.execute(counted, prepare=True).fetchone()
    assert row is not None
    return int(row[0])
