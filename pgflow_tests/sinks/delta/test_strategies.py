"""Each Delta strategy against an independent reference computed from the source with SQL."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from deltalake import DeltaTable

from pgflow.config.model import StrategySpec
from pgflow.sinks.delta import scan_delta_table
from pgflow.sinks.delta.partition_replace import PartitionMismatch
from pgflow.sinks.delta.predicates import RowsOutsidePredicate
from pgflow.sinks.delta.table import SchemaChanged
from pgflow.sinks.partition_slice import PartitionSlice
from pgflow.sinks.postgres.keys import DuplicateKeys
from pgflow.sinks.postgres.replace import InvalidPredicate
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow_tests.sinks.delta.conftest import delta_rows, execute, fetch, run_delta

ORDERS = """
CREATE TABLE orders (
    id bigint PRIMARY KEY, customer text, amount numeric(12,2), status text,
    order_day date, updated_at timestamptz NOT NULL
);
INSERT INTO orders
SELECT g, 'c' || g % 17, round((g * 1.37)::numeric, 2), (ARRAY['new', 'paid'])[1 + g % 2],
       '2024-01-01'::date + g % 5, '2024-01-01 00:00+00'::timestamptz + g * interval '1 minute'
FROM generate_series(1, 200) g;
"""
COLUMNS = "id, customer, amount, status, order_day, updated_at"
MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))


@pytest.fixture
def orders(source_uri: str) -> str:
    execute(source_uri, ORDERS)
    return source_uri


def reference(uri: str, where: str = "true") -> list[tuple]:
    return fetch(uri, f"SELECT {COLUMNS} FROM orders WHERE {where} ORDER BY id")


def test_full_refresh_makes_the_table_the_source(orders, tmp_path):
    path = tmp_path / "orders"
    first = run_delta(orders, path)
    assert first.created_table and first.rows == first.rows_read == 200
    assert delta_rows(path) == reference(orders)

    execute(orders, "DELETE FROM orders WHERE id % 3 = 0; UPDATE orders SET status = 'x'")
    execute(orders, "ALTER TABLE orders ADD COLUMN note text DEFAULT 'n'")
    second = run_delta(orders, path)

    assert (second.version_before, second.version_after) == (0, 1)
    assert delta_rows(path) == fetch(orders, f"SELECT {COLUMNS}, note FROM orders ORDER BY id")
    assert second.files_added and second.bytes_written > 0


def test_append_adds_every_row_read(orders, tmp_path):
    path = tmp_path / "orders"
    run_delta(orders, path, StrategySpec(mode="incremental_append"))
    result = run_delta(orders, path, StrategySpec(mode="incremental_append"))

    assert result.rows == 200
    assert delta_rows(path, ["id", "status"]) == sorted(reference(orders) * 2)


def test_append_only_new_rows_inserts_unknown_keys_only(orders, tmp_path):
    path = tmp_path / "orders"
    strategy = StrategySpec(mode="incremental_append", unique_key=("id",), only_new_rows=True)
    run_delta(orders, path, strategy)
    before = reference(orders)
    execute(orders, "UPDATE orders SET status = 'changed' WHERE id <= 10")
    execute(orders, "INSERT INTO orders SELECT g, 'new', 1, 'new', '2024-02-01', now()"
            " FROM generate_series(201, 205) g")  # fmt: skip

    result = run_delta(orders, path, strategy)

    assert result.rows == 5
    assert delta_rows(path) == before + reference(orders, "id > 200")  # updates not applied


def test_merge_updates_changed_rows_only_and_inserts_new_ones(orders, tmp_path):
    path = tmp_path / "orders"
    run_delta(orders, path, MERGE)
    execute(orders, "UPDATE orders SET amount = amount + 1 WHERE id <= 7")
    execute(orders, "UPDATE orders SET status = status WHERE id BETWEEN 8 AND 20")  # no change
    execute(orders, "UPDATE orders SET customer = NULL WHERE id = 21")  # to NULL is a change
    execute(orders, "INSERT INTO orders VALUES (500, 'z', 5, 'new', '2024-01-02', now())")
    deleted = reference(orders, "id = 100")
    execute(orders, "DELETE FROM orders WHERE id = 100")  # merges do not delete

    result = run_delta(orders, path, MERGE)

    assert result.metrics["num_target_rows_updated"] == 8
    assert result.metrics["num_target_rows_inserted"] == 1
    assert result.rows == 9
    expected = sorted(reference(orders) + deleted)
    assert delta_rows(path) == expected


def test_merge_matches_null_keys(source_uri, tmp_path):
    execute(source_uri, "CREATE TABLE orders (id int, region text, qty int)")
    execute(source_uri, "INSERT INTO orders VALUES (1, NULL, 1), (2, 'eu', 2)")
    strategy = StrategySpec(mode="incremental_merge", unique_key=("region",))
    run_delta(source_uri, tmp_path / "t", strategy)
    execute(source_uri, "UPDATE orders SET qty = qty * 10")

    result = run_delta(source_uri, tmp_path / "t", strategy)

    assert (
        result.metrics["num_target_rows_updated"],
        result.metrics["num_target_rows_inserted"],
    ) == (2, 0)
    assert delta_rows(tmp_path / "t") == [(1, None, 10), (2, "eu", 20)]


def test_duplicate_keys_fail_before_anything_is_written(orders, tmp_path):
    path = tmp_path / "orders"
    run_delta(orders, path, MERGE)
    execute(orders, "ALTER TABLE orders DROP CONSTRAINT orders_pkey")
    execute(orders, f"INSERT INTO orders SELECT {COLUMNS} FROM orders WHERE id IN (3, 4)")

    with pytest.raises(DuplicateKeys, match=r"e\.g\. 3 x2, 4 x2; nothing was written.*keep_last"):
        run_delta(orders, path, MERGE)
    assert DeltaTable(str(path)).version() == 0


def test_keep_last_keeps_the_row_with_the_latest_cursor(orders, tmp_path):
    execute(orders, "ALTER TABLE orders DROP CONSTRAINT orders_pkey")
    execute(orders, "INSERT INTO orders SELECT id, 'later', amount, status, order_day,"
            " updated_at + interval '1 day' FROM orders WHERE id <= 5")  # fmt: skip
    execute(orders, "INSERT INTO orders SELECT id, 'earlier', amount, status, order_day,"
            " updated_at - interval '1 day' FROM orders WHERE id <= 5 AND customer <> 'later'")  # fmt: skip
    strategy = StrategySpec(
        mode="incremental_merge", unique_key=("id",), duplicate_policy="keep_last"
    )

    def cursor(conn, table):
        return ColumnCursorSource(conn, table, "updated_at")

    result = run_delta(orders, tmp_path / "t", strategy, make_source=cursor)

    assert result.rows_read == 200
    expected = fetch(
        orders, f"SELECT DISTINCT ON (id) {COLUMNS} FROM orders ORDER BY id, updated_at DESC"
    )
    assert delta_rows(tmp_path / "t") == expected
    assert {r[1] for r in expected if r[0] <= 5} == {"later"}


def test_keep_last_orders_by_the_cursor_not_by_how_the_read_sends_it(source_uri, tmp_path):
    # The read sends timestamps as microseconds since 1970: as text, 9 s sorts after 10 s.
    execute(source_uri, "CREATE TABLE orders (id int, note text, updated_at timestamptz)")
    execute(
        source_uri,
        "INSERT INTO orders VALUES (1, 'older', 'epoch'::timestamptz + interval '9 seconds'),"
        " (1, 'newest', 'epoch'::timestamptz + interval '10 seconds')",
    )
    strategy = StrategySpec(
        mode="incremental_merge", unique_key=("id",), duplicate_policy="keep_last"
    )

    def cursor(conn, table):
        return ColumnCursorSource(conn, table, "updated_at")

    run_delta(source_uri, tmp_path / "t", strategy, make_source=cursor)
    assert [r[1] for r in delta_rows(tmp_path / "t")] == ["newest"]


def test_replace_swaps_the_rows_matching_the_predicate(orders, tmp_path):
    path = tmp_path / "orders"
    run_delta(orders, path)  # the whole table first
    execute(orders, "UPDATE orders SET status = 'replaced' WHERE order_day = '2024-01-03'")
    execute(orders, "DELETE FROM orders WHERE order_day = '2024-01-03' AND id < 50")
    execute(orders, "CREATE TABLE day3 AS SELECT * FROM orders WHERE order_day = '2024-01-03'")
    before = delta_rows(path)
    strategy = StrategySpec(mode="replace", custom_predicate="order_day = '2024-01-03'")

    result = run_delta(orders, path, strategy, table="day3")

    assert result.rows == len(reference(orders, "order_day = '2024-01-03'"))
    kept = [r for r in before if r[4] != date(2024, 1, 3)]
    assert delta_rows(path) == sorted(kept + reference(orders, "order_day = '2024-01-03'"))


def test_replace_refuses_rows_outside_the_predicate_and_bad_predicates(orders, tmp_path):
    path = tmp_path / "orders"
    run_delta(orders, path)
    outside = StrategySpec(mode="replace", custom_predicate="order_day = '2024-01-03'")
    for batch_rows in (1000, 8):  # one batch; or many, the read still running when it fails
        with pytest.raises(RowsOutsidePredicate, match=r"\d+ row\(s\) read from public.orders"):
            run_delta(orders, path, outside, batch_rows=batch_rows)  # 4 days of 5 are outside
    for predicate, reason in [
        ("1=1) OR (true", "closes a parenthesis"),
        ("id > 1; DROP TABLE x", "contains ';'"),
        ("id > 1 garbage", "not a valid condition"),  # delta-rs alone would ignore `garbage`
        ("no_such_column = 1", "not a valid condition"),
    ]:
        with pytest.raises(InvalidPredicate, match=reason):
            run_delta(orders, path, StrategySpec(mode="replace", custom_predicate=predicate))
    assert DeltaTable(str(path)).version() == 0
    assert delta_rows(path) == reference(orders)


def test_partition_replace_replaces_the_partitions_read(orders, tmp_path):
    path = tmp_path / "orders"
    strategy = StrategySpec(mode="partition_replace", partition_column="order_day")
    run_delta(orders, path, strategy)
    assert DeltaTable(str(path)).metadata().partition_columns == ["order_day"]
    before = delta_rows(path)
    execute(orders, "CREATE TABLE later AS SELECT * FROM orders WHERE order_day >= '2024-01-04'")
    execute(orders, "DELETE FROM later WHERE id % 2 = 0; UPDATE later SET status = 'v2'")

    run_delta(orders, path, strategy, table="later")

    kept = [r for r in before if r[4] < date(2024, 1, 4)]
    expected = sorted(kept + fetch(orders, f"SELECT {COLUMNS} FROM later"))
    assert delta_rows(path) == expected


def test_partition_replace_with_a_slice_empties_it_and_refuses_rows_outside(orders, tmp_path):
    path = tmp_path / "orders"
    strategy = StrategySpec(mode="partition_replace", partition_column="order_day")
    run_delta(orders, path, strategy)
    execute(orders, "CREATE TABLE day2 AS SELECT * FROM orders WHERE order_day = '2024-01-02'")
    window = PartitionSlice(date(2024, 1, 2), date(2024, 1, 4))  # days 2 and 3

    run_delta(orders, path, strategy, table="day2", partition_slice=window)

    assert delta_rows(path) == reference(orders, "order_day NOT IN ('2024-01-03')")
    with pytest.raises(RowsOutsidePredicate):
        run_delta(orders, path, strategy, partition_slice=window)  # every day: outside


def test_partition_replace_refuses_a_table_partitioned_otherwise(orders, tmp_path):
    path = tmp_path / "orders"
    run_delta(orders, path)
    strategy = StrategySpec(mode="partition_replace", partition_column="order_day")
    with pytest.raises(PartitionMismatch, match=r"not partitioned.*reset"):
        run_delta(orders, path, strategy)
    rebuilt = run_delta(orders, path, strategy, reset=True)
    assert rebuilt.version_after == 1
    assert DeltaTable(str(path)).metadata().partition_columns == ["order_day"]


def test_scan_delta_table_is_lazy_and_pushes_filters_down(orders, tmp_path):
    path = tmp_path / "orders"
    run_delta(orders, path, StrategySpec(mode="partition_replace", partition_column="order_day"))

    frame = scan_delta_table(path)

    assert isinstance(frame, pl.LazyFrame)
    day = frame.filter(pl.col("order_day") == date(2024, 1, 2)).select("id").collect()
    assert sorted(day["id"]) == [
        r[0]
        for r in fetch(orders, "SELECT id FROM orders WHERE order_day = '2024-01-02' ORDER BY id")
    ]


@pytest.mark.parametrize(
    "strategy",
    [
        StrategySpec(mode="incremental_append"),
        MERGE,
        StrategySpec(mode="replace", custom_predicate="true"),
        StrategySpec(mode="partition_replace", partition_column="order_day"),
    ],
    ids=lambda s: s.mode,
)
def test_columns_the_source_gains_are_added_unless_schema_changes_fail(orders, tmp_path, strategy):
    path = tmp_path / "orders"
    run_delta(orders, path, strategy)
    execute(orders, "ALTER TABLE orders ADD COLUMN note text DEFAULT 'new'")
    strict = StrategySpec(**{**strategy.__dict__, "on_schema_change": "fail"})

    with pytest.raises(SchemaChanged, match=r"new column.*note.*on_schema_change is fail"):
        run_delta(orders, path, strict)
    run_delta(orders, path, strategy)

    assert pl.read_delta(str(path)).filter(pl.col("note") == "new").height == 200
    execute(orders, "ALTER TABLE orders DROP COLUMN customer")
    with pytest.raises(SchemaChanged, match=r"customer.*reset"):
        run_delta(orders, path, strategy)
