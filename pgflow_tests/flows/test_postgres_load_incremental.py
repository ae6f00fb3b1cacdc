"""Incremental loads end to end: each incremental source into each keyed sink strategy, and
the exactly-once guarantee of a position stored in the load's transaction."""

from __future__ import annotations

import threading
from functools import partial

import psycopg
import pytest

from pgflow.config.model import StrategySpec
from pgflow.sinks.postgres import staging
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.postgres import PostgresTableSource
from pgflow.sources.xmin import XminSource
from pgflow_tests.pg import execute, fetch, table_text
from pgflow_tests.sources.conftest import SOURCE, MakeSource, incremental_load, stored_position

ORDERS = """
CREATE TABLE public.orders (id bigint PRIMARY KEY, status text, amount numeric(10,2),
                            updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO public.orders
SELECT g, 'new', g * 1.5, '2026-01-01 00:00+00'::timestamptz + g * interval '1 second'
FROM generate_series(1, 2000) g;
"""
CHANGES = """
UPDATE public.orders SET status = 'paid', amount = amount + 1,
       updated_at = '2026-02-01 00:00+00'::timestamptz + id * interval '1 ms'
 WHERE id % 50 = 0;
INSERT INTO public.orders SELECT g, 'new', g, '2026-02-02 00:00+00' FROM generate_series(2001, 2010) g;
"""
SOURCES: dict[str, MakeSource] = {
    "column": lambda conn: ColumnCursorSource(conn, SOURCE, "updated_at"),
    "xmin": lambda conn: XminSource(conn, SOURCE),
}
KEYED = {
    "delete_insert": StrategySpec(mode="incremental_merge", unique_key=("id",)),
    "upsert": StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy="upsert"),
    "shadow_swap": StrategySpec(
        mode="incremental_merge", unique_key=("id",), merge_policy="shadow_swap"
    ),
    "append_new": StrategySpec(mode="incremental_append", unique_key=("id",), only_new_rows=True),
}


def source_text(uri: str) -> list[str]:
    return table_text(uri, "public.orders")


@pytest.mark.parametrize("strategy", KEYED.values(), ids=KEYED.keys())
@pytest.mark.parametrize("kind", SOURCES.keys())
def test_each_incremental_source_into_each_keyed_strategy(
    source_uri: str, sink_uri: str, kind: str, strategy: StrategySpec
) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, SOURCES[kind], strategy)
    load()
    before = source_text(source_uri)
    execute(source_uri, CHANGES)
    second = load()
    assert second.read and not second.read.full
    assert second.rows_read == 50, "40 updated + 10 inserted rows, no boundary row again"
    target = table_text(sink_uri, "landing.orders")
    if strategy.only_new_rows:
        # New keys only: the 10 inserted rows land, updated rows keep their first version.
        new_rows = [r for r in source_text(source_uri) if int(r[1:].split(",")[0]) > 2000]
        assert sorted(target) == sorted(before + new_rows)
    else:
        assert target == source_text(source_uri)
    assert stored_position(sink_uri) == second.position_after


class Injected(RuntimeError):
    pass


@pytest.mark.parametrize("kind", SOURCES.keys())
def test_a_failure_after_apply_keeps_data_and_position_then_the_next_run_applies_once(
    source_uri: str, sink_uri: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, SOURCES[kind])
    load()
    target_before = table_text(sink_uri, "landing.orders")
    position_before = stored_position(sink_uri)
    execute(source_uri, CHANGES)

    # Fail after the strategy applied the rows and the new position was written: the last
    # step before COMMIT.
    def fail_after_apply(*args: object, **kwargs: object) -> None:
        raise Injected("injected after apply, before commit")

    with monkeypatch.context() as patch:
        patch.setattr(staging, "drop_staging", fail_after_apply)
        with pytest.raises(Injected):
            load()
    assert table_text(sink_uri, "landing.orders") == target_before
    assert stored_position(sink_uri) == position_before

    retry = load()
    assert retry.read and retry.read.since == position_before
    assert table_text(sink_uri, "landing.orders") == source_text(source_uri)
    assert stored_position(sink_uri) == retry.position_after
    # The retry moved the position once, with the rows at the new mark it applied: the next
    # run reads nothing.
    assert load().rows_read == 0


def test_runs_of_one_target_read_in_the_order_they_commit(source_uri: str, sink_uri: str) -> None:
    """A run waiting on the target lock takes its snapshot only after the lock: it can never
    apply an older snapshot over the rows a newer run already committed."""
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, SOURCES["xmin"])
    load()
    with psycopg.connect(sink_uri, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended('pgflow:landing.orders', 0))")
        # While a (simulated) run holds the lock, the source changes; the waiting run must
        # see this change even though it was started before it.
        result: list[object] = []
        worker = threading.Thread(target=lambda: result.append(load()))
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive(), "the second run must wait for the target lock"
        execute(source_uri, "UPDATE public.orders SET status = 'late' WHERE id = 1")
        holder.execute("COMMIT")
        worker.join(timeout=30)
    assert fetch(sink_uri, "SELECT status FROM landing.orders WHERE id = 1") == [("late",)]


@pytest.mark.parametrize("policy", ["delete_insert", "shadow_swap"])
def test_small_in_place_merges_leave_statistics_to_autovacuum(
    source_uri: str, sink_uri: str, policy: str
) -> None:
    execute(source_uri, ORDERS)
    strategy = StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy=policy)  # type: ignore[arg-type]
    load = partial(incremental_load, source_uri, sink_uri, SOURCES["xmin"], strategy)
    assert any(s.startswith("ANALYZE") for s in load().statements)
    execute(source_uri, "UPDATE public.orders SET status = 'x' WHERE id <= 5")
    analyzed = any(s.startswith("ANALYZE") for s in load().statements)
    # shadow_swap puts a new table in place: it has no statistics until analyzed.
    assert analyzed == (policy == "shadow_swap")


def test_reset_rebuilds_the_target_of_a_full_read_too(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, lambda c: PostgresTableSource(c, SOURCE))
    load()
    execute(source_uri, "DELETE FROM public.orders WHERE id > 1500")
    load()  # a merge keeps rows the source no longer has
    assert fetch(sink_uri, "SELECT count(*) FROM landing.orders") == [(2000,)]
    rebuilt = load(reset=True)
    assert rebuilt.rows == 1500 and rebuilt.read is None
    assert table_text(sink_uri, "landing.orders") == source_text(source_uri)
