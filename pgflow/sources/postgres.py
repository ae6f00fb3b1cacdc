"""Full reads of a Postgres table: one REPEATABLE READ snapshot, streamed with COPY TO STDOUT."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Literal

import psycopg
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.rows import TupleRow

from pgflow.config.model import TableName
from pgflow.sources.base import CopyFormat
from pgflow.sources.catalog import TableInfo, describe_table, restrict_columns
from pgflow.sources.window import TimeWindow

# Text COPY output depends on these settings; pin them on both ends so values round-trip.
PORTABLE_TEXT_SETTINGS = {
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "TimeZone": "UTC",
    "bytea_output": "hex",
    "lc_monetary": "C",  # money's text; every server has the C locale
}


def copy_to_stdout(select: sql.Composable, fmt: CopyFormat | Literal["csv"]) -> sql.Composed:
    """`COPY (select) TO STDOUT` in `fmt`; csv is Postgres' CSV (NULL unquoted and empty)."""
    options = {"binary": " (FORMAT BINARY)", "csv": " (FORMAT CSV)", "text": ""}[fmt]
    return sql.SQL("COPY ({}) TO STDOUT{}").format(select, sql.SQL(options))


def apply_settings(conn: psycopg.Connection, settings: Mapping[str, str], *, local: bool) -> None:
    """Set each of `settings` on `conn`: for the current transaction (`local`, SET LOCAL) or
    for the session. The one place pgflow sets server settings by name."""
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, %s)", (name, value, local))


def set_portable_text_format(conn: psycopg.Connection) -> None:
    """SET LOCAL the text-format settings for the current transaction."""
    apply_settings(conn, PORTABLE_TEXT_SETTINGS, local=True)


def set_timeout(conn: psycopg.Connection, seconds: float) -> None:
    """Bound the statements of the current transaction (SET LOCAL ends with it)."""
    conn.execute(
        sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{int(seconds * 1000)}ms"))
    )


class PostgresTableSource:
    """Reads `table` through `conn` inside one read-only snapshot transaction.

    `open()` starts the snapshot; the catalog read and the data read share it, so the shape
    we plan with is the shape we stream. The connection must not be in autocommit mode.
    Subclasses narrow the read with `row_filter`; a `window` narrows it to one time slice;
    `include_columns` (the spec's) narrows `info`, so a load reads and creates only those.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        table: TableName,
        window: TimeWindow | None = None,
        include_columns: Sequence[str] | None = None,
    ):
        self._conn = conn
        self._table = table
        self._window = window
        self._include = include_columns
        self._info: TableInfo | None = None

    def open(self) -> None:
        if self._info is not None:
            return
        self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self._conn.read_only = True
        self.begin_snapshot()
        # Only the included columns exist for the load: the target and COPY get just those.
        self._info = restrict_columns(self.describe(), self._include)

    def describe(self) -> TableInfo:
        """The shape of what is read, in the snapshot (a query source: its output columns)."""
        return describe_table(self._conn, self._table)

    def begin_snapshot(self) -> None:
        """The first statements of the read transaction; they fix its snapshot."""
        set_portable_text_format(self._conn)

    @property
    def info(self) -> TableInfo:
        if self._info is None:
            raise RuntimeError(f"source {self._table} is not open; call open() first")
        return self._info

    @property
    def connection(self) -> psycopg.Connection:
        """The read's connection, whose transaction holds the snapshot once open."""
        return self._conn

    @property
    def table_sql(self) -> sql.Composable:
        """What names the read's rows in expressions (`<table_sql>.<column>`)."""
        return self._table.identifier()

    @property
    def from_sql(self) -> sql.Composable:
        """What the read selects FROM: the table (a query source: the query as a subquery)."""
        return self.table_sql

    def column_expression(self, name: str) -> sql.Composable:
        """What the read selects for column `name`."""
        return sql.Identifier(name)

    def row_filter(self) -> sql.Composable | None:
        """A WHERE condition on the source rows; None reads them all."""
        bounds = self.window_bounds()
        if bounds is None or self._window is None:
            return None
        return sql.SQL("{col} >= {lower} AND {col} < {upper}").format(
            col=sql.Identifier(self._window.column),
            lower=sql.Literal(bounds[0]),
            upper=sql.Literal(bounds[1]),
        )

    def window_bounds(self) -> tuple[object, object] | None:
        """The time window's bounds in the partition column's type; None without a window."""
        return None if self._window is None else self._window.bounds(self.info)

    def select_query(
        self, expressions: Sequence[sql.Composable], narrower: sql.Composable | None = None
    ) -> sql.Composed:
        """The read as a query: SELECT `expressions` FROM the table, narrowed by `row_filter`
        and, for one slice of a parallel read, by `narrower`."""
        # SELECT ... FROM rather than the bare table: it also reads partitioned tables.
        select = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(expressions), self.from_sql)
        conditions = [c for c in (self.row_filter(), narrower) if c is not None]
        if len(conditions) > 1:
            conditions = [sql.SQL(" AND ").join(sql.SQL("({})").format(c) for c in conditions)]
        if conditions:
            select = sql.SQL("{} WHERE {}").format(select, conditions[0])
        return select

    def copy_query(
        self, columns: Sequence[str], fmt: CopyFormat, narrower: sql.Composable | None = None
    ) -> sql.Composed:
        expressions = [self.column_expression(c) for c in columns]
        return copy_to_stdout(self.select_query(expressions, narrower), fmt)

    def copy_out(self, columns: Sequence[str], fmt: CopyFormat) -> Generator[Buffer, None, None]:
        yield from self.copy_select(self.copy_query(columns, fmt))

    def copy_select(self, copy: sql.Composed) -> Generator[Buffer, None, None]:
        """Stream a `COPY (...) TO STDOUT` statement (see `copy_to_stdout`) in the snapshot."""
        with self._conn.cursor() as cur, cur.copy(copy) as stream:
            yield from stream

    def fetch(self, query: sql.SQL | sql.Composed) -> list[TupleRow]:
        """Rows of `query`, run in the read's snapshot (after `open()`)."""
        return self._conn.execute(query).fetchall()

    def close(self) -> None:
        # A read-only snapshot held open would hold back VACUUM on the source during the apply.
        self._conn.rollback()
