"""Streaming the slot: batches, the per-run limit, idle slots, transactions over several
tables, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import psycopg
import pytest

from pgflow.config.model import TableName
from pgflow.sources import cdc
from pgflow_tests.flows.cdc.conftest import ORDERS, run, same
from pgflow_tests.pg import drop_slots, execute, fetch


def test_batches_and_the_per_run_limit(source_uri: str, sink_uri: str, slot: str) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    with psycopg.connect(source_uri, autocommit=True) as conn:
        for n in range(30):
            conn.execute("UPDATE public.orders SET status = %s WHERE id = %s", (f"s{n}", n + 1))
    # A batch holds whole transactions up to ~10 protocol messages (3 per one-row transaction).
    limited = run(source_uri, sink_uri, slot, batch_changes=10, max_changes=20)
    assert len(limited.batches) > 1 and all(b.changes <= 4 for b in limited.batches)
    assert 20 <= limited.changes < 30
    applied = fetch(sink_uri, "SELECT count(*) FROM landing.orders WHERE status LIKE 's%'")
    assert applied == [(limited.changes,)]
    rest = run(source_uri, sink_uri, slot)
    assert rest.changes == 30 - limited.changes
    assert same(source_uri, sink_uri)


def test_an_idle_slot_moves_with_the_wal(source_uri: str, sink_uri: str, slot: str) -> None:
    execute(source_uri, ORDERS + "CREATE TABLE public.noise (n int);")
    first = run(source_uri, sink_uri, slot)
    execute(source_uri, "INSERT INTO public.noise SELECT generate_series(1, 10000)")
    idle = run(source_uri, sink_uri, slot)
    assert idle.batches == []
    assert first.position_after and idle.position_after
    assert cdc.lsn_to_int(idle.position_after.value) > cdc.lsn_to_int(first.position_after.value)
    assert idle.slot and idle.slot.confirmed_flush == cdc.lsn_to_int(idle.position_after.value)


def test_a_multi_table_transaction_reaches_both_targets(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(
        source_uri,
        ORDERS + "CREATE TABLE public.lines (id bigint PRIMARY KEY, order_id"
        " bigint, qty int); INSERT INTO public.lines SELECT g, g, 1 FROM generate_series(1, 10) g;",
    )
    lines = partial(
        run,
        source_uri,
        sink_uri,
        slot + "_lines",
        table=TableName("public", "lines"),
        target=TableName("landing", "lines"),
    )
    try:
        run(source_uri, sink_uri, slot)
        lines()
        execute(
            source_uri,
            "BEGIN; UPDATE public.orders SET status = 'two' WHERE id = 1;"
            "INSERT INTO public.lines VALUES (11, 1, 5); DELETE FROM public.lines WHERE id = 2;"
            " COMMIT;",
        )
        assert run(source_uri, sink_uri, slot).changes == 1
        assert lines().changes == 2
        assert same(source_uri, sink_uri)
        assert same(source_uri, sink_uri, "public.lines", "landing.lines")
    finally:
        drop_slots(source_uri, slot + "_lines")


BIG_TRANSACTION_CHILD = """
import json, re, sys
from contextlib import contextmanager
import psycopg
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.cdc.model import CdcSettings, CdcTarget
from pgflow.flows.cdc.run import replicate
source_uri, sink_uri, slot = sys.argv[1:4]
def connector(uri):
    @contextmanager
    def connect(**kwargs):
        with psycopg.connect(uri, **kwargs) as conn:
            yield conn
    return connect
target = CdcTarget(TableName("landing", "orders"), StrategySpec("incremental_merge", unique_key=("id",)))
with psycopg.connect(sink_uri, autocommit=True) as sink:
    result = replicate(connector(source_uri), connector(sink_uri), TableName("public", "orders"),
                       target, CdcSettings(slot=slot, publication=slot), "orders")
peak = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1]) / 1024
print(json.dumps({"changes": result.changes, "peak_mb": peak}))
"""


def test_a_100k_change_transaction_is_applied_in_bounded_memory(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, "CREATE TABLE public.orders (id bigint PRIMARY KEY, body text)")
    run(source_uri, sink_uri, slot)
    # One transaction of 100,000 rows of ~1 kB: ~100 MB of changes, all in one batch.
    execute(
        source_uri,
        "INSERT INTO public.orders SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 100000) g",
    )
    child = subprocess.run(
        [sys.executable, "-c", BIG_TRANSACTION_CHILD, source_uri, sink_uri, slot],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    outcome = json.loads(child.stdout)
    assert outcome["changes"] == 100000
    assert outcome["peak_mb"] < 80, outcome  # the changes alone are ~100 MB
    same_rows = "SELECT count(*), md5(string_agg(md5(body), '' ORDER BY id)) FROM {}"
    assert fetch(sink_uri, same_rows.format("landing.orders")) == fetch(
        source_uri, same_rows.format("public.orders")
    )


def test_the_stager_connects_through_connect_sink(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    """The second sink connection (the stager) is opened by `connect_sink` (in a Dagster run,
    the connection resource), never from the first one's parameters: a sink it cannot open
    fails the run before anything is applied, and the next run applies everything."""
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    execute(source_uri, "UPDATE public.orders SET status = 'paid' WHERE id <= 10")
    asked: list[dict[str, Any]] = []

    def refused(**kwargs: Any) -> AbstractContextManager[psycopg.Connection]:
        asked.append(kwargs)
        raise RuntimeError("the resource refused")

    with pytest.raises(RuntimeError, match="the resource refused"):
        run(source_uri, sink_uri, slot, connect_sink=refused)
    assert asked == [{"autocommit": True}]
    assert fetch(sink_uri, "SELECT count(*) FROM landing.orders WHERE status = 'paid'") == [(0,)]
    assert run(source_uri, sink_uri, slot).changes == 10
    assert same(source_uri, sink_uri)
