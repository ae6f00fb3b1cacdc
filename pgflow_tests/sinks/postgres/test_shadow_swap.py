"""incremental_merge shadow_swap on a real cluster, checked against an independent reference.

The expected target is built in plain SQL by test_merge's `reference` (DISTINCT ON over the
source rows now, then the previous target rows: new rows win per key, NULL keys group, keys
compare typed), never by running the strategy. What the swap must keep working (views, grants,
indexes, sequences, triggers) is checked in the style of test_exchange.
"""

from __future__ import annotations

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres.exchange import ExchangeRefused
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load, table_text
from pgflow_tests.sinks.postgres.test_merge import (
    ITEMS,
    ITEMS_CHANGES,
    ITEMS_DDL,
    ITEMS_TARGET,
    merged,
    reference,
    staging_tables,
    target_text,
)


def shadow_swap(*key: str) -> StrategySpec:
    return StrategySpec(mode="incremental_merge", merge_policy="shadow_swap", unique_key=key)


def leftovers(uri: str) -> list[tuple]:
    """Tables or indexes a swap left behind (shadow, backup, temporary index names)."""
    return fetch(uri, "SELECT relname FROM pg_class WHERE relname LIKE '%%pgflow%%'")


@pytest.fixture
def items(source_uri: str) -> str:
    execute(source_uri, ITEMS_DDL)
    return source_uri


def test_first_load_then_merge_keeps_source_deletes(items, sink_uri):
    first = run_load(items, sink_uri, ITEMS, ITEMS_TARGET, shadow_swap("id"))
    assert first.created_target and first.rows == 20
    assert target_text(sink_uri) == table_text(items, "public.items")

    execute(items, ITEMS_CHANGES)  # ids 1-3 deleted, 4-6 updated, 21-25 inserted
    expected = reference(items, sink_uri, ITEMS, ITEMS_TARGET, merged("id"))
    oid_before = fetch(sink_uri, "SELECT 'landing.items'::regclass::oid")
    second = run_load(items, sink_uri, ITEMS, ITEMS_TARGET, shadow_swap("id"))

    assert not second.created_target
    assert second.rows == 22  # the staged rows merged, not the 25 rows of the new table
    assert target_text(sink_uri) == expected
    assert fetch(sink_uri, "SELECT id, name FROM landing.items WHERE id <= 3 ORDER BY id") == [
        (1, "item 1"),
        (2, "item 2"),
        (3, "item 3"),
    ]
    # It really swapped: a new table under the old name, nothing left beside it.
    assert fetch(sink_uri, "SELECT 'landing.items'::regclass::oid") != oid_before
    assert any(" RENAME TO " in s for s in second.statements)
    assert leftovers(sink_uri) == []
    assert staging_tables(sink_uri) == []


def test_null_keys_and_composite_keys(source_uri, sink_uri):
    execute(
        source_uri,
        "CREATE TABLE nk (k int, v text); INSERT INTO nk VALUES (NULL, 'a'), (1, 'b'), (2, 'c');"
        "CREATE TABLE ck (a int NOT NULL, b text, v int);"
        "INSERT INTO ck VALUES (1, NULL, 1), (1, 'x', 2), (2, NULL, 3), (2, 'x', 4)",
    )
    nk, nk_target = TableName("public", "nk"), TableName("landing", "nk")
    ck, ck_target = TableName("public", "ck"), TableName("landing", "ck")
    run_load(source_uri, sink_uri, nk, nk_target, shadow_swap("k"))
    run_load(source_uri, sink_uri, ck, ck_target, shadow_swap("a", "b"))
    execute(
        source_uri,
        "UPDATE nk SET v = 'a2' WHERE k IS NULL; DELETE FROM nk WHERE k = 1;"
        "INSERT INTO nk VALUES (3, 'd');"
        "UPDATE ck SET v = v * 10 WHERE (a = 1 AND b IS NULL) OR (a = 2 AND b = 'x');"
        "DELETE FROM ck WHERE a = 1 AND b = 'x'; INSERT INTO ck VALUES (3, NULL, 5)",
    )

    expected_nk = reference(source_uri, sink_uri, nk, nk_target, merged("k"))
    nk_load = run_load(source_uri, sink_uri, nk, nk_target, shadow_swap("k"))
    expected_ck = reference(source_uri, sink_uri, ck, ck_target, merged("a, b"))
    run_load(source_uri, sink_uri, ck, ck_target, shadow_swap("a", "b"))

    assert target_text(sink_uri, nk_target) == expected_nk
    assert fetch(sink_uri, "SELECT v FROM landing.nk WHERE k IS NULL") == [("a2",)]
    # No NOT NULL key column to hash on: staging gets an index for the anti-join.
    assert any(s.startswith('CREATE INDEX ON "_pgflow_staging"') for s in nk_load.statements)
    assert target_text(sink_uri, ck_target) == expected_ck
    assert fetch(sink_uri, "SELECT a, b, v FROM landing.ck ORDER BY a, b NULLS FIRST") == [
        (1, None, 10),
        (1, "x", 2),  # deleted in the source: kept
        (2, None, 3),
        (2, "x", 40),
        (3, None, 5),
    ]


@pytest.fixture
def dressed_target(items: str, sink_uri: str) -> str:
    """A merged target a DBA has built on: views, grants, indexes, serial, identity, trigger."""
    run_load(items, sink_uri, ITEMS, ITEMS_TARGET, shadow_swap("id"))
    execute(
        sink_uri,
        """
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgflow_reader') THEN
            CREATE ROLE pgflow_reader; END IF;
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgflow_clerk') THEN
            CREATE ROLE pgflow_clerk; END IF;
        END $$;
        ALTER TABLE landing.items ADD COLUMN audit_id bigserial,
          ADD COLUMN sid bigint GENERATED ALWAYS AS IDENTITY;
        CREATE UNIQUE INDEX items_sid_key ON landing.items (sid);
        CREATE TABLE landing.audit (n int);
        CREATE FUNCTION landing.count_insert() RETURNS trigger LANGUAGE plpgsql AS
          $$ BEGIN INSERT INTO landing.audit VALUES (1); RETURN NEW; END $$;
        CREATE TRIGGER items_audit AFTER INSERT ON landing.items
          FOR EACH ROW EXECUTE FUNCTION landing.count_insert();
        CREATE INDEX items_name_idx ON landing.items (lower(name)) WHERE amount > 10;
        CREATE VIEW landing.big AS SELECT id, name FROM landing.items WHERE amount > 20;
        CREATE VIEW landing.big_count AS SELECT count(*) AS n FROM landing.big;
        GRANT SELECT ON landing.items, landing.big TO pgflow_reader;
        GRANT SELECT (id, name), UPDATE (name) ON landing.items TO pgflow_clerk;
        COMMENT ON TABLE landing.items IS 'curated items';
    """,
    )
    return sink_uri


def privileges(uri: str) -> list[tuple]:
    return fetch(
        uri,
        """
        SELECT grantee, privilege_type, NULL FROM information_schema.role_table_grants
        WHERE table_schema = 'landing' AND table_name = 'items' AND grantee LIKE 'pgflow_%%'
        UNION ALL
        SELECT grantee, privilege_type, column_name FROM information_schema.column_privileges
        WHERE table_schema = 'landing' AND table_name = 'items' AND grantee = 'pgflow_clerk'
        ORDER BY 1, 2, 3""",
    )


def indexes(uri: str) -> list[tuple]:
    return fetch(
        uri, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'items' ORDER BY 1"
    )


def test_swap_keeps_views_grants_indexes_sequences_and_triggers(items, dressed_target):
    sink = dressed_target
    grants_before, indexes_before = privileges(sink), indexes(sink)
    view_oid_before = fetch(sink, "SELECT 'landing.big'::regclass::oid")
    kept = "SELECT id, audit_id, sid FROM landing.items WHERE id <= 3 ORDER BY id"
    kept_before = fetch(sink, kept)
    max_sid_before = fetch(sink, "SELECT max(sid) FROM landing.items")[0][0]
    execute(items, ITEMS_CHANGES)  # ids 1-3 deleted, 4-6 updated, 21-25 inserted
    execute(sink, "TRUNCATE landing.audit")
    # The source's columns of the merged table; target-only columns are checked below.
    expected = reference(
        items,
        sink,
        ITEMS,
        ITEMS_TARGET,
        "SELECT * FROM (SELECT DISTINCT ON (id) {cols} FROM (SELECT 0 AS pri, {cols}"
        " FROM expect.new UNION ALL SELECT 1, {cols} FROM expect.prev) u ORDER BY id, pri) r",
    )

    result = run_load(items, sink, ITEMS, ITEMS_TARGET, shadow_swap("id"))

    assert result.rows == 22
    columns = "id, name, amount, ratio, doc, tags, at"
    assert table_text(sink, f"(SELECT {columns} FROM landing.items)") == expected
    # Kept rows (the source deleted them) keep their target-only values; the 22 staged rows
    # are new rows: fresh serial and identity values, above every earlier one.
    assert fetch(sink, kept) == kept_before
    new_sids = fetch(sink, "SELECT sid FROM landing.items WHERE id > 3")
    assert len(new_sids) == 22 and all(sid > max_sid_before for (sid,) in new_sids)
    # Views read the new table and keep their identity and grants.
    assert fetch(sink, "SELECT n FROM landing.big_count") == fetch(
        sink, "SELECT count(*) FROM landing.items WHERE amount > 20"
    )
    assert fetch(sink, "SELECT 'landing.big'::regclass::oid") == view_oid_before
    assert fetch(sink, "SELECT has_table_privilege('pgflow_reader', 'landing.big', 'SELECT')") == [
        (True,)
    ]
    assert privileges(sink) == grants_before
    assert indexes(sink) == indexes_before
    assert fetch(sink, "SELECT obj_description('landing.items'::regclass)") == [("curated items",)]
    # The trigger did not fire for the merged rows, but does for a later insert; the serial and
    # identity sequences carried on from where they were.
    assert fetch(sink, "SELECT count(*) FROM landing.audit") == [(0,)]
    execute(sink, "INSERT INTO landing.items (id, name) VALUES (1000, 'manual')")
    assert fetch(sink, "SELECT count(*) FROM landing.audit") == [(1,)]
    assert fetch(
        sink,
        "SELECT audit_id > (SELECT max(audit_id) FROM landing.items WHERE id <> 1000),"
        " sid > (SELECT max(sid) FROM landing.items WHERE id <> 1000)"
        " FROM landing.items WHERE id = 1000",
    ) == [(True, True)]
    assert fetch(sink, "SELECT pg_get_serial_sequence('landing.items', 'audit_id')") == [
        ("landing.items_audit_id_seq",)
    ]
    assert leftovers(sink) == []


def test_refuses_a_target_referenced_by_a_foreign_key(items, sink_uri):
    run_load(items, sink_uri, ITEMS, ITEMS_TARGET, shadow_swap("id"))
    execute(
        sink_uri,
        "CREATE TABLE landing.reviews (item_id int REFERENCES landing.items (id));"
        "INSERT INTO landing.reviews VALUES (1)",
    )
    before = target_text(sink_uri)
    oid_before = fetch(sink_uri, "SELECT 'landing.items'::regclass::oid")
    execute(items, ITEMS_CHANGES)

    with pytest.raises(ExchangeRefused) as refused:
        run_load(items, sink_uri, ITEMS, ITEMS_TARGET, shadow_swap("id"))

    message = str(refused.value)
    assert "merge_policy shadow_swap cannot swap landing.items" in message
    assert "foreign key reviews_item_id_fkey on landing.reviews references it" in message
    assert "Nothing was changed" in message and "merge_policy delete_insert" in message
    assert "truncate_insert" not in message  # full_refresh advice would drop unstaged rows
    assert target_text(sink_uri) == before
    assert fetch(sink_uri, "SELECT 'landing.items'::regclass::oid") == oid_before
    assert leftovers(sink_uri) == [] and staging_tables(sink_uri) == []


def test_failure_mid_apply_leaves_the_target_as_before(items, sink_uri):
    run_load(items, sink_uri, ITEMS, ITEMS_TARGET, shadow_swap("id"))
    execute(sink_uri, "ALTER TABLE landing.items ADD CONSTRAINT small CHECK (amount < 100)")
    before = target_text(sink_uri)
    # The shadow is created LIKE the target, CHECK included: staged rows 1-19 are in the
    # shadow when row 20 violates it.
    execute(items, "UPDATE items SET name = 'new'; UPDATE items SET amount = 1000 WHERE id = 20")

    with pytest.raises(psycopg.errors.CheckViolation):
        run_load(items, sink_uri, ITEMS, ITEMS_TARGET, shadow_swap("id"))

    assert target_text(sink_uri) == before
    assert leftovers(sink_uri) == [] and staging_tables(sink_uri) == []
