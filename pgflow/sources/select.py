"""Pick the reader for a pipeline's source spec."""

from __future__ import annotations

import psycopg

from pgflow.config.model import SourceSpec
from pgflow.sources.base import TableSource
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.postgres import PostgresTableSource
from pgflow.sources.query import query_source
from pgflow.sources.window import TimeWindow
from pgflow.sources.xmin import XminSource


def table_source(
    conn: psycopg.Connection, spec: SourceSpec, window: TimeWindow | None = None
) -> TableSource:
    """The reader for a postgres source: full, cursor column or xmin (not yet opened).

    `window` narrows a full read to one time slice (a partition_replace time partition);
    `options.include_columns` narrows every read to those columns.
    """
    if spec.query is not None:
        return query_source(conn, spec, window)
    assert spec.table is not None
    options = spec.options
    include = options.include_columns
    if options.incremental_strategy == "column":
        assert options.incremental_column is not None
        return ColumnCursorSource(
            conn,
            spec.table,
            options.incremental_column,
            options.lookback,
            options.on_null_cursor,
            include_columns=include,
        )
    if options.incremental_strategy == "xmin":
        return XminSource(conn, spec.table, include_columns=include)
    if window is not None and options.incremental_strategy != "full":
        raise ValueError("a time window narrows full reads only")
    if options.incremental_strategy == "full":
        return PostgresTableSource(conn, spec.table, window, include_columns=include)
    raise ValueError(f"incremental_strategy {options.incremental_strategy} has no table reader")
