"""partition_replace on a real cluster: the delete/insert fallback; a touched partition is
replaced whole, by a swap or by the fallback."""

from __future__ import annotations

import re

import pytest

from pgflow.config.model import TableName
from pgflow_tests.sinks.postgres.conftest import execute, fetch, table_text
from pgflow_tests.sinks.postgres.partition_replace_support import (
    FEBRUARY,
    NEW_FEBRUARY,
    NEW_TWO_DAYS,
    PLAIN_TARGET,
    assert_target_is_expected,
    deletes,
    expect,
    leftovers,
    load,
    load_named,
    make_source,
    make_target,
    partition_oids,
    staged_dates,
    strategy,
    swap_steps,
    swapped,
)


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
