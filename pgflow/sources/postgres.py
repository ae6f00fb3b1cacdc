"""Full reads of a Postgres table: one REPEATABLE READ snapshot, streamed with COPY TO STDOUT."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sources.base import CopyFormat
from pgflow.sources.catalog import TableInfo, describe_table

# Text COPY output depends on these settings; pin them on both ends so values round-trip.
PORTABLE_TEXT_SETTINGS = {
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "TimeZone": "UTC",
    "bytea_output": "hex",
}


def set_portable_text_format(conn: psycopg.Connection) -> None:
    """SET LOCAL the text-format settings for the current transaction."""
    for name, value in PORTABLE_TEXT_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))


class PostgresTableSource:
    """Reads `table` through `conn` inside one read-only snapshot transaction.

    The catalog read and the data read share the snapshot, so the shape we plan with is the
    shape we stream. The connection must not be in autocommit mode.
    """

    def __init__(self, conn: psycopg.Connection, table: TableName):
        self._conn = conn
        self._table = table
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        set_portable_text_format(conn)
        self._info = describe_table(conn, table)

    @property
    def info(self) -> TableInfo:
        return self._info

    def copy_query(self, columns: Sequence[str], fmt: CopyFormat) -> sql.Composed:
        # COPY (SELECT ...) rather than COPY table: it also reads partitioned tables.
        select = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.Identifier(self._table.schema, self._table.name),
        )
        options = sql.SQL(" (FORMAT BINARY)") if fmt == "binary" else sql.SQL("")
        return sql.SQL("COPY ({}) TO STDOUT{}").format(select, options)

    def copy_out(self, columns: Sequence[str], fmt: CopyFormat) -> Iterator[bytes]:
        with self._conn.cursor() as cur, cur.copy(self.copy_query(columns, fmt)) as copy:
            yield from copy
