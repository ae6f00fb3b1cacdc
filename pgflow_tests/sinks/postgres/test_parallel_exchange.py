"""full_refresh exchange with `parallelism`: several COPY streams over one exported snapshot
fill a committed new table, and one transaction swaps it in.

Real servers throughout. The slice size is lowered so that tables of a few MB split into
several block ranges; everything else is the production path.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterator
from functools import partial

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sinks.postgres import parallel_exchange, staging
from pgflow.sinks.postgres.parallel_exchange import Streams
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sinks.postgres.state import read_target_rows
from pgflow.sources import snapshot_slices
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.pg import execute, fetch, table_text

SOURCE, TARGET = TableName("public", "orders"), TableName("landing", "orders")
EXCHANGE = StrategySpec(mode="full_refresh", method="exchange", parallelism=3)
ROWS = 20_000

ORDERS = """
CREATE TYPE state AS ENUM ('new', 'paid');
CREATE TABLE orders (id bigint PRIMARY KEY, state state NOT NULL, amount numeric(12,2),
                     note text, tags text[], at timestamptz NOT NULL);
INSERT INTO orders SELECT g, (array['new', 'paid'])[1 + g % 2]::state, g / 7.0,
       CASE WHEN g % 5 = 0 THEN NULL ELSE repeat(md5(g::text), 4) END, array['t' || g % 3],
       '2026-01-01'::timestamptz + g * interval '1 min'
FROM generate_series(1, {rows}) g
"""


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """8 blocks (64 kB) per slice at least: the test tables (~2 MB) split into many."""
    monkeypatch.setattr(snapshot_slices, "MIN_BLOCKS_PER_SLICE", 8)


@pytest.fixture
def orders(source_uri: str) -> str:
    execute(source_uri, ORDERS.format(rows=ROWS))
    return source_uri


def first_load(source_uri: str, sink_uri: str) -> None:
    """The target as a previous one-stream load left it, plus what a swap must carry over."""
    execute(sink_uri, "CREATE SCHEMA landing")
    load(source_uri, sink_uri, StrategySpec(mode="full_refresh", method="exchange"))
    execute(
        sink_uri,
        "CREATE INDEX orders_at ON landing.orders (at);"
        " CREATE VIEW landing.paid AS SELECT id, amount FROM landing.orders WHERE state = 'paid';"
        " CREATE ROLE parallel_reader; GRANT SELECT ON landing.orders TO parallel_reader;"
        " COMMENT ON TABLE landing.orders IS 'orders, refreshed nightly'",
    )


def load(
    source_uri: str,
    sink_uri: str,
    strategy: StrategySpec = EXCHANGE,
) -> LoadResult:
    streams = Streams(
        strategy.parallelism,
        connect_source=partial(psycopg.connect, source_uri),
        connect_sink=partial(psycopg.connect, sink_uri, autocommit=True),
    )
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        return load_table(dst, PostgresTableSource(src, SOURCE), TARGET, strategy, streams=streams)


def staging_tables(sink_uri: str) -> list[tuple]:
    return fetch(
        sink_uri,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r'",
        (staging.STAGING_SCHEMA,),
    )


@pytest.fixture(autouse=True)
def drop_role(sink_uri: str) -> Iterator[None]:
    yield
    execute(
        sink_uri,
        "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'parallel_reader') THEN"
        " DROP OWNED BY parallel_reader; DROP ROLE parallel_reader; END IF; END $$",
    )


def test_three_streams_fill_the_target_with_exactly_the_source(
    orders: str, sink_uri: str, small_slices: None
) -> None:
    first_load(orders, sink_uri)
    execute(orders, "UPDATE orders SET amount = amount + 1 WHERE id % 10 = 0")
    result = load(orders, sink_uri)
    assert result.streams == 3 and result.one_stream_reason is None
    assert result.rows == result.rows_read == ROWS
    assert sum(s.startswith("COPY ") for s in result.statements) == 3
    assert table_text(sink_uri, "landing.orders") == table_text(orders, "public.orders")
    # What the swap carries over: indexes by name, the view, grants, the comment.
    assert fetch(
        sink_uri,
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'landing' ORDER BY 1",
    ) == [("orders_at",), ("orders_pkey",)]
    assert fetch(sink_uri, "SELECT count(*) FROM landing.paid") == [(ROWS // 2,)]
    assert fetch(
        sink_uri, "SELECT has_table_privilege('parallel_reader', 'landing.orders', 'SELECT')"
    ) == [(True,)]
    assert fetch(sink_uri, "SELECT obj_description('landing.orders'::regclass)") == [
        ("orders, refreshed nightly",)
    ]
    assert staging_tables(sink_uri) == []


def test_every_slice_reads_the_one_snapshot_whatever_commits_meanwhile(
    orders: str, sink_uri: str, small_slices: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes committed after the snapshot was exported, while the streams start, are in
    none of the slices; each row of the snapshot is in exactly one (the swap's primary key
    build would fail on a duplicate)."""
    first_load(orders, sink_uri)
    snapshot = table_text(orders, "public.orders")
    original = snapshot_slices.read_slice
    changed = []

    def change_first(conn: psycopg.Connection, snapshot_id: str, copy) -> Iterator[bytes]:
        if not changed:
            changed.append(True)
            execute(
                orders,
                "DELETE FROM orders WHERE id <= 100; UPDATE orders SET note = 'late'"
                f" WHERE id > {ROWS - 100}; INSERT INTO orders VALUES"
                f" ({ROWS + 1}, 'new', 1, 'late', NULL, now())",
            )
        return original(conn, snapshot_id, copy)

    monkeypatch.setattr(parallel_exchange, "read_slice", change_first)
    result = load(orders, sink_uri)
    assert changed and result.streams == 3
    assert table_text(sink_uri, "landing.orders") == snapshot
    assert table_text(orders, "public.orders") != snapshot


def test_a_failed_stream_cancels_the_others_and_leaves_the_target_as_it_was(
    orders: str, sink_uri: str, small_slices: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second stream fails early; the others, slowed to ~7 s each, must be cancelled
    rather than run to their end."""
    first_load(orders, sink_uri)
    before = table_text(sink_uri, "landing.orders")
    execute(orders, "UPDATE orders SET amount = 0 WHERE id % 10 = 0")  # every range keeps rows
    original = snapshot_slices.read_slice
    starts, completed = itertools.count(1), []

    def failing_second(conn: psycopg.Connection, snapshot_id: str, copy) -> Iterator[bytes]:
        second = next(starts) == 2  # atomic: the streams start in threads
        for n, chunk in enumerate(original(conn, snapshot_id, copy)):
            if second and n == 100:
                raise ConnectionError("the source went away mid-stream")
            time.sleep(0.001)
            yield chunk
        completed.append(True)

    monkeypatch.setattr(parallel_exchange, "read_slice", failing_second)
    with pytest.raises(ConnectionError, match="mid-stream"):
        load(orders, sink_uri)
    assert next(starts) == 4 and completed == []
    assert table_text(sink_uri, "landing.orders") == before
    assert staging_tables(sink_uri) == []
    assert copies_running(sink_uri) == 0


def copies_running(uri: str) -> int:
    """COPY statements still running on the cluster, after up to 5 s for backends to end."""
    deadline = time.monotonic() + 5
    while True:
        running = fetch(
            uri,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY %%' AND state = 'active'",
        )[0][0]
        if running == 0 or time.monotonic() > deadline:
            return running
        time.sleep(0.1)


@pytest.mark.parametrize("next_parallelism", [3, 1], ids=["parallel", "one_stream"])
def test_a_killed_runs_new_table_is_dropped_by_the_next_run(
    orders: str, sink_uri: str, small_slices: None, next_parallelism: int
) -> None:
    first_load(orders, sink_uri)
    with (
        psycopg.connect(orders) as src,
        psycopg.connect(sink_uri, autocommit=True) as killed,
    ):
        source = PostgresTableSource(src, SOURCE)
        source.open()
        prepared = parallel_exchange.prepare(SqlLog(killed), source, TARGET, None)
    assert staging_tables(sink_uri) == [(prepared.shadow.name,)]
    result = load(orders, sink_uri, dataclasses.replace(EXCHANGE, parallelism=next_parallelism))
    assert result.streams == next_parallelism
    assert staging_tables(sink_uri) == []
    assert table_text(sink_uri, "landing.orders") == table_text(orders, "public.orders")


@pytest.mark.parametrize(
    ("arrange", "reason"),
    [
        ("", "the first load creates the target"),
        ("first_load; ALTER TABLE orders ADD COLUMN extra int", "changes the target's columns"),
        ("first_load; small", "blocks; two slices need 2048 blocks each (16 MB)"),
    ],
    ids=["first_load", "schema_drift", "small_table"],
)
def test_a_load_that_cannot_run_in_parallel_runs_as_one_stream_and_says_why(
    orders: str,
    sink_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    arrange: str,
    reason: str,
) -> None:
    if "small" not in arrange:
        monkeypatch.setattr(snapshot_slices, "MIN_BLOCKS_PER_SLICE", 8)
    if arrange.startswith("first_load"):
        first_load(orders, sink_uri)
    else:
        execute(sink_uri, "CREATE SCHEMA landing")
    if "ALTER" in arrange:
        execute(orders, arrange.split("; ", 1)[1])
    result = load(orders, sink_uri)
    assert result.streams == 1
    assert result.one_stream_reason is not None and reason in result.one_stream_reason
    assert table_text(sink_uri, "landing.orders") == table_text(orders, "public.orders")


def test_a_partitioned_source_is_read_as_one_stream(
    source_uri: str, sink_uri: str, small_slices: None
) -> None:
    execute(
        source_uri,
        "CREATE TABLE orders (id bigint PRIMARY KEY, note text) PARTITION BY RANGE (id);"
        " CREATE TABLE orders_1 PARTITION OF orders FOR VALUES FROM (0) TO (10000);"
        " CREATE TABLE orders_2 PARTITION OF orders FOR VALUES FROM (10000) TO (MAXVALUE);"
        " INSERT INTO orders SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g",
    )
    execute(sink_uri, "CREATE SCHEMA landing")
    load(source_uri, sink_uri)
    result = load(source_uri, sink_uri)
    assert result.streams == 1
    assert result.one_stream_reason == "the source public.orders is not a plain table"
    assert table_text(sink_uri, "landing.orders") == table_text(source_uri, "public.orders")


def test_block_ranges_cover_every_block_once() -> None:
    ranges = snapshot_slices.block_ranges(10, 3)
    assert [(r.start, r.end) for r in ranges] == [(0, 4), (4, 8), (8, None)]
    assert snapshot_slices.slices_for(blocks=5000, wanted=4) == 2
    assert snapshot_slices.slices_for(blocks=100, wanted=4) == 1
    assert snapshot_slices.slices_for(blocks=10**6, wanted=4) == 4


def test_the_parallel_swap_stores_the_ledger_with_the_new_table(
    orders: str, sink_uri: str, small_slices: None
) -> None:
    first_load(orders, sink_uri)
    execute(orders, "DELETE FROM orders WHERE id % 4 = 0")
    result = load(orders, sink_uri)
    assert result.streams == 3
    with psycopg.connect(sink_uri) as conn:
        stored = read_target_rows(conn, TARGET)
    assert stored == fetch(sink_uri, "SELECT count(*) FROM landing.orders")[0][0] == ROWS * 3 // 4
