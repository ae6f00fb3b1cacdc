"""The read-only probes behind the asset checks, on real tables: counts with soft deletes,
duplicate composite keys with NULLs, and drift judged by the load's own rules."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgflow.config.model import TableName
from pgflow.sinks.postgres import inspect
from pgflow.sources.catalog import describe_table
from pgflow_tests.pg import execute

TABLE = TableName("landing", "pairs")


@pytest.fixture
def conn(fresh_db: str) -> Iterator[psycopg.Connection]:
    execute(
        fresh_db,
        "CREATE SCHEMA landing; CREATE TABLE landing.pairs (a int, b text, v numeric(8,2),"
        " gone_at timestamptz);"
        "INSERT INTO landing.pairs VALUES (1, 'x', 1, NULL), (1, 'x', 2, NULL), (1, 'x', 3, now()),"
        " (2, NULL, 4, NULL), (2, NULL, 5, NULL), (3, 'y', 6, NULL)",
    )
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.read_only = True
        yield conn


def test_row_count_leaves_out_soft_deleted_rows(conn: psycopg.Connection) -> None:
    assert inspect.row_count(conn, TABLE) == 6
    assert inspect.row_count(conn, TABLE, deleted_column="gone_at") == 5
    assert inspect.row_count(conn, TABLE, deleted_column="not_there") == 6
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # nothing left open


def test_duplicate_composite_keys_group_nulls_and_show_the_worst_first(
    conn: psycopg.Connection,
) -> None:
    found = inspect.duplicate_keys(conn, TABLE, ("a", "b"))
    assert (found.keys, found.rows) == (2, 5)
    assert found.examples == (({"a": "1", "b": "x"}, 3), ({"a": "2", "b": None}, 2))
    assert inspect.duplicate_keys(conn, TABLE, ("a", "b"), sample=1).examples == (
        ({"a": "1", "b": "x"}, 3),
    )
    assert inspect.duplicate_keys(conn, TABLE, ("a", "b", "v")).keys == 0


# (index definition on landing.keyed, key checked, index expected to settle it)
ENFORCING_CASES = [
    ("PRIMARY KEY (a)", ("a",), True),
    ("PRIMARY KEY (a)", ("a", "b"), True),  # a key holding a unique column is unique
    ("PRIMARY KEY (a, b)", ("a",), False),  # a wider index says nothing about (a)
    ("UNIQUE (b)", ("b",), False),  # b can hold NULL twice under NULLS DISTINCT
    ("UNIQUE NULLS NOT DISTINCT (b)", ("b",), True),
    ("UNIQUE (c)", ("c",), True),  # c is NOT NULL
    ("EXCLUDE USING btree (a WITH =)", ("a",), False),  # not a unique index
]


@pytest.mark.parametrize(("constraint", "key", "settles"), ENFORCING_CASES)
def test_a_unique_index_settles_a_key_only_when_it_proves_it(
    fresh_db: str, constraint: str, key: tuple[str, ...], settles: bool
) -> None:
    execute(
        fresh_db,
        "CREATE SCHEMA landing;"
        f"CREATE TABLE landing.keyed (a int, b text, c int NOT NULL, {constraint})",
    )
    execute(
        fresh_db,
        "CREATE UNIQUE INDEX partial ON landing.keyed (a) WHERE c > 0;"
        "CREATE UNIQUE INDEX on_expression ON landing.keyed ((a + 1))",
    )
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        found = inspect.index_enforcing_unique(conn, TableName("landing", "keyed"), key)
    assert (found is not None) == settles, found
    assert found not in ("partial", "on_expression")


def test_probes_run_read_only_with_a_timeout(conn: psycopg.Connection) -> None:
    with conn.transaction():
        inspect.set_timeout(conn, 0.001)
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(1)")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), conn.transaction():
        conn.execute("DELETE FROM landing.pairs")


def test_compare_columns_follows_the_loads_drift_rules(fresh_db: str, sink_uri: str) -> None:
    execute(fresh_db, "CREATE TABLE items (id int, qty int, price text, note text)")
    execute(
        sink_uri,
        "CREATE TABLE items (id bigint, qty int, price numeric, old text, local text DEFAULT 'x',"
        " deleted_at timestamptz)",
    )
    table = TableName("public", "items")
    with psycopg.connect(fresh_db) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        source, target = describe_table(src, table), describe_table(dst, table)
        found = inspect.compare_columns(dst, source, target, "add_columns", "deleted_at")
        synced = inspect.compare_columns(dst, source, target, "sync", "deleted_at")
    # int into bigint widens (no drift); text into numeric does not cast implicitly.
    assert found.added == ("note",) and found.dropped == ("old",)  # `local` has a default
    assert found.retyped == ("price (numeric -> text)",)
    assert len(found.refused) == 2 and synced.refused == ()
