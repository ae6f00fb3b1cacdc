"""A full refresh into a truncated or new target COPYs without the target's indexes and builds
them after: the indexes come back exactly, and a table whose indexes carry something a
re-creation would lose keeps them in place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres import index_rebuild
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load, table_text

SOURCE, TARGET = TableName("public", "events"), TableName("landing", "events")
TRUNCATE_INSERT = StrategySpec(mode="full_refresh", method="truncate_insert")

EVENTS = """
CREATE TABLE events (id bigint PRIMARY KEY, code text NOT NULL, kind text, score int,
                     body text);
INSERT INTO events SELECT g, 'c' || g, (array['a', 'b', NULL])[1 + g % 3], g % 100,
       repeat('x', g % 50) FROM generate_series(1, 3000) g
"""

# Every kind of index the rebuild must bring back as it was.
TARGET_INDEXES = """
ALTER TABLE landing.events ADD CONSTRAINT events_code_key UNIQUE (code) DEFERRABLE;
CREATE INDEX events_kind_partial ON landing.events (kind) WHERE kind IS NOT NULL;
CREATE INDEX events_lower_code ON landing.events (lower(code)) WITH (fillfactor = 70);
CREATE UNIQUE INDEX events_id_score ON landing.events (id, score) INCLUDE (kind);
ALTER TABLE landing.events ADD CONSTRAINT events_no_overlap
  EXCLUDE USING btree (score WITH =, id WITH =);
CREATE UNIQUE INDEX events_code_unique ON landing.events (code);
ALTER TABLE landing.events REPLICA IDENTITY USING INDEX events_code_unique;
"""


def indexes(uri: str) -> list[tuple]:
    """Each index's definition and the definition of the constraint it backs, if any."""
    return fetch(
        uri,
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid),"
        " pg_get_constraintdef(con.oid), i.indisreplident"
        " FROM pg_index i LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid"
        " AND con.conrelid = i.indrelid WHERE i.indrelid = 'landing.events'::regclass"
        " ORDER BY 1",
    )


@pytest.fixture
def loaded(source_uri: str, sink_uri: str) -> tuple[str, str]:
    """The source, and a target from a first load."""
    execute(source_uri, EVENTS)
    run_load(source_uri, sink_uri, SOURCE, TARGET, TRUNCATE_INSERT)
    return source_uri, sink_uri


def test_a_truncate_insert_builds_every_index_after_the_copy_exactly_as_it_was(
    loaded: tuple[str, str],
) -> None:
    source_uri, sink_uri = loaded
    execute(sink_uri, TARGET_INDEXES)
    before = indexes(sink_uri)
    execute(source_uri, "UPDATE events SET score = score + 1 WHERE id % 7 = 0")
    result = run_load(source_uri, sink_uri, SOURCE, TARGET, TRUNCATE_INSERT)
    copy_at = next(i for i, s in enumerate(result.statements) if s.startswith("COPY "))
    assert sum(s.startswith(("DROP INDEX", "ALTER TABLE")) for s in result.statements[:copy_at])
    assert any("ADD CONSTRAINT" in s for s in result.statements[copy_at:])
    assert indexes(sink_uri) == before
    assert table_text(sink_uri, "landing.events") == table_text(source_uri, "public.events")


def test_a_new_target_gets_its_primary_key_after_the_copy(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, EVENTS)
    result = run_load(source_uri, sink_uri, SOURCE, TARGET, TRUNCATE_INSERT)
    copy_at = next(i for i, s in enumerate(result.statements) if s.startswith("COPY "))
    assert any("PRIMARY KEY" in s for s in result.statements[copy_at:])
    assert fetch(
        sink_uri,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'landing.events'::regclass",
    ) == [("PRIMARY KEY (id)",)]
    assert table_text(sink_uri, "landing.events") == table_text(source_uri, "public.events")


@pytest.mark.parametrize(
    ("keeper", "kept"),
    [
        ("COMMENT ON INDEX landing.events_pkey IS 'the order id'", True),
        ("CLUSTER landing.events USING events_pkey", True),
        (
            "CREATE INDEX events_lower ON landing.events (lower(code));"
            " ALTER INDEX landing.events_lower ALTER COLUMN 1 SET STATISTICS 500",
            True,
        ),
        ("CREATE VIEW landing.per_id AS SELECT id, code FROM landing.events GROUP BY id", True),
        # A dependency that is gone again no longer keeps them.
        (
            "CREATE TABLE landing.child (id bigint REFERENCES landing.events (id));"
            " DROP TABLE landing.child",
            False,
        ),
    ],
    ids=["comment", "cluster", "statistics", "view_on_the_key", "dropped_dependency"],
)
def test_indexes_whose_rebuild_would_lose_something_stay_in_place(
    loaded: tuple[str, str], keeper: str, kept: bool
) -> None:
    source_uri, sink_uri = loaded
    execute(sink_uri, keeper)
    before = indexes(sink_uri)
    comment = fetch(sink_uri, "SELECT obj_description('landing.events_pkey'::regclass)")
    result = run_load(source_uri, sink_uri, SOURCE, TARGET, TRUNCATE_INSERT)
    dropped = any("DROP CONSTRAINT" in s for s in result.statements)
    assert dropped == (not kept)
    assert indexes(sink_uri) == before
    assert fetch(sink_uri, "SELECT obj_description('landing.events_pkey'::regclass)") == comment
    assert table_text(sink_uri, "landing.events") == table_text(source_uri, "public.events")


def test_a_failed_copy_leaves_the_indexes_and_rows_as_they_were(
    loaded: tuple[str, str],
) -> None:
    source_uri, sink_uri = loaded
    execute(sink_uri, TARGET_INDEXES)
    before, rows = indexes(sink_uri), table_text(sink_uri, "landing.events")

    def failing(chunks: Iterator[bytes]) -> Iterator[bytes]:
        with closing(chunks):  # the source's COPY ends with the failure, as in a real one
            for n, chunk in enumerate(chunks):
                if n == 1000:
                    raise ConnectionError("the source went away mid-COPY")
                yield chunk

    execute(source_uri, "UPDATE events SET score = 0")
    with pytest.raises(ConnectionError):
        run_load(source_uri, sink_uri, SOURCE, TARGET, TRUNCATE_INSERT, wrap=failing)
    assert indexes(sink_uri) == before
    assert table_text(sink_uri, "landing.events") == rows


def test_duplicate_keys_fail_the_load_when_the_key_is_built(source_uri: str, sink_uri: str) -> None:
    """The source has no key, the target has one: the rows that break it fail the build, and
    the load rolls back whole (as the row-by-row check failed the COPY before)."""
    execute(source_uri, "CREATE TABLE events (id bigint, code text)")
    execute(source_uri, "INSERT INTO events VALUES (1, 'a'), (2, 'b')")
    run_load(source_uri, sink_uri, SOURCE, TARGET, TRUNCATE_INSERT)
    execute(sink_uri, "ALTER TABLE landing.events ADD PRIMARY KEY (id)")
    execute(source_uri, "INSERT INTO events VALUES (2, 'again')")
    with pytest.raises(Exception, match="could not create unique index"):
        run_load(source_uri, sink_uri, SOURCE, TARGET, TRUNCATE_INSERT)
    assert table_text(sink_uri, "landing.events") == ["(1,a)", "(2,b)"]
    assert fetch(
        sink_uri,
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'landing.events'::regclass"
        " AND contype = 'p'",
    ) == [(1,)]


def memory(conn: psycopg.Connection) -> str:
    row = conn.execute("SHOW maintenance_work_mem").fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize(("session", "during"), [("64MB", "256MB"), ("1GB", "1GB")])
def test_the_builds_get_more_memory_for_the_load_s_transaction_only(
    sink_uri: str, session: str, during: str
) -> None:
    """A sort of a large key spills to disk at the default 64MB; a higher server or session
    setting is kept; the raise ends with the transaction (SET LOCAL)."""
    with psycopg.connect(sink_uri, autocommit=True) as conn:
        conn.execute(f"SET maintenance_work_mem = '{session}'")
        with conn.transaction():
            index_rebuild.raise_build_memory(SqlLog(conn))
            assert memory(conn) == during
        assert memory(conn) == session


@pytest.mark.parametrize("method", ["truncate_insert", "exchange"])
def test_a_full_refresh_raises_the_build_memory_before_building_the_key(
    loaded: tuple[str, str], method: str
) -> None:
    source_uri, sink_uri = loaded
    result = run_load(
        source_uri, sink_uri, SOURCE, TARGET, StrategySpec(mode="full_refresh", method=method)
    )
    raised = next(i for i, s in enumerate(result.statements) if "maintenance_work_mem" in s)
    built = next(i for i, s in enumerate(result.statements) if "PRIMARY KEY" in s)
    copied = next(i for i, s in enumerate(result.statements) if s.startswith("COPY "))
    assert copied < raised < built
    assert table_text(sink_uri, "landing.events") == table_text(source_uri, "public.events")
