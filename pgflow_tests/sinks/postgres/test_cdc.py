"""CDC runs against a real cluster (wal_level=logical): snapshot hand-off, streaming batches,
deletes, key changes, TRUNCATE, unchanged TOAST values, identities, crashes, broken slots."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.localdb.cluster import find_bindir
from pgflow.sinks.postgres import state
from pgflow.sinks.postgres.cdc import CdcResult, CdcSettings, replicate
from pgflow.sinks.postgres.cdc_apply import CdcApplyError, CdcTarget
from pgflow.sinks.postgres.ddl import TargetSchemaError
from pgflow.sources import cdc
from pgflow.sources.cdc import ReplicationError
from pgflow_tests.pg import drop_slots, execute, fetch, slot_name_for, table_text

SOURCE = TableName("public", "orders")
TARGET = TableName("landing", "orders")
MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))
ORDERS = """
CREATE TABLE public.orders (id bigint PRIMARY KEY, status text NOT NULL, amount numeric(10,2),
                            note text, tags text[], placed timestamptz DEFAULT now());
INSERT INTO public.orders (id, status, amount, note, tags)
SELECT g, 'new', g * 1.5, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END, ARRAY['a', 'b' || g]
FROM generate_series(1, 1000) g;
"""


@pytest.fixture
def slot(source_uri: str) -> Iterator[str]:
    """A slot name unique in the cluster (tests share it); dropped afterwards, as slots pin WAL."""
    name = slot_name_for(source_uri)
    yield name
    drop_slots(source_uri, name)


def connector(uri: str) -> Callable[..., Any]:
    @contextmanager
    def connect(**kwargs: Any) -> Iterator[psycopg.Connection]:
        with psycopg.connect(uri, **kwargs) as conn:
            yield conn

    return connect


def run(
    source_uri: str,
    sink_uri: str,
    slot: str,
    strategy: StrategySpec = MERGE,
    *,
    table: TableName = SOURCE,
    target: TableName = TARGET,
    **options: Any,
) -> CdcResult:
    target_options = {k: options.pop(k) for k in ("deleted_column", "on_truncate") if k in options}
    settings = CdcSettings(slot=slot, publication=slot, **options)
    with psycopg.connect(sink_uri, autocommit=True) as sink:
        return replicate(
            connector(source_uri),
            sink,
            table,
            CdcTarget(target, strategy, **target_options),
            settings,
            pipeline="orders",
        )


def same(
    source_uri: str, sink_uri: str, source: str = "public.orders", target: str = "landing.orders"
) -> bool:
    return table_text(source_uri, source) == table_text(sink_uri, target)


def test_snapshot_then_inserts_updates_and_deletes_stream_in(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    first = run(source_uri, sink_uri, slot)
    assert first.snapshot is not None and first.snapshot.rows == 1000
    assert first.snapshot_reason == "first run: no stored position"
    # The snapshot creates the target: its COPY goes straight in, no staging.
    assert first.snapshot.created_target
    assert not any("_pgflow_staging" in s for s in first.snapshot.statements)
    assert first.batches == [] and same(source_uri, sink_uri)
    execute(
        source_uri,
        "INSERT INTO public.orders (id, status) VALUES (1001, 'new'), (1002, 'new');"
        "UPDATE public.orders SET status = 'paid', amount = amount + 1 WHERE id % 100 = 0;"
        "DELETE FROM public.orders WHERE id BETWEEN 11 AND 15;",
    )
    second = run(source_uri, sink_uri, slot)
    assert second.snapshot is None
    # One multi-statement query: one source transaction.
    assert (second.changes, second.batches[0].transactions) == (2 + 10 + 5, 1)
    assert second.batches[0].rows_deleted == 5
    assert same(source_uri, sink_uri)
    # The stored LSN and the slot agree, and a run with nothing new applies nothing.
    with psycopg.connect(source_uri) as conn:
        slot_now = cdc.slot_info(conn, slot)
    assert second.position_after is not None and slot_now is not None
    assert cdc.lsn_to_int(second.position_after.value) == slot_now.confirmed_flush
    third = run(source_uri, sink_uri, slot)
    assert third.batches == [] and same(source_uri, sink_uri)


@pytest.mark.parametrize(
    "strategy",
    [
        StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy="upsert"),
        StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy="shadow_swap"),
    ],
    ids=["upsert", "shadow_swap"],
)
def test_other_merge_policies(
    source_uri: str, sink_uri: str, slot: str, strategy: StrategySpec
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot, strategy)
    execute(
        source_uri,
        "UPDATE public.orders SET status = 'x' WHERE id < 50; DELETE FROM public.orders WHERE id > 990;"
        "INSERT INTO public.orders (id, status) VALUES (5000, 'new')",
    )
    run(source_uri, sink_uri, slot, strategy)
    assert same(source_uri, sink_uri)
    # Room for in-place updates only where the target is upserted (test_fillfactor.py).
    options = fetch(
        sink_uri, "SELECT reloptions FROM pg_class WHERE oid = 'landing.orders'::regclass"
    )
    assert options == [(["fillfactor=90"] if strategy.merge_policy == "upsert" else None,)]


def test_append_of_new_rows_only_takes_inserts(source_uri: str, sink_uri: str, slot: str) -> None:
    execute(source_uri, ORDERS)
    strategy = StrategySpec(mode="incremental_append", unique_key=("id",), only_new_rows=True)
    run(source_uri, sink_uri, slot, strategy)
    execute(
        source_uri,
        "UPDATE public.orders SET status = 'x' WHERE id = 1;"
        "INSERT INTO public.orders (id, status) VALUES (5000, 'new')",
    )
    run(source_uri, sink_uri, slot, strategy)
    assert fetch(
        sink_uri, "SELECT id, status FROM landing.orders WHERE id IN (1, 5000) ORDER BY id"
    ) == [(1, "new"), (5000, "new")]


def test_a_primary_key_change_moves_the_row(source_uri: str, sink_uri: str, slot: str) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    execute(source_uri, "UPDATE public.orders SET id = id + 10000 WHERE id <= 3")
    run(source_uri, sink_uri, slot)
    assert fetch(sink_uri, "SELECT count(*) FROM landing.orders WHERE id <= 3") == [(0,)]
    assert same(source_uri, sink_uri)


def test_truncate_is_applied_in_order(source_uri: str, sink_uri: str, slot: str) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    execute(
        source_uri,
        "UPDATE public.orders SET status = 'gone' WHERE id = 1;"
        "TRUNCATE public.orders;"
        "INSERT INTO public.orders (id, status) VALUES (7, 'after')",
    )
    result = run(source_uri, sink_uri, slot)
    assert result.batches[0].truncates == 1
    assert fetch(sink_uri, "SELECT id, status FROM landing.orders") == [(7, "after")]


def test_truncate_is_refused_with_on_truncate_fail(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot, on_truncate="fail")
    before = state.read_position(psycopg.connect(sink_uri), TARGET)
    execute(
        source_uri,
        "INSERT INTO public.orders (id, status) VALUES (5000, 'x'); TRUNCATE public.orders",
    )
    with pytest.raises(
        CdcApplyError, match=r"truncated \(committed .*\) and source.options.on_truncate is fail"
    ):
        run(source_uri, sink_uri, slot, on_truncate="fail")
    assert fetch(sink_uri, "SELECT count(*) FROM landing.orders") == [(1000,)]
    assert state.read_position(psycopg.connect(sink_uri), TARGET) == before


TOAST = """
CREATE TABLE public.docs (id int PRIMARY KEY, title text, body text);
ALTER TABLE public.docs ALTER COLUMN body SET STORAGE EXTERNAL;
INSERT INTO public.docs
SELECT g, 't' || g, (SELECT string_agg(md5(g::text || x), '') FROM generate_series(1, 200) x)
FROM generate_series(1, 20) g;
"""


def test_an_unchanged_toast_value_keeps_its_value(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, TOAST)
    docs = partial(
        run,
        source_uri,
        sink_uri,
        slot,
        table=TableName("public", "docs"),
        target=TableName("landing", "docs"),
    )
    docs()
    execute(
        source_uri,
        # A plain update, then several updates of one row within a batch, one of which
        # changes the key: every body arrives as "unchanged" and must keep its text.
        "UPDATE public.docs SET title = 'renamed' WHERE id <= 5;"
        "INSERT INTO public.docs VALUES (100, 'new', repeat(md5('x'), 200));"
        "UPDATE public.docs SET title = 'again' WHERE id = 100;"
        "UPDATE public.docs SET id = 101 WHERE id = 100;"
        "UPDATE public.docs SET title = 'moved' WHERE id = 101;"
        "UPDATE public.docs SET id = 200 WHERE id = 6;"
        "UPDATE public.docs SET title = 'twice moved' WHERE id = 200;",
    )
    result = docs()
    assert result.changes == 11  # 5 rows renamed, then 6 single-row changes
    assert fetch(sink_uri, "SELECT count(*) FROM landing.docs WHERE body IS NULL") == [(0,)]
    assert same(source_uri, sink_uri, "public.docs", "landing.docs")


def test_replica_identity_full_without_a_primary_key(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(
        source_uri,
        "CREATE TABLE public.orders (id bigint NOT NULL, status text);"
        "ALTER TABLE public.orders REPLICA IDENTITY FULL;"
        "INSERT INTO public.orders SELECT g, 'new' FROM generate_series(1, 100) g",
    )
    run(source_uri, sink_uri, slot)
    execute(
        source_uri,
        "UPDATE public.orders SET status = 'x' WHERE id < 5;"
        "UPDATE public.orders SET id = 500 WHERE id = 50;"
        "DELETE FROM public.orders WHERE id > 90",
    )
    run(source_uri, sink_uri, slot)
    assert same(source_uri, sink_uri)


def test_soft_deletes_keep_the_row_with_the_commit_time(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot, deleted_column="_pgflow_deleted_at")
    execute(source_uri, "DELETE FROM public.orders WHERE id <= 3")
    run(source_uri, sink_uri, slot, deleted_column="_pgflow_deleted_at")
    rows = fetch(
        sink_uri,
        "SELECT count(*) FILTER (WHERE _pgflow_deleted_at IS NOT NULL),"
        " count(*) FROM landing.orders",
    )
    assert rows == [(3, 1000)]
    execute(source_uri, "INSERT INTO public.orders (id, status) VALUES (2, 'back')")
    run(source_uri, sink_uri, slot, deleted_column="_pgflow_deleted_at")
    assert fetch(
        sink_uri, "SELECT status, _pgflow_deleted_at FROM landing.orders WHERE id = 2"
    ) == [("back", None)]


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


def test_a_crash_between_sink_commit_and_slot_advance_applies_nothing_twice(
    source_uri: str, sink_uri: str, slot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    execute(source_uri, "UPDATE public.orders SET status = 'paid' WHERE id <= 10")

    def crash(*args: object) -> None:
        raise RuntimeError("killed before the slot advanced")

    with monkeypatch.context() as patch:
        patch.setattr(cdc, "advance_slot", crash)
        with pytest.raises(RuntimeError, match="killed"):
            run(source_uri, sink_uri, slot)
    assert same(source_uri, sink_uri), "the batch was committed in the sink"
    with psycopg.connect(sink_uri) as sink, psycopg.connect(source_uri) as source:
        stored = state.read_position(sink, TARGET)
        behind = cdc.slot_info(source, slot)
    assert stored and behind and cdc.lsn_to_int(stored.value) > (behind.confirmed_flush or 0)

    execute(source_uri, "INSERT INTO public.orders (id, status) VALUES (5000, 'new')")
    after = run(source_uri, sink_uri, slot)
    assert after.caught_up_slot
    assert after.changes == 1, "the 10 updates were skipped: already applied"
    assert same(source_uri, sink_uri)


def test_a_crash_before_the_sink_commit_keeps_data_position_and_slot(
    source_uri: str, sink_uri: str, slot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    before = table_text(sink_uri, "landing.orders")
    with psycopg.connect(sink_uri) as sink:
        position = state.read_position(sink, TARGET)
    execute(source_uri, "DELETE FROM public.orders WHERE id <= 10")

    def crash(*args: object) -> None:
        raise RuntimeError("killed before commit")

    with monkeypatch.context() as patch:
        patch.setattr(state, "write_position", crash)
        with pytest.raises(RuntimeError, match="killed"):
            run(source_uri, sink_uri, slot)
    assert table_text(sink_uri, "landing.orders") == before
    with psycopg.connect(sink_uri) as sink, psycopg.connect(source_uri) as source:
        assert state.read_position(sink, TARGET) == position
        assert position and cdc.slot_info(source, slot).confirmed_flush == cdc.lsn_to_int(  # type: ignore[union-attr]
            position.value
        )
    assert run(source_uri, sink_uri, slot).changes == 10
    assert same(source_uri, sink_uri)


def test_a_failed_batch_among_staged_ones_leaves_no_staging_and_nothing_twice(
    source_uri: str, sink_uri: str, slot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches are staged (committed, on a second sink connection) while the one before them
    applies: when an apply fails, the batches before it stay applied with the slot moved,
    and the staged ones after it are dropped, not applied."""
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    with psycopg.connect(source_uri, autocommit=True) as conn:
        for n in range(12):
            conn.execute("UPDATE public.orders SET status = %s WHERE id = %s", (f"s{n}", n + 1))
    writes = 0
    write_position = state.write_position

    def fail_third(*args: Any) -> None:
        nonlocal writes
        writes += 1
        if writes == 3:
            raise RuntimeError("killed in the third apply")
        write_position(*args)

    with monkeypatch.context() as patch:
        patch.setattr(state, "write_position", fail_third)
        with pytest.raises(RuntimeError, match="third apply"):
            run(source_uri, sink_uri, slot, batch_changes=6)
    staged = "SELECT count(*) FROM pg_tables WHERE schemaname = '_pgflow_staging'"
    assert fetch(sink_uri, staged) == [(0,)]
    applied = fetch(sink_uri, "SELECT count(*) FROM landing.orders WHERE status LIKE 's%'")
    with psycopg.connect(sink_uri) as sink, psycopg.connect(source_uri) as source:
        stored = state.read_position(sink, TARGET)
        assert stored and cdc.slot_info(source, slot).confirmed_flush == cdc.lsn_to_int(  # type: ignore[union-attr]
            stored.value
        )
    rest = run(source_uri, sink_uri, slot)
    assert rest.changes == 12 - applied[0][0]
    assert same(source_uri, sink_uri)


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


def test_a_column_added_under_pending_changes_reaches_the_target(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    # Changes in the old shape, then the new column, then changes that fill it.
    execute(source_uri, "UPDATE public.orders SET status = 'before' WHERE id <= 2")
    execute(source_uri, "ALTER TABLE public.orders ADD COLUMN channel varchar(10)")
    execute(source_uri, "UPDATE public.orders SET channel = 'web' WHERE id <= 3")
    result = run(source_uri, sink_uri, slot)
    assert result.changes == 5
    assert same(source_uri, sink_uri)


def test_a_dropped_column_under_pending_changes_stops_the_run(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    execute(source_uri, "UPDATE public.orders SET note = 'last' WHERE id = 1")
    execute(source_uri, "ALTER TABLE public.orders DROP COLUMN note")
    with pytest.raises(
        TargetSchemaError, match="note are in the target but no longer in the source"
    ):
        run(source_uri, sink_uri, slot)
    # With on_schema_change: sync the target follows, but changes still carrying the column
    # cannot be applied to it: the run stops rather than drop their values silently.
    sync = StrategySpec(mode="incremental_merge", unique_key=("id",), on_schema_change="sync")
    with pytest.raises(CdcApplyError, match=r"note \(gone from the source\).*reset: true"):
        run(source_uri, sink_uri, slot, sync)


def test_a_slot_dropped_behind_pgflows_back_is_a_clear_error(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    with psycopg.connect(source_uri, autocommit=True) as conn:
        cdc.drop_slot(conn, slot)
    with pytest.raises(ReplicationError, match=f"slot {slot} does not exist.*reset: true"):
        run(source_uri, sink_uri, slot)
    recovered = run(source_uri, sink_uri, slot, reset=True)
    assert recovered.snapshot is not None and same(source_uri, sink_uri)


def test_a_slot_in_use_by_another_consumer_is_refused(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    consumer = subprocess.Popen(
        [
            str(find_bindir() / "pg_recvlogical"),
            "-d",
            source_uri,
            "-S",
            slot,
            "--start",
            "-o",
            "proto_version=1",
            "-o",
            f"publication_names={slot}",
            "-f",
            "/dev/null",
        ],
    )
    try:
        with psycopg.connect(source_uri) as conn:
            for _ in range(100):
                info = cdc.slot_info(conn, slot)
                if info and info.active_pid:
                    break
                time.sleep(0.05)
        with pytest.raises(ReplicationError, match="in use by another consumer"):
            run(source_uri, sink_uri, slot)
    finally:
        stop_consumer(consumer)


def stop_consumer(consumer: subprocess.Popen) -> None:
    """Stop pg_recvlogical with SIGINT, its own stop signal. Not SIGTERM: a child inherits an
    ignored SIGTERM, and in a pytest-xdist worker that has run Dagster SIGTERM is ignored
    (Dagster gives SIGTERM the SIGINT disposition, which the worker ignores), so
    pg_recvlogical, which has no SIGTERM handler of its own, would never end."""
    consumer.send_signal(signal.SIGINT)
    try:
        consumer.wait(timeout=30)
    except subprocess.TimeoutExpired:
        consumer.kill()
        consumer.wait()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            "CREATE TABLE public.orders (id int, status text)",
            "public.orders has no primary key, so its updates and deletes carry no key; add a "
            "primary key, or ALTER TABLE public.orders REPLICA IDENTITY FULL",
        ),
        (
            "CREATE TABLE public.orders (id int NOT NULL, code text PRIMARY KEY, status text)",
            r"sink.strategy.unique_key \(id\) must be among the replica identity columns of "
            r"public.orders \(code\)",
        ),
    ],
    ids=["no-key", "key-not-identity"],
)
def test_tables_that_cannot_feed_cdc_are_refused_before_any_slot(
    source_uri: str, sink_uri: str, slot: str, setup: str, message: str
) -> None:
    execute(source_uri, setup)
    with pytest.raises(ReplicationError, match=message):
        run(source_uri, sink_uri, slot)
    with psycopg.connect(source_uri) as conn:
        assert cdc.slot_info(conn, slot) is None


def test_a_user_without_replication_privilege_is_told_how_to_grant_it(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    role = "reader_" + slot[-8:]
    execute(
        source_uri,
        f"CREATE ROLE {role} LOGIN PASSWORD 'pw'; GRANT SELECT ON public.orders TO {role}",
    )
    params = psycopg.conninfo.conninfo_to_dict(source_uri)
    weak = psycopg.conninfo.make_conninfo(**{**params, "user": role, "password": "pw"})
    with pytest.raises(
        ReplicationError, match=f'lacks the REPLICATION privilege.*ALTER ROLE "{role}" REPLICATION'
    ):
        run(weak, sink_uri, slot)


BIG_TRANSACTION_CHILD = """
import json, re, sys
from contextlib import contextmanager
import psycopg
from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres.cdc import CdcSettings, replicate
from pgflow.sinks.postgres.cdc_apply import CdcTarget
source_uri, sink_uri, slot = sys.argv[1:4]
@contextmanager
def connect(**kwargs):
    with psycopg.connect(source_uri, **kwargs) as conn:
        yield conn
target = CdcTarget(TableName("landing", "orders"), StrategySpec("incremental_merge", unique_key=("id",)))
with psycopg.connect(sink_uri, autocommit=True) as sink:
    result = replicate(connect, sink, TableName("public", "orders"), target,
                       CdcSettings(slot=slot, publication=slot), "orders")
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
