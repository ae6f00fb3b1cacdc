"""A CDC run against a real cluster (wal_level=logical): snapshot then streaming, crashes
between the sink commit and the slot advance, broken or foreign slots, sources that cannot
feed CDC."""

from __future__ import annotations

import signal
import subprocess
import time

import psycopg
import pytest

from pgflow.localdb.cluster import find_bindir
from pgflow.sinks.postgres import state
from pgflow.sources import cdc
from pgflow.sources.cdc import ReplicationError
from pgflow.sources.replication_stream import ReplicationStream
from pgflow_tests.flows.cdc.conftest import ORDERS, TARGET, run, same
from pgflow_tests.pg import execute, table_text


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


def test_a_crash_between_sink_commit_and_slot_advance_applies_nothing_twice(
    source_uri: str, sink_uri: str, slot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    execute(source_uri, "UPDATE public.orders SET status = 'paid' WHERE id <= 10")

    def crash(*args: object) -> None:
        raise RuntimeError("killed before the slot advanced")

    with monkeypatch.context() as patch:
        patch.setattr(ReplicationStream, "confirm", crash)
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
