"""partition_replace on a real cluster: native partition swaps, the delete/insert fallback, slices.

The target is built by each test (pgflow's first load creates plain tables): sales by day,
RANGE-partitioned by month over Jan-Mar 2024, two old rows per day. Before each load `expect`
builds the expected target in the sink in plain SQL, independently of the strategy: the old
rows outside what is replaced, plus the new rows from the same generator the source is filled
with. After the load the target must equal it row for row.
"""

from __future__ import annotations

import datetime
import re

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sinks.postgres.apply import PartitionSlice
from pgflow.sinks.postgres.partition_bounds import bound_datums
from pgflow.sinks.postgres.partition_replace import (
    NativePartitionRefused,
    PartitionMissing,
    PartitionSliceError,
)
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.sinks.postgres.conftest import execute, fetch, table_text

SOURCE = TableName("public", "sales")
TARGET = TableName("landing", "sales")
ORDER = "business_date, id"
COLUMNS = "id int NOT NULL, business_date date, store text, store_id int, amount numeric(10,2)"

PARTITIONED_TARGET = f"""
CREATE SCHEMA landing;
CREATE TABLE landing.stores (id int PRIMARY KEY);
INSERT INTO landing.stores VALUES (1), (2);
CREATE TABLE landing.sales ({COLUMNS}, PRIMARY KEY (business_date, id))
  PARTITION BY RANGE (business_date);
CREATE TABLE landing.sales_2024_01 PARTITION OF landing.sales
  FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE landing.sales_2024_02 PARTITION OF landing.sales
  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
CREATE TABLE landing.sales_2024_03 PARTITION OF landing.sales
  FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
"""
PLAIN_TARGET = f"CREATE SCHEMA landing; CREATE TABLE landing.sales ({COLUMNS});"
# Two old rows per day, 2024-01-01 .. 2024-03-31 (91 days).
OLD_ROWS = """
INSERT INTO landing.sales SELECT g, '2024-01-01'::date + g % 91, 'old', 2, g
FROM generate_series(1, 182) g
"""
# New rows on every day of February (2024 has 29): a complete replacement of those days.
NEW_FEBRUARY = """
SELECT 1000 + g, '2024-02-01'::date + g % 29, 'new', 1, (g * 1.5)::numeric(10,2)
FROM generate_series(1, 58) g
"""
# New rows on two days of February only.
NEW_TWO_DAYS = """
SELECT 2000 + g, '2024-02-10'::date + g % 2, 'new', 1, g::numeric(10,2)
FROM generate_series(1, 5) g
"""
FEBRUARY_TO_APRIL = PartitionSlice(datetime.date(2024, 2, 1), datetime.date(2024, 4, 1))
FEBRUARY = PartitionSlice(datetime.date(2024, 2, 1), datetime.date(2024, 3, 1))


def strategy(native_mode: str = "auto", column: str = "business_date") -> StrategySpec:
    return StrategySpec(
        mode="partition_replace",
        partition_column=column,
        native_mode=native_mode,  # type: ignore[arg-type]
    )


def make_source(source_uri: str, rows: str) -> None:
    execute(source_uri, f"CREATE TABLE public.sales ({COLUMNS}); INSERT INTO public.sales {rows}")


def make_target(sink_uri: str, ddl: str = PARTITIONED_TARGET) -> None:
    execute(sink_uri, ddl)
    execute(sink_uri, OLD_ROWS)


def expect(sink_uri: str, replaced: str, new_rows: str) -> None:
    """public.expected := target rows for which `replaced` is not true, plus the new rows."""
    execute(
        sink_uri,
        f"CREATE TABLE public.expected AS SELECT * FROM landing.sales t WHERE ({replaced})"
        f" IS NOT TRUE; INSERT INTO public.expected {new_rows}",
    )


def staged_dates(new_rows: str) -> str:
    """`replaced` for a load without a slice: the dates the new rows carry, NULL included."""
    return (
        f"EXISTS (SELECT FROM ({new_rows}) AS n(id, d, s, si, a)"
        f" WHERE n.d IS NOT DISTINCT FROM t.business_date)"
    )


def assert_target_is_expected(sink_uri: str) -> None:
    assert table_text(sink_uri, "landing.sales", ORDER) == table_text(
        sink_uri, "public.expected", ORDER
    )


def load(
    source_uri: str,
    sink_uri: str,
    spec: StrategySpec,
    partition_slice: PartitionSlice | None = None,
    notices: list[str] | None = None,
) -> LoadResult:
    """load_table as the IO manager calls it; `notices` collects the sink's DEBUG1 messages."""
    options = "-c client_min_messages=debug1" if notices is not None else ""
    with (
        psycopg.connect(source_uri) as src,
        psycopg.connect(sink_uri, autocommit=True, options=options) as dst,
    ):
        if notices is not None:
            dst.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        source = PostgresTableSource(src, SOURCE)
        return load_table(dst, source, TARGET, spec, partition_slice=partition_slice)


def load_named(
    source_uri: str, sink_uri: str, source: TableName, target: TableName, spec: StrategySpec
) -> LoadResult:
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        return load_table(dst, PostgresTableSource(src, source), target, spec)


def swapped(result: LoadResult) -> list[str]:
    return [s for s in result.statements if "DETACH PARTITION" in s or "ATTACH PARTITION" in s]


def swap_steps(result: LoadResult) -> list[tuple[str, str]]:
    """(DETACH|ATTACH, partition) in order; the random tag of new partitions shown as *."""
    steps = []
    for statement in swapped(result):
        match = re.search(r'(DETACH|ATTACH) PARTITION "landing"\."([^"]+)"', statement)
        assert match is not None, statement
        steps.append((match[1], re.sub(r"_new_[0-9a-f]{8}$", "_new_*", match[2])))
    return steps


def deletes(result: LoadResult) -> list[str]:
    return [s for s in result.statements if s.startswith("DELETE FROM")]


def partition_oids(sink_uri: str) -> list[tuple]:
    return fetch(
        sink_uri,
        "SELECT inhrelid::regclass::text, inhrelid FROM pg_inherits"
        " WHERE inhparent = 'landing.sales'::regclass ORDER BY 1",
    )


def leftovers(sink_uri: str) -> list[tuple]:
    return fetch(
        sink_uri,
        "SELECT relname FROM pg_class WHERE relname LIKE '%pgflow%'"
        " UNION ALL SELECT conname FROM pg_constraint WHERE conname LIKE 'pgflow%'",
    )


def ensure_roles(sink_uri: str) -> None:
    execute(
        sink_uri,
        """
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgflow_reader') THEN
            CREATE ROLE pgflow_reader; END IF;
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgflow_clerk') THEN
            CREATE ROLE pgflow_clerk; END IF;
        END $$;
    """,
    )


# --- native swaps ----------------------------------------------------------------------------


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


# --- delete/insert fallback -----------------------------------------------------------------


def test_plain_target_deletes_and_inserts_only_the_staged_values(source_uri, sink_uri):
    make_source(source_uri, NEW_TWO_DAYS)
    make_target(sink_uri, PLAIN_TARGET)
    expect(sink_uri, staged_dates(NEW_TWO_DAYS), NEW_TWO_DAYS)

    result = load(source_uri, sink_uri, strategy())

    assert result.rows == 5
    assert_target_is_expected(sink_uri)
    assert swapped(result) == []
    (delete,) = deletes(result)  # no NULL staged: no "IS NULL" delete
    assert re.fullmatch(
        r'DELETE FROM "landing"\."sales" AS t WHERE "t"\."business_date" IN'
        r' \(SELECT "s"\."business_date" FROM "_pgflow_staging"\."sales__[0-9a-f]{8}" AS s\)',
        delete,
    )
    assert any("is not a partitioned table" in s for s in result.statements)


def test_plain_target_with_a_slice_deletes_the_window(source_uri, sink_uri):
    make_source(source_uri, NEW_TWO_DAYS)
    make_target(sink_uri, PLAIN_TARGET)
    expect(
        sink_uri, "t.business_date >= '2024-02-01' AND t.business_date < '2024-03-01'", NEW_TWO_DAYS
    )

    result = load(source_uri, sink_uri, strategy(), FEBRUARY)

    assert_target_is_expected(sink_uri)
    assert deletes(result) == [
        'DELETE FROM "landing"."sales" AS t WHERE "t"."business_date" >= \'2024-02-01\'::date'
        ' AND "t"."business_date" < \'2024-03-01\'::date'
    ]


def test_null_partition_values_replace_null_rows_on_a_plain_target(source_uri, sink_uri):
    rows = "SELECT 4000 + g, CASE WHEN g < 3 THEN NULL ELSE '2024-03-03'::date END, 'new', 1, g FROM generate_series(1, 4) g"
    make_source(source_uri, rows)
    make_target(sink_uri, PLAIN_TARGET)
    execute(
        sink_uri,
        "INSERT INTO landing.sales VALUES (500, NULL, 'old null', 1, 1), (501, NULL, 'old null', 1, 2)",
    )
    expect(sink_uri, staged_dates(rows), rows)

    result = load(source_uri, sink_uri, strategy())

    assert_target_is_expected(sink_uri)
    assert fetch(sink_uri, "SELECT count(*) FROM landing.sales WHERE business_date IS NULL") == [
        (2,)
    ]
    assert 'DELETE FROM "landing"."sales" AS t WHERE "t"."business_date" IS NULL' in deletes(result)


def test_native_mode_disabled_deletes_and_inserts_on_a_partitioned_target(source_uri, sink_uri):
    make_source(source_uri, NEW_FEBRUARY)
    make_target(sink_uri)
    expect(sink_uri, staged_dates(NEW_FEBRUARY), NEW_FEBRUARY)
    oids = partition_oids(sink_uri)

    result = load(source_uri, sink_uri, strategy("disabled"))

    assert_target_is_expected(sink_uri)
    assert swapped(result) == []
    assert len(deletes(result)) == 1
    assert partition_oids(sink_uri) == oids


FEBRUARY_BOUND = (
    "((business_date IS NOT NULL) AND (business_date >= '2024-02-01'::date)"
    " AND (business_date < '2024-03-01'::date))"
)


@pytest.mark.parametrize("native_mode", ["required", "auto", "disabled"])
def test_a_touched_partition_is_replaced_whole_by_swap_and_by_fallback(
    source_uri, sink_uri, native_mode
):
    # The source sends two February days: all of February (27 other days included) becomes
    # exactly those rows, whether swapped or deleted by its bound; January and March stay.
    make_source(source_uri, NEW_TWO_DAYS)
    make_target(sink_uri)
    expect(
        sink_uri, "t.business_date >= '2024-02-01' AND t.business_date < '2024-03-01'", NEW_TWO_DAYS
    )
    oids = dict(partition_oids(sink_uri))

    result = load(source_uri, sink_uri, strategy(native_mode))

    assert result.rows == 5
    assert_target_is_expected(sink_uri)
    assert fetch(sink_uri, "SELECT count(*), min(store) FROM landing.sales_2024_02") == [(5, "new")]
    after = dict(partition_oids(sink_uri))
    assert after["landing.sales_2024_01"] == oids["landing.sales_2024_01"]
    assert after["landing.sales_2024_03"] == oids["landing.sales_2024_03"]
    if native_mode == "disabled":
        assert swapped(result) == []
        assert deletes(result) == [f'DELETE FROM "landing"."sales" AS t WHERE {FEBRUARY_BOUND}']
        assert after == oids
    else:
        assert deletes(result) == []
        assert swap_steps(result) == [
            ("DETACH", "sales_2024_02"),
            ("ATTACH", "sales_2024_02__pgflow_new_*"),
        ]
    assert leftovers(sink_uri) == []


HOSTILE_PARTITIONED = """
CREATE SCHEMA "Pay Ments";
CREATE TABLE "Pay Ments"."Payments ü" (id int NOT NULL, "Paid At" timestamptz NOT NULL,
  "Note's" text, amount numeric) PARTITION BY RANGE ("Paid At");
CREATE TABLE "Pay Ments"."2024 ""Jan"" ü" PARTITION OF "Pay Ments"."Payments ü"
  FOR VALUES FROM ('2024-01-01 00:00+00') TO ('2024-02-01 00:00+00');
CREATE TABLE "Pay Ments"."2024 Feb ü" PARTITION OF "Pay Ments"."Payments ü"
  FOR VALUES FROM ('2024-02-01 00:00+00') TO ('2024-03-01 00:00+00');
CREATE TABLE "Pay Ments"."2024 Mar" PARTITION OF "Pay Ments"."Payments ü"
  FOR VALUES FROM ('2024-03-01 00:00+00') TO ('2024-04-01 00:00+00');
"""
HOSTILE_SOURCE = """
CREATE TABLE public.payments (id int NOT NULL, "Paid At" timestamptz NOT NULL, "Note's" text,
  amount numeric);
INSERT INTO public.payments SELECT g, '2024-01-01 00:00+00'::timestamptz + g * interval '7 hours',
  'it''s ' || g, g * 3.14159265358979
FROM generate_series(0, 287) g;
INSERT INTO public.payments VALUES (9001, '2024-02-29 23:59:59.999999+00', '"edge"', 1e-20),
  (9002, '2024-03-01 00:00+00', 'ünï', 'NaN');
"""


@pytest.mark.parametrize("native_mode", ["required", "disabled"])
def test_a_full_read_after_source_deletes_leaves_the_target_equal_to_the_source(
    source_uri, sink_uri, native_mode
):
    # The case: monthly partitions on a timestamptz column; the source deletes rows in
    # February (some days entirely); the next full read must drop them from the target too.
    execute(source_uri, HOSTILE_SOURCE)
    execute(sink_uri, HOSTILE_PARTITIONED)
    source = TableName("public", "payments")
    target = TableName("Pay Ments", "Payments ü")
    spec = strategy(native_mode, column="Paid At")
    order = '"Paid At", id'
    load_named(source_uri, sink_uri, source, target, spec)
    assert table_text(sink_uri, '"Pay Ments"."Payments ü"', order) == table_text(
        source_uri, "public.payments", order
    )
    execute(
        source_uri,
        "DELETE FROM public.payments WHERE \"Paid At\" >= '2024-02-10 00:00+00'"
        " AND \"Paid At\" < '2024-02-20 00:00+00' OR id % 5 = 0",
    )

    result = load_named(source_uri, sink_uri, source, target, spec)

    assert table_text(sink_uri, '"Pay Ments"."Payments ü"', order) == table_text(
        source_uri, "public.payments", order
    )
    assert fetch(
        sink_uri,
        'SELECT count(*) FROM "Pay Ments"."Payments ü" WHERE "Paid At" >= \'2024-02-10 00:00+00\''
        " AND \"Paid At\" < '2024-02-20 00:00+00'",
    ) == [(0,)]
    assert result.rows == fetch(source_uri, "SELECT count(*) FROM public.payments")[0][0]
    assert len(swapped(result)) == (6 if native_mode == "required" else 0)
    assert len(deletes(result)) == (0 if native_mode == "required" else 3)


def test_a_touched_default_partition_is_replaced_whole_by_the_fallback(source_uri, sink_uri):
    rows = "SELECT 7000, '2024-04-15'::date, 'new', 1, 1.00"
    make_source(source_uri, rows)
    make_target(sink_uri)
    execute(
        sink_uri,
        "CREATE TABLE landing.sales_other PARTITION OF landing.sales DEFAULT;"
        " INSERT INTO landing.sales VALUES (600, '2024-04-01', 'old', 1, 1),"
        " (601, '2025-01-01', 'old', 1, 1), (602, '2023-12-31', 'old', 1, 1)",
    )
    # The default partition holds every date outside Jan-Mar 2024: it is replaced as a whole.
    expect(sink_uri, "t.business_date < '2024-01-01' OR t.business_date >= '2024-04-01'", rows)

    result = load(source_uri, sink_uri, strategy())

    assert_target_is_expected(sink_uri)
    assert fetch(sink_uri, "SELECT id FROM landing.sales_other") == [(7000,)]
    assert fetch(sink_uri, "SELECT count(*) FROM landing.sales") == [(183,)]
    assert swapped(result) == []
    assert any("has a default partition" in s for s in result.statements if s.startswith("/*"))


# --- refusals and failures leave the target as it was ---------------------------------------


def test_required_refuses_a_plain_target_before_any_change(source_uri, sink_uri):
    make_source(source_uri, NEW_FEBRUARY)
    make_target(sink_uri, PLAIN_TARGET)
    before = table_text(sink_uri, "landing.sales", ORDER)

    with pytest.raises(NativePartitionRefused) as refused:
        load(source_uri, sink_uri, strategy("required"))

    message = str(refused.value)
    assert "landing.sales is not a partitioned table" in message
    assert "PARTITION BY RANGE (business_date)" in message and "native_mode: auto" in message
    assert table_text(sink_uri, "landing.sales", ORDER) == before


@pytest.mark.parametrize(
    ("native_mode", "window"),
    [("required", None), ("auto", None), ("disabled", None), ("auto", "may-july")],
)
def test_staged_values_without_a_partition_fail_before_any_change(
    source_uri, sink_uri, native_mode, window
):
    rows = (
        NEW_FEBRUARY
        + " UNION ALL SELECT 9000 + g, '2024-05-01'::date + g, 'new', 1, 1"
        + " FROM generate_series(0, 6) g"
    )
    partition_slice = None
    if window is None:
        rows += " UNION ALL SELECT 8999, NULL, 'new', 1, 1"
        shown = "NULL, '2024-05-01', '2024-05-02', '2024-05-03', '2024-05-04' and 3 more"
    else:
        rows = rows.replace(NEW_FEBRUARY + " UNION ALL", "")
        partition_slice = PartitionSlice(datetime.date(2024, 5, 1), datetime.date(2024, 8, 1))
        shown = "'2024-05-01', '2024-05-02', '2024-05-03', '2024-05-04', '2024-05-05' and 2 more"
    make_source(source_uri, rows)
    make_target(sink_uri)
    before = table_text(sink_uri, "landing.sales", ORDER)

    with pytest.raises(PartitionMissing) as error:
        load(source_uri, sink_uri, strategy(native_mode), partition_slice)

    assert str(error.value) == (
        f"the source has rows whose business_date has no partition in landing.sales: {shown};"
        " nothing was written. The partition must exist before the load: create it"
        " (CREATE TABLE ... PARTITION OF landing.sales FOR VALUES ...), or filter those rows"
        " out of the source"
    )
    assert table_text(sink_uri, "landing.sales", ORDER) == before


def test_a_value_without_a_sub_partition_fails_before_any_change(source_uri, sink_uri):
    # February is sub-partitioned and only its first half has a leaf: Feb 20 fits February
    # but no table can hold it.
    rows = NEW_TWO_DAYS + " UNION ALL SELECT 9000, '2024-02-20', 'new', 1, 1"
    make_source(source_uri, rows)
    execute(
        sink_uri,
        PARTITIONED_TARGET.replace(
            "CREATE TABLE landing.sales_2024_02 PARTITION OF landing.sales\n"
            "  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');",
            "CREATE TABLE landing.sales_2024_02 PARTITION OF landing.sales\n"
            "  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01') PARTITION BY RANGE (business_date);"
            ' CREATE TABLE landing."Feb 1st half" PARTITION OF landing.sales_2024_02'
            " FOR VALUES FROM ('2024-02-01') TO ('2024-02-16');",
        ),
    )
    execute(sink_uri, "INSERT INTO landing.sales VALUES (1, '2024-02-03', 'old', 1, 1)")
    before = table_text(sink_uri, "landing.sales", ORDER)

    with pytest.raises(PartitionMissing) as error:
        load(source_uri, sink_uri, strategy())

    assert str(error.value).startswith(
        "the source has rows whose business_date has no partition in landing.sales:"
        " '2024-02-20'; nothing was written."
    )
    assert table_text(sink_uri, "landing.sales", ORDER) == before


def test_required_refuses_a_slice_that_cuts_a_partition(source_uri, sink_uri):
    make_source(source_uri, NEW_TWO_DAYS)
    make_target(sink_uri)
    half = PartitionSlice(datetime.date(2024, 2, 1), datetime.date(2024, 2, 15))
    with pytest.raises(NativePartitionRefused, match=r"sales_2024_02 .* extends beyond the slice"):
        load(source_uri, sink_uri, strategy("required"), half)


SUB_PARTITIONED_FEBRUARY = """
ALTER TABLE landing.sales DETACH PARTITION landing.sales_2024_02;
CREATE TABLE landing.feb (LIKE landing.sales INCLUDING ALL) PARTITION BY RANGE (business_date);
CREATE TABLE landing.feb_all PARTITION OF landing.feb
  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
INSERT INTO landing.feb SELECT * FROM landing.sales_2024_02;
DROP TABLE landing.sales_2024_02;
ALTER TABLE landing.feb RENAME TO sales_2024_02;
ALTER TABLE landing.sales ATTACH PARTITION landing.sales_2024_02
  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
"""


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (
            "CREATE TABLE landing.sales_other PARTITION OF landing.sales DEFAULT",
            "landing.sales has a default partition landing.sales_other",
        ),
        (
            SUB_PARTITIONED_FEBRUARY,
            "partition landing.sales_2024_02 is itself partitioned (sub-partitioning)",
        ),
        (
            "CREATE VIEW landing.feb AS SELECT * FROM landing.sales_2024_02",
            "partition landing.sales_2024_02 cannot be swapped without breaking what uses it:"
            " view landing.feb depends on it",
        ),
        (
            "CREATE TABLE landing.refunds (d date, id int);"
            " ALTER TABLE landing.refunds ADD FOREIGN KEY (d, id) REFERENCES landing.sales",
            "foreign key refunds_d_id_fkey on landing.refunds references it",
        ),
    ],
    ids=["default-partition", "sub-partitioned", "dependent-view", "inbound-foreign-key"],
)
def test_required_refuses_what_a_swap_cannot_handle_and_auto_falls_back(
    source_uri, sink_uri, setup, reason
):
    make_source(source_uri, NEW_FEBRUARY)
    make_target(sink_uri)
    execute(sink_uri, setup)
    before = table_text(sink_uri, "landing.sales", ORDER)

    with pytest.raises(NativePartitionRefused) as refused:
        load(source_uri, sink_uri, strategy("required"))

    assert reason in str(refused.value)
    assert table_text(sink_uri, "landing.sales", ORDER) == before
    # auto deletes/inserts instead, says why, and gives the same rows a swap would have.
    expect(sink_uri, staged_dates(NEW_FEBRUARY), NEW_FEBRUARY)
    result = load(source_uri, sink_uri, strategy())
    assert_target_is_expected(sink_uri)
    assert swapped(result) == []
    assert any(reason in s for s in result.statements if s.startswith("/*"))


def test_rows_outside_the_slice_fail_before_any_change(source_uri, sink_uri):
    rows = NEW_TWO_DAYS + " UNION ALL SELECT 9000, '2024-01-31', 'new', 1, 1"
    make_source(source_uri, rows)
    make_target(sink_uri)
    before = table_text(sink_uri, "landing.sales", ORDER)

    with pytest.raises(PartitionSliceError) as error:
        load(source_uri, sink_uri, strategy(), FEBRUARY)

    assert "e.g. business_date = 2024-01-31" in str(error.value)
    assert "nothing was written" in str(error.value)
    assert table_text(sink_uri, "landing.sales", ORDER) == before


def test_a_failure_between_swaps_leaves_the_target_as_before(source_uri, sink_uri):
    # March's new partition breaks the parent's foreign key: its ATTACH fails after February
    # has already been detached, swapped in and dropped.
    rows = NEW_TWO_DAYS + " UNION ALL SELECT 9000, '2024-03-03', 'new', 99, 1"
    make_source(source_uri, rows)
    make_target(sink_uri)
    execute(
        sink_uri, "ALTER TABLE landing.sales ADD FOREIGN KEY (store_id) REFERENCES landing.stores"
    )
    before = table_text(sink_uri, "landing.sales", ORDER)
    oids = partition_oids(sink_uri)

    with pytest.raises(psycopg.errors.ForeignKeyViolation) as error:
        load(source_uri, sink_uri, strategy(), FEBRUARY_TO_APRIL)

    assert 'table "sales_2024_03__pgflow_new_' in str(error.value)
    assert table_text(sink_uri, "landing.sales", ORDER) == before
    assert partition_oids(sink_uri) == oids
    assert leftovers(sink_uri) == []


@pytest.mark.parametrize(
    ("bound", "strategy_code", "datums"),
    [
        (
            "FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')",
            "r",
            [("lo", "'2024-01-01'"), ("hi", "'2024-02-01'")],
        ),
        ("FOR VALUES FROM (MINVALUE) TO ('-5')", "r", [("lo", None), ("hi", "'-5'")]),
        ("FOR VALUES FROM (10) TO (MAXVALUE)", "r", [("lo", "10"), ("hi", None)]),
        (
            "FOR VALUES IN ('a', 'it''s', NULL, 'x) TO (y')",
            "l",
            [("v", "'a'"), ("v", "'it''s'"), ("v", None), ("v", "'x) TO (y'")],
        ),
        ("FOR VALUES FROM ('a', 1) TO ('b', 2)", "r", None),
        ("FOR VALUES IN ('unterminated)", "l", None),
        ("DEFAULT", "l", None),
    ],
)
def test_partition_bounds_are_read_as_constants(bound, strategy_code, datums):
    assert bound_datums(bound, strategy_code) == datums
