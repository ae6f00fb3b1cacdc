"""full_refresh `method: exchange`: what a rename swap must keep working, and what it refuses."""

from __future__ import annotations

import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres.exchange import ExchangeRefused
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load, table_text

EXCHANGE = StrategySpec(mode="full_refresh", method="exchange")
SOURCE = TableName("public", "items")
TARGET = TableName("landing", "items")


@pytest.fixture
def items(source_uri: str) -> str:
    execute(
        source_uri,
        """
        CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2));
        INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 200) g;
    """,
    )
    return source_uri


@pytest.fixture
def dressed_target(items: str, sink_uri: str) -> str:
    """A target a DBA has built on: views, grants, indexes, serial, trigger, comment."""
    run_load(items, sink_uri, SOURCE, TARGET, EXCHANGE)
    execute(
        sink_uri,
        """
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgflow_reader') THEN
            CREATE ROLE pgflow_reader; END IF;
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgflow_clerk') THEN
            CREATE ROLE pgflow_clerk; END IF;
        END $$;
        ALTER TABLE landing.items ADD COLUMN audit_id bigserial;
        CREATE TABLE landing.audit (n int);
        CREATE FUNCTION landing.count_insert() RETURNS trigger LANGUAGE plpgsql AS
          $$ BEGIN INSERT INTO landing.audit VALUES (1); RETURN NEW; END $$;
        CREATE TRIGGER items_audit AFTER INSERT ON landing.items
          FOR EACH ROW EXECUTE FUNCTION landing.count_insert();
        CREATE INDEX items_name_idx ON landing.items (lower(name)) WHERE price > 10;
        CREATE VIEW landing.expensive AS SELECT id, name FROM landing.items WHERE price > 100;
        CREATE VIEW landing.expensive_count AS SELECT count(*) AS n FROM landing.expensive;
        GRANT SELECT ON landing.items, landing.expensive TO pgflow_reader;
        GRANT SELECT (id, name), UPDATE (name) ON landing.items TO pgflow_clerk;
        COMMENT ON TABLE landing.items IS 'curated items';
        ALTER TABLE landing.items SET (fillfactor = 80);
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


def test_exchange_keeps_views_grants_indexes_sequences_and_triggers(items, dressed_target):
    sink = dressed_target
    grants_before = privileges(sink)
    indexes_before = fetch(
        sink, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'items' ORDER BY 1"
    )
    view_oid_before = fetch(sink, "SELECT 'landing.expensive'::regclass::oid")
    execute(
        items,
        "UPDATE items SET price = price * 10 WHERE id <= 50; DELETE FROM items WHERE id > 190",
    )
    execute(sink, "TRUNCATE landing.audit")

    result = run_load(items, sink, SOURCE, TARGET, EXCHANGE)

    assert result.rows == 190
    source_rows = fetch(items, "SELECT id, name, price FROM items ORDER BY id")
    assert fetch(sink, "SELECT id, name, price FROM landing.items ORDER BY id") == source_rows
    # The dependent views read the new table, and keep their identity and grants.
    expected = fetch(items, "SELECT count(*) FROM items WHERE price > 100")
    assert fetch(sink, "SELECT n FROM landing.expensive_count") == expected
    assert fetch(sink, "SELECT 'landing.expensive'::regclass::oid") == view_oid_before
    assert fetch(
        sink, "SELECT has_table_privilege('pgflow_reader', 'landing.expensive', 'SELECT')"
    ) == [(True,)]
    assert privileges(sink) == grants_before
    indexes_after = fetch(
        sink, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'items' ORDER BY 1"
    )
    assert indexes_after == indexes_before
    assert fetch(sink, "SELECT obj_description('landing.items'::regclass)") == [("curated items",)]
    assert fetch(sink, "SELECT reloptions FROM pg_class WHERE oid = 'landing.items'::regclass") == [
        (["fillfactor=80"],)
    ]
    # The serial's sequence now belongs to the new table and kept counting.
    owner = fetch(sink, "SELECT pg_get_serial_sequence('landing.items', 'audit_id')")
    assert owner == [("landing.items_audit_id_seq",)]
    execute(sink, "INSERT INTO landing.items (id, name) VALUES (1000, 'manual')")
    new_audit_id = fetch(sink, "SELECT audit_id FROM landing.items WHERE id = 1000")[0][0]
    assert new_audit_id > 200
    # The trigger lives on the new table (it fired for the manual insert, not for the load).
    assert fetch(sink, "SELECT count(*) FROM landing.audit") == [(1,)]
    leftovers = fetch(sink, "SELECT relname FROM pg_class WHERE relname LIKE '%%pgflow%%'")
    assert leftovers == []


def test_exchange_refuses_a_table_referenced_by_a_foreign_key(items, sink_uri):
    run_load(items, sink_uri, SOURCE, TARGET, EXCHANGE)
    execute(
        sink_uri,
        "CREATE TABLE landing.reviews (item_id int REFERENCES landing.items (id));"
        "INSERT INTO landing.reviews VALUES (1)",
    )
    before = table_text(sink_uri, "landing.items")
    execute(items, "UPDATE items SET name = 'x'")

    with pytest.raises(ExchangeRefused) as refused:
        run_load(items, sink_uri, SOURCE, TARGET, EXCHANGE)

    message = str(refused.value)
    assert "foreign key reviews_item_id_fkey on landing.reviews references it" in message
    assert "Nothing was changed" in message and "truncate_insert" in message
    assert table_text(sink_uri, "landing.items") == before


def test_exchange_refuses_a_dependent_materialized_view(items, sink_uri):
    run_load(items, sink_uri, SOURCE, TARGET, EXCHANGE)
    execute(sink_uri, "CREATE MATERIALIZED VIEW landing.mv AS SELECT count(*) FROM landing.items")
    with pytest.raises(ExchangeRefused, match=r"materialized view landing\.mv depends on it"):
        run_load(items, sink_uri, SOURCE, TARGET, EXCHANGE)
