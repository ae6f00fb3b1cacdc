"""`on_bad_rows: reject` costs nothing on clean data: the load runs as a `fail` load (binary
COPY, FREEZE, the strategy's apply) under a savepoint, and finds bad rows (text COPY, cast,
bisection) only after that bulk attempt failed on a row, in its COPY or in its apply. The
second pass reads the source again in the same snapshot."""

from __future__ import annotations

from collections.abc import Generator, Sequence

import psycopg
import pytest
from psycopg.abc import Buffer

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sinks.postgres.rejects import rejected_table
from pgflow.sinks.postgres.state import read_position, read_target_rows
from pgflow.sources.base import CopyFormat
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.pg import execute, fetch
from pgflow_tests.sinks.postgres.test_rejects import STRATEGIES

SOURCE = TableName("src", "Rows X")
TARGET = TableName("land", "Rows Y")
REJECTED = rejected_table(TARGET)

# The source's types are the target's: binary COPY; the target's NOT NULL and CHECK are the
# only reasons to refuse a row, and staging (no constraints) takes every row.
SOURCE_DDL = """
CREATE SCHEMA src;
CREATE TABLE src."Rows X" (id int PRIMARY KEY, note text, score int, updated_at timestamptz NOT NULL);
INSERT INTO src."Rows X" SELECT g, 'n' || g, g, '2026-01-01'::timestamptz + g * interval '1 hour'
  FROM generate_series(1, 1000) g;
"""
TARGET_DDL = """
CREATE SCHEMA land;
CREATE TABLE land."Rows Y" (id int PRIMARY KEY, note text NOT NULL, score int CHECK (score >= 0),
    updated_at timestamptz NOT NULL);
INSERT INTO land."Rows Y" VALUES (0, 'old', 0, '2000-01-01');
"""
BAD_ROWS = """
UPDATE src."Rows X" SET note = NULL WHERE id IN (1, 500);
UPDATE src."Rows X" SET score = -1 WHERE id IN (501, 1000);
"""
BAD = {1: "23502", 500: "23502", 501: "23514", 1000: "23514"}
STAGED = ("append", "delete_insert", "upsert")


def _load(
    source_uri: str, sink_uri: str, spec: StrategySpec, source_class: type = PostgresTableSource
) -> LoadResult:
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        if source_class is ColumnCursorSource:
            source = ColumnCursorSource(src, SOURCE, "updated_at")
        else:
            source = source_class(src, SOURCE)
        return load_table(dst, source, TARGET, spec, pipeline="p", run_id="run-1")


def _bulk_copies(result: LoadResult) -> list[str]:
    return [s for s in result.statements if s.startswith("COPY") and "FORMAT BINARY" in s]


def _text_pass(result: LoadResult) -> list[str]:
    """The statements of the pass that finds bad rows (its temporary tables)."""
    return [s for s in result.statements if "_pgflow_raw_" in s or "_pgflow_checked_" in s]


def _rejected(sink_uri: str) -> list[tuple[int, str]]:
    rows = fetch(
        sink_uri,
        f"SELECT (\"row\"->>'id')::int, left(error, 5) FROM {REJECTED.identifier().as_string(None)}"
        " ORDER BY 1",
    )
    return [(r[0], r[1]) for r in rows]


def _target_rows(sink_uri: str) -> list[tuple]:
    return fetch(sink_uri, 'SELECT id, note, score, updated_at FROM land."Rows Y" WHERE id > 0')


def _good_source_rows(source_uri: str) -> list[tuple]:
    return fetch(
        source_uri,
        'SELECT id, note, score, updated_at FROM src."Rows X" WHERE NOT id = ANY(%s)',
        (list(BAD),),
    )


@pytest.mark.parametrize("name", STRATEGIES)
def test_clean_data_takes_the_bulk_path(source_uri: str, sink_uri: str, name: str) -> None:
    """No temporary table, no cast: one binary COPY, frozen, as a `fail` load does it."""
    execute(source_uri, SOURCE_DDL)
    execute(sink_uri, TARGET_DDL)
    result = _load(source_uri, sink_uri, STRATEGIES[name])
    assert result.strategy_metadata["rows_rejected"] == 0 and result.rows_read == 1000
    assert _text_pass(result) == []
    copies = _bulk_copies(result)
    assert len(copies) == 1 and "FREEZE" in copies[0], result.statements
    every = fetch(source_uri, 'SELECT id, note, score, updated_at FROM src."Rows X"')
    assert sorted(_target_rows(sink_uri)) == sorted(every)
    assert fetch(sink_uri, "SELECT to_regclass(%s)", (REJECTED.identifier().as_string(None),)) == [
        (None,)
    ]


def test_a_clean_first_load_fills_the_new_target_frozen(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, SOURCE_DDL)
    result = _load(source_uri, sink_uri, STRATEGIES["delete_insert"])
    assert result.created_target and result.rows == 1000
    assert _text_pass(result) == []
    copies = _bulk_copies(result)
    assert len(copies) == 1 and "FREEZE" in copies[0] and "_pgflow_staging" not in copies[0]


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_constraint_the_bulk_write_hits_falls_back_and_rejects_exactly_the_bad_rows(
    source_uri: str, sink_uri: str, name: str
) -> None:
    """A NOT NULL and a CHECK of the target: staged strategies take every row into staging
    and fail in the apply; full_refresh fails in its COPY. Both roll back to the savepoint
    and reject exactly the bad rows; every good row lands once, with the source's values."""
    execute(source_uri, SOURCE_DDL + BAD_ROWS)
    execute(sink_uri, TARGET_DDL)
    result = _load(source_uri, sink_uri, STRATEGIES[name])
    assert result.strategy_metadata["rows_rejected"] == 4
    assert result.rows == 996 and result.rows_read == 1000
    assert _rejected(sink_uri) == sorted(BAD.items())
    assert sorted(_target_rows(sink_uri)) == sorted(_good_source_rows(source_uri))
    errors = [
        r[0] for r in fetch(sink_uri, f"SELECT error FROM {REJECTED.identifier().as_string(None)}")
    ]
    assert all('relation "Rows Y"' in e for e in errors), errors  # the target's, no temp table
    with psycopg.connect(sink_uri) as conn:  # the row ledger counts the rows that landed
        assert read_target_rows(conn, TARGET) == (997 if name in STAGED else 996)
    kept = fetch(sink_uri, 'SELECT note FROM land."Rows Y" WHERE id = 0')
    assert kept == ([("old",)] if name in STAGED else [])
    bulk, text = _bulk_copies(result), _text_pass(result)
    assert len(bulk) == 1 and text, "the bulk attempt ran first, then the rejecting pass"
    assert result.statements.index(bulk[0]) < result.statements.index(text[0])
    if name in STAGED:  # the bulk COPY into staging worked; the apply into the target failed
        applies = [
            i
            for i, s in enumerate(result.statements)
            if s.startswith(("INSERT", "DELETE", "WITH")) and '"land"."Rows Y"' in s
        ]
        assert applies and applies[0] < result.statements.index(text[0]), result.statements


def test_a_column_cursor_position_moves_past_rows_rejected_in_the_apply(
    source_uri: str, sink_uri: str
) -> None:
    """An incremental merge by a column cursor whose bad rows fail the apply: the position
    is the largest cursor value read, bad rows included, so a rerun reads nothing again."""
    execute(source_uri, SOURCE_DDL + BAD_ROWS)
    execute(sink_uri, TARGET_DDL)
    spec = STRATEGIES["upsert"]
    first = _load(source_uri, sink_uri, spec, ColumnCursorSource)
    assert first.strategy_metadata["rows_rejected"] == 4 and _text_pass(first)
    with psycopg.connect(sink_uri) as conn:
        position = read_position(conn, TARGET)
    assert position is not None and position.value.startswith("2026-02-11 16:00:00")
    again = _load(source_uri, sink_uri, spec, ColumnCursorSource)
    assert again.rows_read == 0 and again.strategy_metadata["rows_rejected"] == 0
    assert _rejected(sink_uri) == sorted(BAD.items()), "no rejected row recorded twice"
    execute(source_uri, 'UPDATE src."Rows X" SET score = 5, updated_at = now() WHERE id = 1000')
    fixed = _load(source_uri, sink_uri, spec, ColumnCursorSource)
    assert fixed.rows_read == 1 and fixed.strategy_metadata["rows_rejected"] == 0
    assert fetch(sink_uri, 'SELECT score FROM land."Rows Y" WHERE id = 1000') == [(5,)]


class _WriterDuringRead(PostgresTableSource):
    """A source whose table gains a committed row while the load reads it: the snapshot the
    load opened must not see it, in either pass."""

    copies = 0
    uri = ""

    def copy_out(self, columns: Sequence[str], fmt: CopyFormat) -> Generator[Buffer, None, None]:
        type(self).copies += 1
        with psycopg.connect(self.uri, autocommit=True) as other:
            other.execute(
                'INSERT INTO src."Rows X" VALUES (%s, %s, 1, now())', (-self.copies, "late")
            )
        yield from super().copy_out(columns, fmt)


def test_the_rejecting_pass_reads_the_same_snapshot_after_a_cancelled_copy(
    source_uri: str, sink_uri: str
) -> None:
    """50,000 rows whose first is bad: the bulk COPY into the target fails early, which ends
    the source's COPY mid-stream; the second pass still reads the first pass's snapshot (a
    row committed meanwhile is in neither)."""
    execute(
        source_uri,
        SOURCE_DDL.replace("1000)", "50000)") + 'UPDATE src."Rows X" SET note = NULL WHERE id = 1;',
    )
    execute(sink_uri, TARGET_DDL)
    _WriterDuringRead.copies, _WriterDuringRead.uri = 0, source_uri
    result = _load(source_uri, sink_uri, STRATEGIES["truncate_insert"], _WriterDuringRead)
    assert _WriterDuringRead.copies == 2, "the source was read twice"
    assert result.rows_read == 50000 and result.rows == 49999
    assert _rejected(sink_uri) == [(1, "23502")]
    assert fetch(sink_uri, 'SELECT count(*), min(id), max(id) FROM land."Rows Y"') == [
        (49999, 2, 50000)
    ]
