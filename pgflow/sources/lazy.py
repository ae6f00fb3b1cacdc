"""A Postgres table as a polars LazyFrame: batches streamed on collect, never the whole table.

Built on polars' IO-source plugin: the schema comes from the catalog at scan time; each
collect opens its own connection and snapshot, reads only the columns the query needs, and
stops early when polars asks for fewer rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import polars as pl
import psycopg
from polars.io.plugins import register_io_source

from pgflow.config.model import TableName
from pgflow.sources.arrow import ArrowRead
from pgflow.sources.arrow_columns import arrow_columns, polars_schema
from pgflow.sources.catalog import describe_table
from pgflow.sources.postgres import PostgresTableSource

Connect = Callable[[], psycopg.Connection]


def scan_postgres_table(connect: Connect, table: TableName) -> pl.LazyFrame:
    with connect() as conn:
        schema = polars_schema(arrow_columns(describe_table(conn, table)))

    def batches(
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        remaining = n_rows
        with connect() as conn:
            source = PostgresTableSource(conn, table)
            source.open()
            read = ArrowRead(source, with_columns, batch_rows=batch_size or 100_000)
            try:
                for frame in read.frames():
                    if predicate is not None:
                        frame = frame.filter(predicate)
                    if remaining is not None:
                        frame = frame.head(remaining)
                        remaining -= frame.height
                    yield frame
                    if remaining == 0:
                        return
            finally:
                read.close()
                source.close()

    return register_io_source(batches, schema=schema, explain_name=f"postgres {table}")
