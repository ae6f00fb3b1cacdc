"""xmin incremental reads against a real cluster (the wraparound case: test_xmin_wraparound)."""

from __future__ import annotations

from functools import partial

import psycopg

from pgflow.sources.xmin import XminSource
from pgflow_tests.pg import execute, fetch, table_text
from pgflow_tests.sources.conftest import SOURCE, incremental_load, stored_position

ORDERS = """
CREATE TABLE public.orders (id bigint PRIMARY KEY, status text);
INSERT INTO public.orders SELECT g, 'new' FROM generate_series(1, 1000) g;
"""


def xmin_source(conn: psycopg.Connection) -> XminSource:
    return XminSource(conn, SOURCE)


def same_as_source(source_uri: str, sink_uri: str) -> bool:
    return table_text(source_uri, "public.orders") == table_text(sink_uri, "landing.orders")


def test_reads_exactly_the_rows_written_since_the_checkpoint(
    source_uri: str, sink_uri: str
) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, xmin_source)
    first = load()
    assert first.read and first.read.full and first.rows_read == 1000
    checkpoint = first.position_after
    assert checkpoint and checkpoint.kind == "xmin" and checkpoint.value_type == "xid8"
    execute(source_uri, "UPDATE public.orders SET status = 'paid' WHERE id % 100 = 0")
    execute(source_uri, "INSERT INTO public.orders VALUES (1001, 'new')")
    second = load()
    assert second.read and not second.read.full
    assert second.read.since == checkpoint
    assert (second.rows_read, second.rows) == (11, 11)
    assert same_as_source(source_uri, sink_uri)
    assert stored_position(sink_uri) == second.position_after
    assert int(second.position_after.value) > int(checkpoint.value)  # type: ignore[union-attr]
    assert load().rows_read == 0


def test_a_transaction_in_flight_during_a_read_is_picked_up_by_the_next(
    source_uri: str, sink_uri: str
) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, xmin_source)
    load()
    with psycopg.connect(source_uri) as slow:
        slow.execute("UPDATE public.orders SET status = 'slow' WHERE id = 7")
        execute(source_uri, "UPDATE public.orders SET status = 'fast' WHERE id = 8")
        during = load()  # sees 'fast', not the uncommitted 'slow'
        assert during.rows_read == 1
    # The checkpoint stayed at or below the slow transaction's ID, so its row comes now.
    after = load()
    assert fetch(sink_uri, "SELECT status FROM landing.orders WHERE id IN (7, 8) ORDER BY id") == [
        ("slow",),
        ("fast",),
    ]
    assert after.rows_read == 2  # row 7 (the slow one) and row 8, written after it began
    assert same_as_source(source_uri, sink_uri)


def test_deletes_are_invisible_to_xmin_until_a_reset(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, xmin_source)
    load()
    execute(source_uri, "DELETE FROM public.orders WHERE id > 990")
    assert load().rows_read == 0
    assert fetch(sink_uri, "SELECT count(*) FROM landing.orders") == [(1000,)]
    reset = load(reset=True)
    assert reset.read and reset.read.full and reset.rows == 990
    assert same_as_source(source_uri, sink_uri)


def test_a_partitioned_source_is_read_incrementally(source_uri: str, sink_uri: str) -> None:
    execute(
        source_uri,
        "CREATE TABLE public.orders (id bigint, day date, status text, PRIMARY KEY (id, day))"
        " PARTITION BY RANGE (day);"
        "CREATE TABLE public.orders_jan PARTITION OF public.orders"
        " FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');"
        "CREATE TABLE public.orders_feb PARTITION OF public.orders"
        " FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');"
        "INSERT INTO public.orders SELECT g, '2026-01-01'::date + g % 59, 'new'"
        " FROM generate_series(1, 500) g",
    )
    load = partial(incremental_load, source_uri, sink_uri, xmin_source)
    assert load().rows_read == 500
    execute(source_uri, "UPDATE public.orders SET status = 'x' WHERE id IN (1, 40)")
    assert load().rows_read == 2
    assert same_as_source(source_uri, sink_uri)
