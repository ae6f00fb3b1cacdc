"""ArrowRead: a source read as Arrow batches, streamed in bounded batches and closable midway."""

from __future__ import annotations

import polars as pl
import psycopg
import pytest

from pgflow.config.model import TableName
from pgflow.sources.arrow import ArrowRead
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.pg import execute


@pytest.mark.parametrize("prefetch", [0, 2])
def test_reads_stream_in_bounded_batches_cut_at_record_boundaries(source_uri, prefetch):
    execute(source_uri, "CREATE TABLE lines (id int, body text)")
    # Quoted newlines, quotes and commas around every cut.
    execute(
        source_uri,
        "INSERT INTO lines SELECT g, repeat(E'x\\n\"y\",', g % 7) FROM generate_series(1, 1000) g",
    )
    with psycopg.connect(source_uri) as conn:
        source = PostgresTableSource(conn, TableName("public", "lines"))
        source.open()
        read = ArrowRead(source, batch_rows=64, batch_bytes=1000, prefetch=prefetch)
        frames = list(read.frames())
        source.close()
    assert len(frames) > 15
    assert all(f.height <= 64 for f in frames)
    table = pl.concat(frames).sort("id")
    assert table["id"].to_list() == list(range(1, 1001))
    assert table["body"].to_list() == ['x\n"y",' * (g % 7) for g in range(1, 1001)]
    assert read.rows == 1000


def test_closing_a_read_midway_ends_its_copy(source_uri):
    execute(source_uri, "CREATE TABLE lines AS SELECT g AS id FROM generate_series(1, 5000) g")
    with psycopg.connect(source_uri) as conn:
        source = PostgresTableSource(conn, TableName("public", "lines"))
        source.open()
        read = ArrowRead(source, batch_rows=100)
        frames = read.frames()
        next(frames)  # the consumer stops here, never closing what it was given
        read.close()
        source.close()
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the connection is usable again
