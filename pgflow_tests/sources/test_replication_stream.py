"""Reading a logical slot over the streaming replication protocol, on a real cluster: whole
transactions in commit order up to a bound, idle slots, confirmations, errors, settings."""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from pgflow.sources import replication_stream
from pgflow.sources.cdc import (
    ReplicationError,
    SlotInUse,
    flush_lsn,
    slot_info,
)
from pgflow.sources.pgoutput import decode, lsn_to_int
from pgflow.sources.pgoutput_messages import Begin, Commit, Insert, Message, Relation
from pgflow.sources.replication_errors import replication_error
from pgflow.sources.replication_stream import ReplicationStream, wait_slot_released
from pgflow_tests.pg import drop_slots, execute, fetch, slot_name_for

PUBLICATION = "pub"


@dataclass(frozen=True)
class Source:
    uri: str
    slot: str
    start: int  # where the slot's stream starts

    def connect(self, **kwargs: Any) -> AbstractContextManager[psycopg.Connection]:
        return psycopg.connect(self.uri, **kwargs)

    def flush(self) -> int:
        with psycopg.connect(self.uri) as conn:
            return flush_lsn(conn)

    def stream(self, upto: int, **kwargs: Any) -> ReplicationStream:
        return ReplicationStream(self.connect, self.slot, PUBLICATION, self.start, upto, **kwargs)

    def read(self, upto: int) -> list[Message]:
        with self.stream(upto) as stream:
            return [decode(m) for m in stream.messages()]

    def confirmed(self) -> int | None:
        with psycopg.connect(self.uri) as conn:
            wait_slot_released(conn, self.slot, 5)
            info = slot_info(conn, self.slot)
        assert info is not None
        return info.confirmed_flush


@pytest.fixture
def source(source_uri: str) -> Iterator[Source]:
    """Table t in publication pub, and a pgoutput slot made after them (dropped at the end)."""
    execute(source_uri, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    execute(source_uri, f"CREATE PUBLICATION {PUBLICATION} FOR TABLE t")
    slot = slot_name_for(source_uri)
    create = "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')"
    row = fetch(source_uri, create, (slot,))
    try:
        yield Source(source_uri, slot, lsn_to_int(row[0][0]))
    finally:
        drop_slots(source_uri, slot)


def inserted(messages: list[Message]) -> list[tuple[Any, ...]]:
    return [m.new for m in messages if isinstance(m, Insert)]


def test_transactions_arrive_whole_and_in_commit_order(source: Source) -> None:
    execute(source.uri, "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    with psycopg.connect(source.uri) as early, psycopg.connect(source.uri) as late:
        early.execute("INSERT INTO t VALUES (3, 'begun first, committed last')")
        late.execute("INSERT INTO t VALUES (4, 'begun last, committed first')")
        late.commit()
        early.commit()
    messages = source.read(source.flush())
    ids = [row[0] for row in inserted(messages)]
    assert ids == ["1", "2", "4", "3"], "commit order"
    kinds = "".join(type(m).__name__[0] for m in messages)
    assert kinds == "BRIIC" + "BIC" * 2
    begins = [m.final_lsn for m in messages if isinstance(m, Begin)]
    commits = [m.commit_lsn for m in messages if isinstance(m, Commit)]
    assert begins == commits and begins == sorted(begins)
    assert isinstance(messages[1], Relation) and messages[1].name == "t"


def test_a_transaction_committed_after_upto_is_not_read_and_the_run_ends(source: Source) -> None:
    execute(source.uri, "INSERT INTO t VALUES (1, 'before')")
    upto = source.flush()
    # Large: the server is still sending it when the stream ends.
    execute(source.uri, "INSERT INTO t SELECT g, 'after' FROM generate_series(2, 300000) g")
    with source.stream(upto) as stream:
        messages = [decode(m) for m in stream.messages()]
        ended = time.monotonic()
    assert inserted(messages) == [("1", "before")]
    # Not a speed test: a stream that waited for the rest of the transaction would spend at
    # least its drain timeout in the exit (EXIT_TIMEOUT), then close.
    assert time.monotonic() - ended < replication_stream.EXIT_TIMEOUT
    # The next run, bounded later, reads the rest.
    assert len(inserted(source.read(source.flush()))) == 300000


def test_an_idle_slot_returns_promptly_after_the_servers_keepalive(source: Source) -> None:
    execute(source.uri, "CREATE TABLE not_published (id int)")
    execute(source.uri, "INSERT INTO not_published VALUES (1)")
    upto = source.flush()
    started = time.monotonic()
    with source.stream(upto) as stream:
        messages = list(stream.messages())
        assert stream.server_wal_end >= upto
    assert time.monotonic() - started < 3
    assert [type(decode(m)) for m in messages] in ([], [Begin, Commit])


def test_confirm_moves_the_slot_to_exactly_the_confirmed_lsn(source: Source) -> None:
    for i in range(3):
        execute(source.uri, "INSERT INTO t VALUES (%s, 'x')", (i,))
    upto = source.flush()
    with source.stream(upto, status_interval=0.05) as stream:
        ends = [m.end_lsn for m in map(decode, stream.messages()) if isinstance(m, Commit)]
        # confirm from another thread, as the applier does after its sink commit
        thread = threading.Thread(target=stream.confirm, args=(ends[1],))
        thread.start()
        thread.join()
        stream.confirm(ends[0])  # an older value never moves it back
    assert len(ends) == 3
    assert source.confirmed() == ends[1]
    # Nothing confirmed: the slot stays where it was, though everything was read.
    with source.stream(source.flush()) as stream:
        again = [decode(m) for m in stream.messages()]
    assert inserted(again) == [("2", "x")], "the third transaction again"
    assert source.confirmed() == ends[1]


def test_a_slot_streamed_by_another_session_is_in_use(source: Source) -> None:
    with (
        source.stream(source.flush()),
        pytest.raises(SlotInUse, match=source.slot) as caught,
        source.stream(source.flush()),
    ):
        pass
    assert "is active for PID" in str(caught.value), "the server's words are kept"


def test_a_missing_slot_is_an_error_naming_it(source: Source) -> None:
    drop_slots(source.uri, source.slot)
    with (
        pytest.raises(ReplicationError, match="does not exist") as caught,
        source.stream(source.flush()),
    ):
        pass
    assert not isinstance(caught.value, SlotInUse)
    assert source.slot in str(caught.value) and "reset: true" in str(caught.value)


def test_a_missing_publication_is_an_error_naming_it(source: Source) -> None:
    execute(source.uri, f"DROP PUBLICATION {PUBLICATION}")
    execute(source.uri, "INSERT INTO t VALUES (1, 'x')")
    with pytest.raises(ReplicationError, match=f"publication {PUBLICATION} ") as caught:
        source.read(source.flush())
    assert f'publication "{PUBLICATION}" does not exist' in str(caught.value)


def test_the_decoding_session_renders_values_in_the_portable_text_format(source: Source) -> None:
    database = source.uri.rsplit("/", 1)[1]
    for setting in (
        "DateStyle = 'SQL, DMY'",
        "TimeZone = 'Asia/Kolkata'",
        "extra_float_digits = 0",
        "IntervalStyle = 'sql_standard'",
        "bytea_output = 'escape'",
    ):
        execute(source.uri, f'ALTER DATABASE "{database}" SET {setting}')
    execute(
        source.uri,
        "CREATE TABLE typed (id int PRIMARY KEY, ts timestamptz, d date, f float8,"
        " i interval, b bytea)",
    )
    execute(source.uri, f"ALTER PUBLICATION {PUBLICATION} ADD TABLE typed")
    execute(
        source.uri,
        "INSERT INTO typed VALUES (1, '2024-01-02 03:04:05.5+00', '2024-01-02', 1/3::float8,"
        " '1 day 02:03:04', '\\x0102')",
    )
    row = ("1", "2024-01-02 03:04:05.5+00", "2024-01-02", "0.3333333333333333")
    assert inserted(source.read(source.flush())) == [(*row, "1 day 02:03:04", "\\x0102")]


def test_an_exception_in_the_consumer_propagates_and_frees_the_slot(source: Source) -> None:
    # Large: the server is still sending this transaction when the stream ends.
    execute(source.uri, "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 300000) g")
    with pytest.raises(KeyError, match="the consumer's"), source.stream(source.flush()) as stream:
        for n, _ in enumerate(stream.messages()):
            if n == 100:
                raised = time.monotonic()
                raise KeyError("the consumer's")
    with psycopg.connect(source.uri) as conn:
        wait_slot_released(conn, source.slot, replication_stream.EXIT_TIMEOUT)
    # Released without the drain waiting its timeout out (EXIT_TIMEOUT) first.
    assert time.monotonic() - raised < replication_stream.EXIT_TIMEOUT


def test_a_killed_walsender_is_a_replication_error_and_exit_does_not_hang(source: Source) -> None:
    execute(source.uri, "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 1000) g")
    started = time.monotonic()
    with (
        pytest.raises(ReplicationError, match=source.slot),
        source.stream(source.flush()) as stream,
    ):
        for n, _ in enumerate(stream.messages()):
            if n == 10:
                execute(
                    source.uri,
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                    " WHERE slot_name = %s",
                    (source.slot,),
                )
    assert time.monotonic() - started < 5


def test_a_large_transaction_streams_with_bounded_memory(source: Source) -> None:
    rows = 100_000
    insert = "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, %s) g"
    execute(source.uri, insert, (rows,))
    count = size = 0
    tracemalloc.start()
    try:
        with source.stream(source.flush()) as stream:
            for message in stream.messages():
                count += 1
                size += len(message)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == rows + 3  # Begin, Relation, the rows, Commit
    assert size > 20_000_000
    assert peak < 2_000_000, f"peak {peak} bytes while streaming {size} bytes"


def test_an_exit_that_cannot_drain_in_time_closes_and_keeps_the_confirmation(
    source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute(source.uri, "INSERT INTO t VALUES (1, 'before')")
    upto = source.flush()
    # still being sent when the stream ends; no time at all to drain it
    execute(source.uri, "INSERT INTO t SELECT g, 'after' FROM generate_series(2, 300000) g")
    monkeypatch.setattr(replication_stream, "EXIT_TIMEOUT", 0.0)
    with pytest.raises(KeyError, match="kept"), source.stream(upto) as stream:
        messages = [decode(m) for m in stream.messages()]
        end = next(m.end_lsn for m in messages if isinstance(m, Commit))
        stream.confirm(end)
        raise KeyError("kept")
    assert source.confirmed() == end


def test_status_updates_carry_confirmations_while_the_stream_waits(source: Source) -> None:
    execute(source.uri, "INSERT INTO t VALUES (1, 'first')")
    seen: list[int | None] = []

    def applier(lsn: int) -> None:
        # the slot moves while the stream stays open, then a later commit lets it end
        deadline = time.monotonic() + 5
        with psycopg.connect(source.uri) as conn:
            while (info := slot_info(conn, source.slot)) and info.confirmed_flush != lsn:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            seen.append(info.confirmed_flush if info else None)
        execute(source.uri, "INSERT INTO t VALUES (2, 'last')")

    thread = None
    with source.stream(2**63, status_interval=0.1) as stream:
        for message in map(decode, stream.messages()):
            if isinstance(message, Commit) and thread is None:
                stream.confirm(message.end_lsn)
                thread = threading.Thread(target=applier, args=(message.end_lsn,))
                thread.start()
                first_end = message.end_lsn
            if isinstance(message, Insert) and message.new[0] == "2":
                break
    assert thread is not None
    thread.join()
    assert seen == [first_end]


def _pause(stream: ReplicationStream, seconds: float, *, keep_alive: bool) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if keep_alive:
            stream.keep_alive()


@pytest.mark.parametrize("keep_alive", [True, False])
def test_a_consumer_that_pauses_keeps_the_stream_with_keep_alive(
    source: Source, keep_alive: bool
) -> None:
    execute(source.uri, "INSERT INTO t VALUES (1, 'x')")

    def connect(**kwargs: Any) -> AbstractContextManager[psycopg.Connection]:
        return psycopg.connect(source.uri, options="-c wal_sender_timeout=1s", **kwargs)

    stream = ReplicationStream(
        connect, source.slot, PUBLICATION, source.start, 2**63, status_interval=0.2
    )
    read: list[Message] = []
    with stream:
        messages = map(decode, stream.messages())
        for message in messages:  # the first transaction, then a pause (a busy applier)
            read.append(message)
            if isinstance(message, Commit):
                break
        _pause(stream, 3, keep_alive=keep_alive)
        execute(source.uri, "INSERT INTO t VALUES (2, 'after the pause')")
        if not keep_alive:  # the server gave up on a stream that said nothing
            with pytest.raises(ReplicationError, match="replication from slot"):
                next(messages)
            return
        for message in messages:
            read.append(message)
            if isinstance(message, Commit):
                break
    assert inserted(read) == [("1", "x"), ("2", "after the pause")]


@pytest.mark.parametrize(
    "sqlstate, said",
    [
        ("55000", 'can no longer get changes from replication slot "s1"'),
        ("58P01", "requested WAL segment 000000010000000000000003 has already been removed"),
    ],
)
def test_an_invalidated_slot_says_to_resnapshot(sqlstate: str, said: str) -> None:
    # The server's words for a slot whose WAL is gone (making one would invalidate the
    # slots of every test sharing the cluster).
    error = replication_error("s1", PUBLICATION, sqlstate, said)
    assert type(error) is ReplicationError
    assert "s1 was invalidated" in str(error) and "reset: true" in str(error)
    assert said in str(error)
