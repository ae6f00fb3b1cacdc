"""incremental_append on a real cluster, checked against an independent reference.

Plain append adds every staged row (the source is expected to deliver new rows only);
only_new_rows adds the staged rows whose key the target lacks and never updates a stored row.
References come from test_merge.reference: plain SQL over the previous target and the source.
"""

from __future__ import annotations

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres.keys import DuplicateKeys
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load, table_text
from pgflow_tests.sinks.postgres.test_merge import (
    ITEMS,
    ITEMS_CHANGES,
    ITEMS_DDL,
    ITEMS_TARGET,
    load_in_time_zones,
    reference,
    staging_tables,
    target_text,
)

APPEND = StrategySpec(mode="incremental_append")
# Everything appended, duplicates included.
APPENDED = "SELECT {cols} FROM expect.prev UNION ALL SELECT {cols} FROM expect.new"


def only_new(*key: str, duplicate_policy: str = "fail") -> StrategySpec:
    return StrategySpec(
        mode="incremental_append",
        unique_key=key,
        only_new_rows=True,
        duplicate_policy=duplicate_policy,  # type: ignore[arg-type]
    )


def kept(key: str, last: str | None = None) -> str:
    """Reference of only_new_rows: old rows win over new ones of the same key; `last` orders
    repeated keys within the source (the greatest wins)."""
    tiebreak = f", {last} DESC" if last else ""
    return (
        "SELECT {cols} FROM (SELECT DISTINCT ON (" + key + ") * FROM"
        " (SELECT 0 AS pri, * FROM expect.prev UNION ALL SELECT 1, * FROM expect.new) u"
        " ORDER BY " + key + ", pri" + tiebreak + ") r"
    )


def xmins(sink_uri: str, table: str, key: str) -> dict:
    return dict(fetch(sink_uri, f"SELECT {key}, xmin::text FROM {table}"))


@pytest.fixture
def items(source_uri: str) -> str:
    execute(source_uri, ITEMS_DDL)
    return source_uri


def test_append_adds_every_delivered_row(source_uri, sink_uri):
    # An insert-only log delivered in batches: each load sees only the new batch.
    execute(
        source_uri,
        "CREATE TABLE log (id int, msg text); INSERT INTO log VALUES (1, 'a'), (2, 'b')",
    )
    table, target = TableName("public", "log"), TableName("landing", "log")
    first = run_load(source_uri, sink_uri, table, target, APPEND)
    assert first.created_target and first.rows == 2

    execute(source_uri, "TRUNCATE log; INSERT INTO log VALUES (3, 'c'), (2, 'b again'), (3, 'c')")
    expected = reference(source_uri, sink_uri, table, target, APPENDED)
    second = run_load(source_uri, sink_uri, table, target, APPEND)

    assert second.rows == 3 and second.duplicates_dropped == 0
    assert target_text(sink_uri, target) == expected
    assert fetch(sink_uri, "SELECT count(*) FROM landing.log") == [(5,)]  # no key: all kept


def test_only_new_rows_inserts_missing_keys_and_never_updates(items, sink_uri):
    first = run_load(items, sink_uri, ITEMS, ITEMS_TARGET, only_new("id"))
    assert first.created_target and first.rows == 20
    before = xmins(sink_uri, "landing.items", "id")

    execute(items, ITEMS_CHANGES)  # deletes 1-3, updates 4-6, inserts 21-25
    expected = reference(items, sink_uri, ITEMS, ITEMS_TARGET, kept("id"))
    second = run_load(items, sink_uri, ITEMS, ITEMS_TARGET, only_new("id"))

    assert second.rows == 5
    assert target_text(sink_uri) == expected
    assert fetch(sink_uri, "SELECT name FROM landing.items WHERE id = 4") == [("item 4",)]
    # The stored rows were not touched at all, the source's deletes not applied.
    after = xmins(sink_uri, "landing.items", "id")
    assert {k: after[k] for k in before} == before
    assert len(after) == 25


def test_only_new_rows_null_key_is_not_added_again(source_uri, sink_uri):
    execute(source_uri, "CREATE TABLE nk (k int, v text); INSERT INTO nk VALUES (NULL, 'a')")
    table, target = TableName("public", "nk"), TableName("landing", "nk")
    run_load(source_uri, sink_uri, table, target, only_new("k"))
    execute(source_uri, "UPDATE nk SET v = 'a2'; INSERT INTO nk VALUES (1, 'b')")

    expected = reference(source_uri, sink_uri, table, target, kept("k"))
    second = run_load(source_uri, sink_uri, table, target, only_new("k"))

    assert second.rows == 1
    assert target_text(sink_uri, target) == expected
    assert fetch(sink_uri, "SELECT v FROM landing.nk WHERE k IS NULL") == [("a",)]


def test_only_new_rows_composite_key(source_uri, sink_uri):
    execute(
        source_uri,
        "CREATE TABLE ck (a int NOT NULL, b text, v int);"
        "INSERT INTO ck VALUES (1, NULL, 1), (1, 'x', 2)",
    )
    table, target = TableName("public", "ck"), TableName("landing", "ck")
    run_load(source_uri, sink_uri, table, target, only_new("a", "b"))
    execute(
        source_uri,
        "UPDATE ck SET v = v * 10; INSERT INTO ck VALUES (2, NULL, 3), (1, 'y', 4), (2, 'x', 5)",
    )

    expected = reference(source_uri, sink_uri, table, target, kept("a, b"))
    second = run_load(source_uri, sink_uri, table, target, only_new("a", "b"))

    assert second.rows == 3
    assert target_text(sink_uri, target) == expected
    assert fetch(sink_uri, "SELECT sum(v) FROM landing.ck") == [(15,)]


def test_only_new_rows_numeric_and_timestamptz_keys_compare_as_values(source_uri, sink_uri):
    execute(
        source_uri,
        "SET TimeZone = 'America/New_York'; CREATE TABLE kv (n numeric, at timestamptz, v text);"
        "INSERT INTO kv VALUES (1.5, '2024-01-01 09:00+09', 'a')",
    )
    table, target = TableName("public", "kv"), TableName("landing", "kv")
    zones = {"source_tz": "America/New_York", "sink_tz": "Asia/Tokyo"}
    load_in_time_zones(source_uri, sink_uri, table, target, only_new("n", "at"), **zones)
    # Same key written otherwise (1.50; the same instant in UTC), plus a new instant.
    execute(
        source_uri,
        "UPDATE kv SET n = 1.50, at = '2024-01-01 00:00+00', v = 'a2';"
        "INSERT INTO kv VALUES (1.5, '2024-01-01 09:00+00', 'b')",
    )

    expected = reference(source_uri, sink_uri, table, target, kept("n, at"))
    second = load_in_time_zones(source_uri, sink_uri, table, target, only_new("n", "at"), **zones)

    assert second.rows == 1
    assert target_text(sink_uri, target) == expected
    assert fetch(sink_uri, "SELECT n::text, v FROM landing.kv ORDER BY at") == [
        ("1.5", "a"),
        ("1.5", "b"),
    ]


def test_only_new_rows_duplicate_policies(source_uri, sink_uri):
    execute(
        source_uri,
        "CREATE TABLE ev (seq int, k int, v text);INSERT INTO ev VALUES (1, 1, 'a'), (2, 2, 'b')",
    )
    table, target = TableName("public", "ev"), TableName("landing", "ev")
    run_load(source_uri, sink_uri, table, target, only_new("k"))
    before = target_text(sink_uri, target)
    # Insertion order is COPY order: for key 3 'e' is last, for key 1 'f'.
    execute(source_uri, "INSERT INTO ev VALUES (3, 3, 'c'), (4, 3, 'd'), (5, 3, 'e'), (6, 1, 'f')")

    with pytest.raises(DuplicateKeys, match="3 x3") as failure:
        run_load(source_uri, sink_uri, table, target, only_new("k"))
    assert "nothing was written" in str(failure.value)
    assert target_text(sink_uri, target) == before

    expected = reference(source_uri, sink_uri, table, target, kept("k", last="seq"))
    result = run_load(
        source_uri, sink_uri, table, target, only_new("k", duplicate_policy="keep_last")
    )
    assert result.duplicates_dropped == 3 and result.rows == 1
    assert target_text(sink_uri, target) == expected
    assert fetch(sink_uri, "SELECT k, v FROM landing.ev ORDER BY k") == [
        (1, "a"),
        (2, "b"),
        (3, "e"),
    ]


@pytest.mark.parametrize("strategy", [APPEND, only_new("id")], ids=["append", "only_new"])
def test_failure_mid_apply_leaves_the_target_as_before(items, sink_uri, strategy):
    run_load(items, sink_uri, ITEMS, ITEMS_TARGET, strategy)
    execute(sink_uri, "ALTER TABLE landing.items ADD CONSTRAINT small CHECK (amount < 100)")
    before = target_text(sink_uri)
    # Only new keys, so plain append (into the target's primary key) inserts them too.
    execute(items, "DELETE FROM items; INSERT INTO items (id, amount) VALUES (50, 1), (51, 1000)")

    with pytest.raises(psycopg.errors.CheckViolation):
        run_load(items, sink_uri, ITEMS, ITEMS_TARGET, strategy)

    assert target_text(sink_uri) == before
    assert staging_tables(sink_uri) == []


def test_existing_target_with_generated_always_identity(source_uri, sink_uri):
    execute(
        source_uri, "CREATE TABLE idt (id bigint NOT NULL, v text); INSERT INTO idt VALUES (7, 'a')"
    )
    execute(
        sink_uri,
        "CREATE SCHEMA landing;"
        "CREATE TABLE landing.idt (id bigint GENERATED ALWAYS AS IDENTITY, v text)",
    )
    table, target = TableName("public", "idt"), TableName("landing", "idt")
    run_load(source_uri, sink_uri, table, target, APPEND)
    execute(source_uri, "INSERT INTO idt VALUES (8, 'b')")

    expected = reference(source_uri, sink_uri, table, target, kept("id"))
    run_load(source_uri, sink_uri, table, target, only_new("id"))

    assert target_text(sink_uri, target) == expected
    assert table_text(sink_uri, "landing.idt") == ["(7,a)", "(8,b)"]
