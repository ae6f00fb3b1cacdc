"""incremental_merge upsert on a real cluster, checked against an independent reference.

The target after each load must equal the delete_insert reference of test_merge (new rows win
per key, source deletes stay), while rows whose staged copy is identical are not rewritten.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres.keys import DuplicateKeys, UniqueKeyMismatch
from pgflow.sinks.postgres.upsert import UpsertNeedsUniqueIndex
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load, table_text
from pgflow_tests.sinks.postgres.test_merge import (
    ITEMS,
    ITEMS_CHANGES,
    ITEMS_DDL,
    ITEMS_TARGET,
    load_in_time_zones,
    merged,
    reference,
    staging_tables,
    target_text,
)


def upsert(*key: str, duplicate_policy: str = "fail") -> StrategySpec:
    return StrategySpec(
        mode="incremental_merge",
        unique_key=key,
        merge_policy="upsert",
        duplicate_policy=duplicate_policy,  # type: ignore[arg-type]
    )


def xmins(sink_uri: str, table: str, key: str) -> dict:
    return dict(fetch(sink_uri, f"SELECT {key}, xmin::text FROM {table}"))


@pytest.fixture
def items(source_uri: str) -> str:
    execute(source_uri, ITEMS_DDL)
    return source_uri


def test_changed_rows_are_updated_and_unchanged_rows_left_untouched(items, sink_uri):
    first = run_load(items, sink_uri, ITEMS, ITEMS_TARGET, upsert("id"))
    assert first.created_target and first.rows == 20
    before = xmins(sink_uri, "landing.items", "id")

    execute(items, ITEMS_CHANGES)  # deletes 1-3, updates 4-6, inserts 21-25
    # Id 7: the same value, another scale (equal under `=`, not the same row); id 8: a no-op.
    execute(items, "UPDATE items SET ratio = round(ratio, 2) WHERE id = 7")
    execute(items, "UPDATE items SET name = name WHERE id = 8")
    expected = reference(items, sink_uri, ITEMS, ITEMS_TARGET, merged("id"))
    second = run_load(items, sink_uri, ITEMS, ITEMS_TARGET, upsert("id"))

    assert second.rows == 4 + 5  # updated + inserted
    assert target_text(sink_uri) == expected
    assert fetch(sink_uri, "SELECT ratio::text FROM landing.items WHERE id = 7") == [("1.75",)]
    after = xmins(sink_uri, "landing.items", "id")
    changed = {4, 5, 6, 7}
    assert {k: after[k] for k in before if k not in changed} == {
        k: v for k, v in before.items() if k not in changed
    }
    assert all(after[k] != before[k] for k in changed)
    assert any("ON CONFLICT" in s for s in second.statements)
    assert staging_tables(sink_uri) == []


def test_null_key_row_is_updated_not_duplicated(source_uri, sink_uri):
    execute(
        source_uri,
        "CREATE TABLE nk (k int, v text); INSERT INTO nk VALUES (NULL, 'a'), (1, 'b'), (2, 'c')",
    )
    table, target = TableName("public", "nk"), TableName("landing", "nk")
    run_load(source_uri, sink_uri, table, target, upsert("k"))
    execute(source_uri, "UPDATE nk SET v = 'a2' WHERE k IS NULL; INSERT INTO nk VALUES (3, 'd')")

    expected = reference(source_uri, sink_uri, table, target, merged("k"))
    second = run_load(source_uri, sink_uri, table, target, upsert("k"))

    assert second.rows == 2
    assert target_text(sink_uri, target) == expected
    assert fetch(sink_uri, "SELECT v FROM landing.nk WHERE k IS NULL") == [("a2",)]


def test_composite_key_with_a_nullable_part(source_uri, sink_uri):
    execute(
        source_uri,
        "CREATE TABLE ck (a int NOT NULL, b text, v int);"
        "INSERT INTO ck VALUES (1, NULL, 1), (1, 'x', 2), (2, NULL, 3), (2, 'x', 4)",
    )
    table, target = TableName("public", "ck"), TableName("landing", "ck")
    run_load(source_uri, sink_uri, table, target, upsert("a", "b"))
    execute(
        source_uri,
        "UPDATE ck SET v = v * 10 WHERE (a = 1 AND b IS NULL) OR (a = 2 AND b = 'x');"
        "DELETE FROM ck WHERE a = 1 AND b = 'x'; INSERT INTO ck VALUES (3, NULL, 5)",
    )

    expected = reference(source_uri, sink_uri, table, target, merged("a, b"))
    second = run_load(source_uri, sink_uri, table, target, upsert("a", "b"))

    assert second.rows == 3
    assert target_text(sink_uri, target) == expected


def test_numeric_and_timestamptz_keys_compare_as_values(source_uri, sink_uri):
    execute(
        source_uri,
        "SET TimeZone = 'America/New_York'; CREATE TABLE kv (n numeric, at timestamptz, v text);"
        "INSERT INTO kv VALUES (1.5, '2024-01-01 09:00+09', 'a'), (2, '2024-01-01 09:00+00', 'b')",
    )
    table, target = TableName("public", "kv"), TableName("landing", "kv")
    zones = {"source_tz": "America/New_York", "sink_tz": "Asia/Tokyo"}
    load_in_time_zones(source_uri, sink_uri, table, target, upsert("n", "at"), **zones)
    # The same key written otherwise: 1.50, and the same instant in UTC.
    execute(
        source_uri, "UPDATE kv SET n = 1.50, at = '2024-01-01 00:00+00', v = 'a2' WHERE v = 'a'"
    )

    expected = reference(source_uri, sink_uri, table, target, merged("n, at"))
    second = load_in_time_zones(source_uri, sink_uri, table, target, upsert("n", "at"), **zones)

    assert second.rows == 1
    assert target_text(sink_uri, target) == expected
    # The key lands as the source now writes it (like delete_insert would).
    assert fetch(sink_uri, "SELECT n::text, v FROM landing.kv ORDER BY n") == [
        ("1.50", "a2"),
        ("2", "b"),
    ]


def test_duplicate_keys_fail_or_keep_the_last_row(source_uri, sink_uri):
    execute(
        source_uri,
        "CREATE TABLE ev (seq int, k int, v text); INSERT INTO ev VALUES (1, 1, 'a'), (2, 2, 'b')",
    )
    table, target = TableName("public", "ev"), TableName("landing", "ev")
    run_load(source_uri, sink_uri, table, target, upsert("k"))
    before = target_text(sink_uri, target)
    # Insertion order is COPY order: for key 1 'd' is last, for NULL 'f'.
    execute(
        source_uri,
        "INSERT INTO ev VALUES (3, 1, 'c'), (4, 1, 'd'), (5, NULL, 'e'), (6, NULL, 'f')",
    )

    with pytest.raises(DuplicateKeys, match="1 x3") as failure:
        run_load(source_uri, sink_uri, table, target, upsert("k"))
    assert "nothing was written" in str(failure.value)
    assert target_text(sink_uri, target) == before

    expected = reference(source_uri, sink_uri, table, target, merged("k", last="seq"))
    result = run_load(
        source_uri, sink_uri, table, target, upsert("k", duplicate_policy="keep_last")
    )
    assert result.duplicates_dropped == 3
    assert target_text(sink_uri, target) == expected
    assert fetch(sink_uri, "SELECT k, v FROM landing.ev ORDER BY k NULLS FIRST") == [
        (None, "f"),
        (1, "d"),
        (2, "b"),
    ]


@pytest.mark.parametrize(
    ("index", "reason"),
    [
        ("", None),
        ("CREATE UNIQUE INDEX nk_k ON landing.nk (k)", "NULLS NOT DISTINCT"),
        ("CREATE UNIQUE INDEX nk_k ON landing.nk (k) NULLS NOT DISTINCT WHERE k > 0", "partial"),
        ("CREATE UNIQUE INDEX nk_k ON landing.nk (k, lower(v)) NULLS NOT DISTINCT", "expressions"),
    ],
    ids=["none", "nulls-distinct", "partial", "expression"],
)
def test_existing_target_without_a_suitable_unique_index_is_refused(
    source_uri, sink_uri, index, reason
):
    execute(
        source_uri,
        "CREATE TABLE nk (k int, v text); INSERT INTO nk VALUES (NULL, 'a'), (1, 'b')",
    )
    table, target = TableName("public", "nk"), TableName("landing", "nk")
    run_load(source_uri, sink_uri, table, target)  # full_refresh: no key, no unique index
    if index:
        execute(sink_uri, index)
    before = target_text(sink_uri, target)
    execute(source_uri, "UPDATE nk SET v = v || '2'; INSERT INTO nk VALUES (2, 'c')")

    with pytest.raises(UpsertNeedsUniqueIndex) as failure:
        run_load(source_uri, sink_uri, table, target, upsert("k"))

    message = str(failure.value)
    assert "landing.nk" in message and "unique_key (k)" in message
    assert "Nothing was written" in message and "delete_insert" in message
    if reason:
        assert "index nk_k" in message and reason in message
    assert target_text(sink_uri, target) == before
    assert staging_tables(sink_uri) == []

    # The suggested statement is the fix.
    statement = re.search(r"CREATE UNIQUE INDEX .*? NULLS NOT DISTINCT", message)
    assert statement is not None
    execute(sink_uri, statement.group(0))
    expected = reference(source_uri, sink_uri, table, target, merged("k"))
    run_load(source_uri, sink_uri, table, target, upsert("k"))
    assert target_text(sink_uri, target) == expected


def test_deferrable_unique_constraint_on_the_key_is_refused(source_uri, sink_uri):
    execute(source_uri, "CREATE TABLE d (k int NOT NULL, v text); INSERT INTO d VALUES (1, 'a')")
    execute(
        sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.d (k int NOT NULL, v text,"
        " CONSTRAINT d_k UNIQUE (k) DEFERRABLE); CREATE UNIQUE INDEX d_k2 ON landing.d (k);"
        "INSERT INTO landing.d VALUES (1, 'old')",
    )
    table, target = TableName("public", "d"), TableName("landing", "d")

    with pytest.raises(UpsertNeedsUniqueIndex, match=r"d_k .*DEFERRABLE.*Nothing was written"):
        run_load(source_uri, sink_uri, table, target, upsert("k"))
    assert table_text(sink_uri, "landing.d") == ["(1,old)"]


def test_not_null_key_accepts_a_plain_unique_index_or_primary_key(source_uri, sink_uri):
    execute(
        source_uri,
        "CREATE TABLE p (k int NOT NULL, v text); INSERT INTO p VALUES (1, 'a'), (2, 'b');"
        "CREATE TABLE q (k int PRIMARY KEY, v text); INSERT INTO q VALUES (1, 'a'), (2, 'b')",
    )
    execute(
        sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.p (k int, v text);"
        "CREATE UNIQUE INDEX p_k ON landing.p (k); INSERT INTO landing.p VALUES (NULL, 'z')",
    )
    for name in ("p", "q"):
        table, target = TableName("public", name), TableName("landing", name)
        run_load(source_uri, sink_uri, table, target, upsert("k"))
        execute(source_uri, f"UPDATE {name} SET v = 'b2' WHERE k = 2")
        expected = reference(source_uri, sink_uri, table, target, merged("k"))
        assert run_load(source_uri, sink_uri, table, target, upsert("k")).rows == 1
        assert target_text(sink_uri, target) == expected
    assert fetch(sink_uri, "SELECT k, v FROM landing.p ORDER BY k NULLS FIRST") == [
        (None, "z"),  # a NULL key the target had: kept, never matched
        (1, "a"),
        (2, "b2"),
    ]


def test_every_column_in_the_key(source_uri, sink_uri):
    execute(source_uri, "CREATE TABLE ak (a int, b numeric); INSERT INTO ak VALUES (1, 1.5)")
    table, target = TableName("public", "ak"), TableName("landing", "ak")
    run_load(source_uri, sink_uri, table, target, upsert("a", "b"))
    execute(source_uri, "UPDATE ak SET b = 1.50; INSERT INTO ak VALUES (2, NULL)")

    expected = reference(source_uri, sink_uri, table, target, merged("a, b"))
    second = run_load(source_uri, sink_uri, table, target, upsert("a", "b"))

    assert second.rows == 2  # 1.5 -> 1.50 rewritten as the source writes it, (2, NULL) new
    assert target_text(sink_uri, target) == expected


def test_generated_always_identity_columns(source_uri, sink_uri):
    execute(
        source_uri,
        "CREATE TABLE idt (id bigint PRIMARY KEY, n bigint NOT NULL, v text);"
        "INSERT INTO idt VALUES (10, 1, 'a'), (20, 2, 'b')",
    )
    execute(
        sink_uri,
        "CREATE SCHEMA landing;"
        "CREATE TABLE landing.idt (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " n bigint NOT NULL, v text)",
    )
    table, target = TableName("public", "idt"), TableName("landing", "idt")
    run_load(source_uri, sink_uri, table, target, upsert("id"))
    execute(
        source_uri, "UPDATE idt SET v = 'b2' WHERE id = 20; INSERT INTO idt VALUES (30, 3, 'c')"
    )

    expected = reference(source_uri, sink_uri, table, target, merged("id"))
    assert run_load(source_uri, sink_uri, table, target, upsert("id")).rows == 2
    assert target_text(sink_uri, target) == expected

    # A GENERATED ALWAYS identity outside the key could not be updated: refused up front.
    execute(
        sink_uri,
        "CREATE TABLE landing.idt2 (id bigint PRIMARY KEY,"
        " n bigint GENERATED ALWAYS AS IDENTITY, v text)",
    )
    target2 = TableName("landing", "idt2")
    with pytest.raises(UniqueKeyMismatch, match=r"n of landing\.idt2.*GENERATED ALWAYS"):
        run_load(source_uri, sink_uri, table, target2, upsert("id"))
    assert fetch(sink_uri, "SELECT count(*) FROM landing.idt2") == [(0,)]


def test_failure_mid_apply_leaves_the_target_as_before(items, sink_uri):
    run_load(items, sink_uri, ITEMS, ITEMS_TARGET, upsert("id"))
    execute(sink_uri, "ALTER TABLE landing.items ADD CONSTRAINT small CHECK (amount < 100)")
    before = target_text(sink_uri)
    # Updates of 1-19 and the insert of 21 pass; the update of 20 violates the CHECK.
    execute(
        items,
        "UPDATE items SET name = 'new'; UPDATE items SET amount = 1000 WHERE id = 20;"
        "INSERT INTO items (id, amount) VALUES (21, 1)",
    )

    with pytest.raises(psycopg.errors.CheckViolation):
        run_load(items, sink_uri, ITEMS, ITEMS_TARGET, upsert("id"))

    assert target_text(sink_uri) == before
    assert staging_tables(sink_uri) == []
