"""The snapshot hand-off: the table as of the slot's start (or, with snapshot: never, an empty
target that streams from the slot's start), and only a slot pgflow made is ever dropped to
start over."""

from __future__ import annotations

import threading
from functools import partial

import psycopg
import pytest

from pgflow.sources import cdc
from pgflow.sources.cdc import ReplicationError
from pgflow_tests.flows.cdc.conftest import ORDERS, run, same
from pgflow_tests.pg import execute, fetch


def test_writes_during_the_snapshot_are_neither_lost_nor_doubled(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS.replace("1000", "100000"))
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        with psycopg.connect(source_uri, autocommit=True) as conn:
            n = 200000
            while not stop.is_set():
                n += 1
                conn.execute("INSERT INTO public.orders (id, status) VALUES (%s, 'during')", (n,))
                conn.execute(
                    "UPDATE public.orders SET status = 'touched' WHERE id = %s", (n - 200000,)
                )
                written.append(n)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        first = run(source_uri, sink_uri, slot)
    finally:
        stop.set()
        writer.join()
    assert first.snapshot is not None and len(written) > 10, "writes overlapped the snapshot"
    run(source_uri, sink_uri, slot)
    assert same(source_uri, sink_uri)


def test_a_foreign_slot_with_the_same_name_is_never_dropped(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    with psycopg.connect(source_uri, autocommit=True) as conn:
        before = cdc.create_slot(conn, slot)  # someone else's slot, with our name
    with pytest.raises(ReplicationError, match=f"slot {slot} already exists and pgflow did not"):
        run(source_uri, sink_uri, slot)
    with psycopg.connect(source_uri) as conn:
        assert cdc.slot_info(conn, slot).confirmed_flush == before  # type: ignore[union-attr]


def test_snapshot_never_starts_at_the_slot_with_an_empty_target(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    never = partial(run, source_uri, sink_uri, slot, snapshot="never", deleted_column="gone_at")
    first = never()
    assert first.snapshot is None and first.snapshot_reason == "first run: no stored position"
    assert fetch(sink_uri, "SELECT count(*) FROM landing.orders") == [(0,)]
    columns = fetch(
        sink_uri,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'landing'"
        " AND table_name = 'orders' ORDER BY ordinal_position",
    )
    assert [c for (c,) in columns][-1] == "gone_at"
    execute(
        source_uri,
        "UPDATE public.orders SET status = 'paid' WHERE id <= 10;"
        "INSERT INTO public.orders (id, status) VALUES (5000, 'new')",
    )
    assert never().changes == 11
    rows = fetch(
        sink_uri,
        "SELECT count(*), count(*) FILTER (WHERE status = 'paid') FROM landing.orders",
    )
    assert rows == [(11, 10)]
