"""The first load of a staged strategy, into the target it creates, skips staging.

A new target holds nothing to merge into or replace, so the COPY goes straight into it (FREEZE,
its key built after the rows are in) instead of into staging and then again into the target.
The key's unique index is the duplicate check. What stays staged: replace (its predicate) and
keep_last (it drops repeated keys by their order of arrival), and every load after the first.
"""

from __future__ import annotations

import psycopg
import pytest

from pgflow.config.model import StrategySpec
from pgflow.sinks.postgres.keys import DuplicateKeys
from pgflow.sources.base import TableSource
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow_tests.pg import execute, fetch, table_text
from pgflow_tests.sinks.postgres.conftest import run_load
from pgflow_tests.sinks.postgres.test_staging_freeze import frozen_pages
from pgflow_tests.sources.conftest import SOURCE, TARGET, incremental_load, stored_position

ROWS = 3000
ORDERS = f"""
CREATE TABLE public.orders (id bigint PRIMARY KEY, k int, note text,
                            updated_at timestamptz NOT NULL);
INSERT INTO public.orders
SELECT g, g % 97, repeat(md5(g::text), 2), '2026-01-01 00:00+00'::timestamptz + g * interval '1 s'
FROM generate_series(1, {ROWS}) g;
"""
STRATEGIES = {
    "delete_insert": StrategySpec(mode="incremental_merge", unique_key=("id",)),
    "upsert": StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy="upsert"),
    "shadow_swap": StrategySpec(
        mode="incremental_merge", unique_key=("id",), merge_policy="shadow_swap"
    ),
    "append": StrategySpec(mode="incremental_append"),
    "append_new": StrategySpec(mode="incremental_append", unique_key=("id",), only_new_rows=True),
}


def column_cursor(conn: psycopg.Connection) -> TableSource:
    return ColumnCursorSource(conn, SOURCE, "updated_at")


def staged(statements: list[str]) -> bool:
    return any("_pgflow_staging" in s for s in statements)


def key_indexes(sink_uri: str) -> list[tuple[str, bool]]:
    return fetch(
        sink_uri,
        "SELECT pg_get_indexdef(indexrelid), indisprimary FROM pg_index"
        " WHERE indrelid = 'landing.orders'::regclass ORDER BY 1",
    )


@pytest.mark.parametrize("strategy", STRATEGIES.values(), ids=STRATEGIES.keys())
def test_a_first_load_goes_straight_into_the_new_target(
    source_uri: str, sink_uri: str, strategy: StrategySpec
) -> None:
    execute(source_uri, ORDERS)
    execute(sink_uri, "CREATE EXTENSION IF NOT EXISTS pg_visibility")

    first = incremental_load(source_uri, sink_uri, column_cursor, strategy)

    assert first.created_target and not staged(first.statements)
    copy = next(s for s in first.statements if s.startswith("COPY "))
    assert '"landing"."orders"' in copy and "FREEZE" in copy
    assert table_text(sink_uri, "landing.orders") == table_text(source_uri, "public.orders")
    frozen, pages = frozen_pages(sink_uri, "landing.orders")
    assert pages > 5 and frozen == pages
    assert first.rows == ROWS
    # The position is the largest cursor value read, stored with the rows.
    assert stored_position(sink_uri) == first.position_after
    assert first.position_after is not None
    assert (
        first.position_after.value
        == fetch(sink_uri, "SELECT max(updated_at)::text FROM landing.orders")[0][0]
    )
    # The key is in place, built after the COPY.
    assert [primary for _, primary in key_indexes(sink_uri)] == [True]
    assert any(
        s.startswith('ALTER TABLE "landing"."orders" ADD CONSTRAINT') for s in first.statements
    )

    if not strategy.unique_key:
        return  # plain append: the next load would re-insert changed rows under the same key
    # The next load is incremental and staged, and applies only the change.
    execute(
        source_uri,
        "UPDATE orders SET note = 'changed', updated_at = '2026-03-01' WHERE id % 100 = 0",
    )
    second = incremental_load(source_uri, sink_uri, column_cursor, strategy)
    assert second.read and not second.read.full and staged(second.statements)
    assert second.rows_read == ROWS // 100
    if not strategy.only_new_rows and strategy.mode == "incremental_merge":
        assert table_text(sink_uri, "landing.orders") == table_text(source_uri, "public.orders")


def test_a_nullable_unique_key_gets_its_index_after_the_copy(
    source_uri: str, sink_uri: str
) -> None:
    execute(source_uri, ORDERS.replace("id bigint PRIMARY KEY", "id bigint"))
    strategy = StrategySpec(mode="incremental_merge", unique_key=("k", "id"))

    first = incremental_load(source_uri, sink_uri, column_cursor, strategy)

    assert not staged(first.statements)
    assert table_text(sink_uri, "landing.orders") == table_text(source_uri, "public.orders")
    assert key_indexes(sink_uri) == [
        (
            "CREATE UNIQUE INDEX orders_pgflow_key ON landing.orders USING btree (k, id)"
            " NULLS NOT DISTINCT",
            False,
        )
    ]


@pytest.mark.parametrize(
    ("duplicates", "example"),
    [
        ("INSERT INTO orders VALUES (7, 1, 'again', '2026-02-01')", "(id)=(7)"),
        # NULL keys are one key (NULLS NOT DISTINCT), as later loads match them.
        (
            "UPDATE orders SET id = NULL WHERE id IN (3, 5)",
            "(id)=(null)",
        ),
    ],
    ids=["repeated", "two_null_keys"],
)
def test_repeated_keys_fail_the_first_load_and_nothing_is_written(
    source_uri: str, sink_uri: str, duplicates: str, example: str
) -> None:
    execute(source_uri, ORDERS.replace("id bigint PRIMARY KEY", "id bigint"))
    execute(source_uri, duplicates)
    strategy = StrategySpec(mode="incremental_merge", unique_key=("id",))

    with pytest.raises(DuplicateKeys) as failure:
        incremental_load(source_uri, sink_uri, column_cursor, strategy)

    message = str(failure.value)
    assert f"repeats unique_key (id) for some rows, e.g. {example}; nothing was written" in message
    assert "duplicate_policy: keep_last" in message
    assert fetch(sink_uri, "SELECT to_regclass('landing.orders') IS NULL")[0] == (True,)
    assert stored_position(sink_uri) is None


def test_keep_last_stages_the_first_load_and_keeps_the_last_row_of_each_key(
    source_uri: str, sink_uri: str
) -> None:
    execute(source_uri, ORDERS.replace("id bigint PRIMARY KEY", "id bigint"))
    execute(source_uri, "INSERT INTO orders VALUES (7, 1, 'last', '2026-02-01')")
    strategy = StrategySpec(
        mode="incremental_merge", unique_key=("id",), duplicate_policy="keep_last"
    )

    first = incremental_load(source_uri, sink_uri, column_cursor, strategy)

    assert staged(first.statements) and first.duplicates_dropped == 1
    assert fetch(sink_uri, "SELECT note FROM landing.orders WHERE id = 7") == [("last",)]
    assert fetch(sink_uri, "SELECT count(*) FROM landing.orders") == [(ROWS,)]


def test_a_replace_first_load_stays_staged(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, ORDERS)
    strategy = StrategySpec(mode="replace", custom_predicate="k < 50")

    first = run_load(source_uri, sink_uri, SOURCE, TARGET, strategy)

    assert staged(first.statements)
    assert table_text(sink_uri, "landing.orders") == table_text(source_uri, "public.orders")
