"""partition_replace on a real cluster: native partition swaps and slices.

The target, the expected rows and the loads: partition_replace_support.
"""

from __future__ import annotations

import datetime

import pytest

from pgflow.sinks.partition_slice import PartitionSlice
from pgflow_tests.sinks.postgres.conftest import execute, fetch
from pgflow_tests.sinks.postgres.partition_replace_support import (
    COLUMNS,
    FEBRUARY,
    FEBRUARY_TO_APRIL,
    NEW_FEBRUARY,
    NEW_TWO_DAYS,
    assert_target_is_expected,
    deletes,
    ensure_roles,
    expect,
    leftovers,
    load,
    make_source,
    make_target,
    partition_oids,
    staged_dates,
    strategy,
    swap_steps,
    swapped,
)


def test_native_swap_replaces_the_partition_of_the_staged_values(source_uri, sink_uri):
    make_source(source_uri, NEW_FEBRUARY)
    make_target(sink_uri)
    expect(sink_uri, staged_dates(NEW_FEBRUARY), NEW_FEBRUARY)
    oids = dict(partition_oids(sink_uri))
    notices: list[str] = []

    result = load(source_uri, sink_uri, strategy(), notices=notices)

    assert result.rows == 58
    assert_target_is_expected(sink_uri)
    # February was swapped, nothing was deleted row by row.
    assert deletes(result) == []
    detach, attach = swapped(result)
    assert detach == 'ALTER TABLE "landing"."sales" DETACH PARTITION "landing"."sales_2024_02"'
    assert attach.startswith(
        'ALTER TABLE "landing"."sales" ATTACH PARTITION "landing"."sales_2024_02__pgflow_new_'
    )
    assert attach.endswith("FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')")
    # The CHECK made ATTACH skip its validation scan: the server says so at DEBUG1.
    new_name = attach.split('"."')[2].split('"')[0]
    assert (
        f'partition constraint for table "{new_name}" is implied by existing constraints' in notices
    )
    # Same partition names; only February is a new table; untouched partitions kept their OIDs.
    after = dict(partition_oids(sink_uri))
    assert sorted(after) == sorted(oids)
    assert after["landing.sales_2024_02"] != oids["landing.sales_2024_02"]
    assert after["landing.sales_2024_01"] == oids["landing.sales_2024_01"]
    assert after["landing.sales_2024_03"] == oids["landing.sales_2024_03"]
    # The new partition's primary key has the old name and belongs to the parent's.
    assert fetch(
        sink_uri,
        "SELECT indexrelid::regclass::text, inhparent::regclass::text FROM pg_index"
        " JOIN pg_inherits ON inhrelid = indexrelid"
        " WHERE indrelid = 'landing.sales_2024_02'::regclass",
    ) == [("landing.sales_2024_02_pkey", "landing.sales_pkey")]
    assert leftovers(sink_uri) == []


def test_native_swap_keeps_grants_comment_options_indexes_and_triggers(source_uri, sink_uri):
    make_source(source_uri, NEW_TWO_DAYS)
    make_target(sink_uri)
    ensure_roles(sink_uri)
    execute(
        sink_uri,
        """
        GRANT SELECT ON landing.sales_2024_02 TO pgflow_reader;
        GRANT SELECT (id, amount), UPDATE (amount) ON landing.sales_2024_02 TO pgflow_clerk;
        COMMENT ON TABLE landing.sales_2024_02 IS 'february';
        ALTER TABLE landing.sales_2024_02 SET (fillfactor = 70);
        CREATE INDEX sales_2024_02_store_idx ON landing.sales_2024_02 (lower(store));
        CREATE TABLE landing.audit (n int);
        CREATE FUNCTION landing.count_insert() RETURNS trigger LANGUAGE plpgsql AS
          $$ BEGIN INSERT INTO landing.audit VALUES (1); RETURN NEW; END $$;
        CREATE TRIGGER feb_audit AFTER INSERT ON landing.sales_2024_02
          FOR EACH ROW EXECUTE FUNCTION landing.count_insert();
        ALTER TABLE landing.sales_2024_02 REPLICA IDENTITY FULL;
    """,
    )
    grants_sql = """
        SELECT grantee, privilege_type, NULL FROM information_schema.role_table_grants
        WHERE table_name = 'sales_2024_02' AND grantee LIKE 'pgflow_%'
        UNION ALL SELECT grantee, privilege_type, column_name
        FROM information_schema.column_privileges
        WHERE table_name = 'sales_2024_02' AND grantee = 'pgflow_clerk' ORDER BY 1, 2, 3"""
    indexes_sql = (
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sales_2024_02' ORDER BY 1"
    )
    grants, indexes = fetch(sink_uri, grants_sql), fetch(sink_uri, indexes_sql)
    assert grants == [
        ("pgflow_clerk", "SELECT", "amount"),
        ("pgflow_clerk", "SELECT", "id"),
        ("pgflow_clerk", "UPDATE", "amount"),
        ("pgflow_reader", "SELECT", None),
    ]
    assert [name for name, _ in indexes] == ["sales_2024_02_pkey", "sales_2024_02_store_idx"]
    expect(
        sink_uri, "t.business_date >= '2024-02-01' AND t.business_date < '2024-03-01'", NEW_TWO_DAYS
    )

    result = load(source_uri, sink_uri, strategy("required"), FEBRUARY)

    assert len(swapped(result)) == 2
    assert_target_is_expected(sink_uri)
    assert fetch(sink_uri, grants_sql) == grants
    assert fetch(sink_uri, indexes_sql) == indexes
    assert fetch(
        sink_uri,
        "SELECT obj_description(oid), reloptions, relreplident FROM pg_class"
        " WHERE oid = 'landing.sales_2024_02'::regclass",
    ) == [("february", ["fillfactor=70"], "f")]
    # The trigger is back on the partition (it did not fire for the swapped-in rows).
    execute(sink_uri, "INSERT INTO landing.sales VALUES (9999, '2024-02-05', 'x', 1, 1)")
    assert fetch(sink_uri, "SELECT count(*) FROM landing.audit") == [(1,)]
    assert leftovers(sink_uri) == []


def test_slice_replaces_exactly_its_window_and_empties_partitions_without_rows(
    source_uri, sink_uri
):
    # Rows on two February days only: with a slice, all of February and March is replaced.
    make_source(source_uri, NEW_TWO_DAYS)
    make_target(sink_uri)
    expect(
        sink_uri, "t.business_date >= '2024-02-01' AND t.business_date < '2024-04-01'", NEW_TWO_DAYS
    )

    result = load(source_uri, sink_uri, strategy(), FEBRUARY_TO_APRIL)

    assert result.rows == 5
    assert_target_is_expected(sink_uri)
    assert fetch(sink_uri, "SELECT count(*) FROM landing.sales_2024_03") == [(0,)]
    assert fetch(sink_uri, "SELECT count(*) FROM landing.sales_2024_01") == [(62,)]
    assert swap_steps(result) == [
        ("DETACH", "sales_2024_02"),
        ("ATTACH", "sales_2024_02__pgflow_new_*"),
        ("DETACH", "sales_2024_03"),
        ("ATTACH", "sales_2024_03__pgflow_new_*"),
    ]
    assert deletes(result) == []


def test_slice_with_an_empty_source_empties_the_window(source_uri, sink_uri):
    empty = NEW_TWO_DAYS + " WHERE false"
    make_source(source_uri, empty)
    make_target(sink_uri)
    expect(sink_uri, "t.business_date >= '2024-03-01' AND t.business_date < '2024-04-01'", empty)

    result = load(
        source_uri,
        sink_uri,
        strategy("required"),
        PartitionSlice(datetime.date(2024, 3, 1), datetime.date(2024, 4, 1)),
    )

    assert result.rows == 0
    assert_target_is_expected(sink_uri)
    assert len(swapped(result)) == 2


@pytest.mark.parametrize("native_mode", ["required", "disabled"])
def test_list_partitions_including_the_null_partition_are_replaced_whole(
    source_uri, sink_uri, native_mode
):
    rows = "SELECT 3000 + g, '2024-01-05'::date, (ARRAY['north', NULL])[1 + g % 2], 1, g FROM generate_series(1, 6) g"
    make_source(source_uri, rows)
    make_target(
        sink_uri,
        f"""
        CREATE SCHEMA landing;
        CREATE TABLE landing.sales ({COLUMNS}) PARTITION BY LIST (store);
        CREATE TABLE landing.sales_north PARTITION OF landing.sales
          FOR VALUES IN ('north', 'Nörth "east" ''x''');
        CREATE TABLE landing.sales_old PARTITION OF landing.sales FOR VALUES IN ('old');
        CREATE TABLE landing.sales_none PARTITION OF landing.sales FOR VALUES IN (NULL);
        """,
    )
    execute(
        sink_uri,
        "INSERT INTO landing.sales VALUES (1, '2024-01-01', 'north', 1, 1), (2, '2024-01-01', NULL, 1, 2),"
        " (3, '2024-01-02', 'Nörth \"east\" ''x''', 1, 3), (4, '2024-01-02', 'old', 1, 4)",
    )
    # The source sends no 'Nörth "east" ...' row: it goes with its partition.
    expect(sink_uri, "t.store IN ('north', 'Nörth \"east\" ''x''') OR t.store IS NULL", rows)

    result = load(source_uri, sink_uri, strategy(native_mode, column="store"))

    assert result.rows == 6
    assert_target_is_expected(sink_uri)
    assert len(swapped(result)) == (4 if native_mode == "required" else 0)
    assert fetch(sink_uri, "SELECT count(*) FROM landing.sales_none") == [(3,)]
    assert fetch(sink_uri, "SELECT DISTINCT store FROM landing.sales_north") == [("north",)]
