"""pgoutput decoding of malformed and truncated data, and its speed."""

from __future__ import annotations

import struct
import time

import pytest

from pgflow.sources.pgoutput import PgoutputError, decode
from pgflow.sources.pgoutput_messages import (
    UNCHANGED,
    Begin,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Relation,
    Truncate,
    Update,
)
from pgflow_tests.pg import execute
from pgflow_tests.sources.pgoutput_support import (
    IDENTITIES,
    OpenSlot,
    flush_wal,
)


def insert_bytes(*columns: bytes, marker: bytes = b"N") -> bytes:
    return (
        b"I"
        + struct.pack("!I", 16384)
        + marker
        + struct.pack("!H", len(columns))
        + b"".join(columns)
    )


def text_column(value: bytes) -> bytes:
    return b"t" + struct.pack("!i", len(value)) + value


def test_a_handmade_message_decodes() -> None:
    data = insert_bytes(text_column(b"1"), b"n", b"u", b"b" + struct.pack("!i", 2) + b"\0\1")
    assert decode(data) == Insert(16384, ("1", None, UNCHANGED, b"\0\1"))
    assert decode(bytearray(data)) == decode(memoryview(data)) == decode(data)


@pytest.mark.parametrize(
    ("data", "offset", "reason"),
    [
        (b"", 0, "no data"),
        (b"Z\0\0", 0, "unknown message type 'Z'"),
        (b"S" + bytes(8), 0, "unknown message type 'S'"),  # stream start: protocol 2 only
        (b"I\0\0", 1, "truncated"),
        (insert_bytes(marker=b"X"), 5, "expected 'N', found 'X'"),
        (insert_bytes(b"z"), 8, "unknown column kind 'z'"),
        (insert_bytes(b"t" + struct.pack("!i", -1)), 9, "value of -1 bytes"),
        (insert_bytes(b"t" + struct.pack("!i", 5) + b"abc"), 9, "value of 5 bytes, 3 left"),
        (insert_bytes(text_column(b"\xff\xfe")), 13, "invalid UTF-8"),
        (insert_bytes(text_column(b"1"), b"n")[:-1], 14, "truncated"),
        (insert_bytes(b"n") + b"\0", 9, "1 unexpected bytes after the message"),
        (b"D" + struct.pack("!I", 1) + b"N" + struct.pack("!H", 0), 5, "expected 'K' or 'O'"),
        (b"U" + struct.pack("!I", 1) + b"K" + struct.pack("!H", 0) + b"K", 8, "expected 'N'"),
        (b"R" + struct.pack("!I", 1) + b"public", 5, "unterminated string"),
        (b"B" + struct.pack("!QqI", 1, 2**63 - 1, 1), 9, "timestamp out of range"),
        (b"T" + struct.pack("!IB", 3, 0) + struct.pack("!I", 1), 6, "12 bytes announced, 4 left"),
        (b"M\1" + bytes(8) + b"p\0" + struct.pack("!i", 9) + b"x", 16, "9 bytes announced"),
    ],
)
def test_malformed_data_raises_a_pgoutput_error(data: bytes, offset: int, reason: str) -> None:
    with pytest.raises(PgoutputError, match="pgoutput") as raised:
        decode(data)
    assert raised.value.offset == offset
    assert reason in str(raised.value) and reason in raised.value.reason
    assert isinstance(raised.value, ValueError)
    if data:
        assert raised.value.message_type == chr(data[0])
        assert repr(chr(data[0])) in str(raised.value)


def test_every_truncation_of_real_messages_raises_a_pgoutput_error(open_slot: OpenSlot) -> None:
    slot = open_slot(
        IDENTITIES + "CREATE TABLE other (id serial); ALTER PUBLICATION pub ADD TABLE other;"
    )
    execute(slot.uri, "UPDATE dflt SET id = 10 WHERE id = 1")
    execute(slot.uri, "UPDATE full_rows SET v = 2")
    execute(slot.uri, "DELETE FROM dflt WHERE id = 2")
    execute(slot.uri, "TRUNCATE other RESTART IDENTITY")
    execute(slot.uri, "SELECT pg_logical_emit_message(false, 'p', 'content')")
    flush_wal(slot.uri)
    rows = slot.peek("messages", "true")
    kinds = {type(row.message) for row in rows}
    assert kinds == {Begin, Relation, Update, Delete, Truncate, LogicalMessage, Commit}
    for row in rows:
        for cut in range(len(row.data)):
            with pytest.raises(PgoutputError):
                decode(row.data[:cut])
        with pytest.raises(PgoutputError, match="unexpected bytes"):
            decode(row.data + b"\0")


# --- speed ----------------------------------------------------------------------------------


def test_decode_throughput(open_slot: OpenSlot) -> None:
    slot = open_slot(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric(12, 2),"
        " status text, created timestamptz, paid boolean, note text, tags text[]);"
        " CREATE PUBLICATION pub FOR TABLE orders;"
    )
    execute(
        slot.uri,
        "INSERT INTO orders VALUES (123456, 'ACME Corporation', 1234.50, 'shipped',"
        " '2026-03-04 05:06:07.123+00', true, NULL, ARRAY['a', 'b'])",
    )
    (data,) = [row.data for row in slot.peek() if isinstance(row.message, Insert)]
    count = 100_000
    started = time.perf_counter()
    for _ in range(count):
        decode(data)
    elapsed = time.perf_counter() - started
    print(
        f"pgoutput: decoded {count / elapsed:,.0f} Insert messages/s ({len(data)} bytes, 8 columns)"
    )
    assert decode(data).new[1] == "ACME Corporation"  # type: ignore[union-attr]
